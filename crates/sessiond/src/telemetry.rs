//! Logs and, when `[tracing] otlp_endpoint` is set, OpenTelemetry traces: the
//! subscriber with its two layers (logs on stderr; spans to a batch processor that sends
//! them over OTLP/HTTP protobuf), the W3C trace-context propagator, and the flush at
//! shutdown.
//!
//! Built on `opentelemetry_sdk`'s batch processor and `opentelemetry-otlp`'s HTTP
//! exporter (its blocking reqwest client runs on the processor's own thread, so exports
//! never take a request's worker). Everything comes from the configuration: the
//! resource, sampler and batch limits are set explicitly so no `OTEL_*` variable
//! changes them.

use crate::error::CliError;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use sessiond_server::config::TracingConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// At most one warning about failed exports per this interval (a collector that is down
/// fails every batch).
const EXPORT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The running trace pipeline; [`Telemetry::shutdown`] sends what is queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl Telemetry {
    /// Exports the spans still queued (bounded by the export timeout) and stops the
    /// processor. Blocking, so it runs off the async workers.
    pub async fn shutdown(self) {
        let Telemetry {
            provider,
            timeout,
            counters,
        } = self;
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
        match done {
            Ok(Ok(())) => {
                // Every span that ended was exported, failed, or never got a place in
                // the queue: the difference is exact now.
                let dropped = counters.unhandled();
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "spans dropped because the trace queue was full (tracing.max_queue_size)"
                    );
                }
                tracing::debug!("traces flushed");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not flushed at shutdown"),
            Err(e) => tracing::warn!(error = %e, "traces not flushed at shutdown"),
        }
    }
}

/// Spans handed to the processor and spans the exporter was given (sent or failed). The
/// batch processor drops spans silently when its queue is full (its own diagnostics are
/// compiled out, since they log every export failure without a rate limit); these two
/// counts let that be reported.
#[derive(Debug, Default)]
struct Counters {
    ended: AtomicU64,
    handled: AtomicU64,
}

impl Counters {
    fn unhandled(&self) -> u64 {
        let handled = self.handled.load(Ordering::Acquire);
        self.ended.load(Ordering::Acquire).saturating_sub(handled)
    }
}

/// The batch processor, counting the spans it is given.
#[derive(Debug)]
struct Counting {
    inner: BatchSpanProcessor,
    counters: Arc<Counters>,
}

impl SpanProcessor for Counting {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.counters.ended.fetch_add(1, Ordering::AcqRel);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Structured logs on stderr (stdout carries only the announcement): JSON when
/// `SESSIOND_LOG_FORMAT=json`, level from `RUST_LOG` (default `info`); plus the trace
/// layer when `tracing` has an endpoint. `RUST_LOG` filters logs only: traces always
/// get sessiond's info-level spans.
pub fn init(cfg: &TracingConfig) -> Result<Option<Telemetry>, CliError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SESSIOND_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let mut layers = vec![logs];
    let telemetry = match pipeline(cfg)? {
        Some((provider, timeout, counters)) => {
            let tracer = provider.tracer("sessiond");
            // Only sessiond's own spans: the exporter's HTTP client and the libraries
            // below it must not feed spans back into the pipeline.
            let targets = Targets::new()
                .with_target("sessiond", LevelFilter::INFO)
                .with_default(LevelFilter::OFF);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(targets)
                    .boxed(),
            );
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            Some(Telemetry {
                provider,
                timeout,
                counters,
            })
        }
        None => None,
    };
    tracing_subscriber::registry().with(layers).init();
    if let Some(url) = cfg.traces_url().filter(|_| telemetry.is_some()) {
        tracing::info!(
            endpoint = %sessiond_server::config::redact_url(&url),
            sample_ratio = cfg.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(telemetry)
}

/// The tracer provider for `tracing`, or `None` when no endpoint is set (then nothing
/// is built: no exporter thread, no propagator).
#[allow(clippy::type_complexity)]
fn pipeline(
    cfg: &TracingConfig,
) -> Result<Option<(SdkTracerProvider, Duration, Arc<Counters>)>, CliError> {
    if !cfg.enabled() {
        return Ok(None);
    }
    cfg.validate()?;
    let url = cfg
        .traces_url()
        .ok_or_else(|| CliError::Telemetry("tracing.otlp_endpoint is not a URL".into()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(cfg.export_timeout)
        .build()
        .map_err(|e| CliError::Telemetry(e.to_string()))?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(cfg.max_queue_size)
        .with_max_export_batch_size(cfg.max_batch_size)
        .with_scheduled_delay(cfg.batch_delay)
        .build();
    let counters = Arc::new(Counters::default());
    // Beyond this many unexported spans some were certainly dropped: the queue holds
    // max_queue_size and one batch may be on its way.
    let in_flight = (cfg.max_queue_size + cfg.max_batch_size) as u64;
    let exporter = LoggedExporter::new(exporter, counters.clone(), in_flight);
    let processor = Counting {
        inner: BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build(),
        counters: counters.clone(),
    };
    let resource = Resource::builder_empty()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        // The caller's decision wins, so a trace is never cut in half; new traces are
        // kept at the configured ratio.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    Ok(Some((
        provider,
        cfg.export_timeout + Duration::from_secs(1),
        counters,
    )))
}

/// The OTLP exporter, with failures logged at most once per
/// [`EXPORT_WARNING_INTERVAL`] (with the count since the last warning) and a recovery
/// noted; a failed batch is dropped, never retried into an unbounded backlog. Spans
/// dropped by a full queue are warned about at the same pace.
#[derive(Debug)]
struct LoggedExporter {
    inner: opentelemetry_otlp::SpanExporter,
    counters: Arc<Counters>,
    in_flight: u64,
    state: Mutex<ExportState>,
}

#[derive(Debug, Default)]
struct ExportState {
    last_failure_warning: Option<Instant>,
    unreported_failures: u64,
    failing: bool,
    last_drop_warning: Option<Instant>,
    reported_dropped: u64,
}

fn due(last: Option<Instant>) -> bool {
    last.is_none_or(|at| at.elapsed() >= EXPORT_WARNING_INTERVAL)
}

impl LoggedExporter {
    fn new(
        inner: opentelemetry_otlp::SpanExporter,
        counters: Arc<Counters>,
        in_flight: u64,
    ) -> Self {
        LoggedExporter {
            inner,
            counters,
            in_flight,
            state: Mutex::default(),
        }
    }

    fn note(&self, result: &OTelSdkResult, spans: usize) {
        self.counters
            .handled
            .fetch_add(spans as u64, Ordering::AcqRel);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if st.failing {
                    st.failing = false;
                    st.unreported_failures = 0;
                    tracing::info!("trace export works again");
                }
            }
            Err(e) => {
                st.failing = true;
                st.unreported_failures += 1;
                if due(st.last_failure_warning) {
                    tracing::warn!(
                        error = %e,
                        failed_exports = st.unreported_failures,
                        spans,
                        "trace export failed; spans dropped (next warning in a minute at most)"
                    );
                    st.last_failure_warning = Some(Instant::now());
                    st.unreported_failures = 0;
                }
            }
        }
        let dropped = self.counters.unhandled().saturating_sub(self.in_flight);
        if dropped > st.reported_dropped && due(st.last_drop_warning) {
            tracing::warn!(
                dropped,
                "spans dropped because the trace queue was full (tracing.max_queue_size)"
            );
            st.reported_dropped = dropped;
            st.last_drop_warning = Some(Instant::now());
        }
    }
}

impl SpanExporter for LoggedExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.note(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_server::config::Config;

    #[test]
    fn no_endpoint_builds_no_pipeline() {
        let c = Config::default();
        assert!(!c.tracing.enabled());
        assert!(pipeline(&c.tracing).unwrap().is_none());
        let c = Config::from_toml("[tracing]\notlp_endpoint = \"\"").unwrap();
        assert!(pipeline(&c.tracing).unwrap().is_none());
    }

    #[test]
    fn endpoints_get_the_traces_path_unless_they_have_one() {
        let url = |e: &str| {
            Config::from_toml(&format!("[tracing]\notlp_endpoint = \"{e}\""))
                .unwrap()
                .tracing
                .traces_url()
        };
        assert_eq!(
            url("http://127.0.0.1:4318").as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            url("http://collector:4318/").as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            url("http://collector/otlp/v1/traces").as_deref(),
            Some("http://collector/otlp/v1/traces")
        );
    }

    #[test]
    fn bad_tracing_settings_are_refused() {
        let checked = |s: &str| Config::from_toml(s).and_then(|c| c.validate());
        for bad in [
            "otlp_endpoint = \"https://collector:4318\"",
            "otlp_endpoint = \"collector:4318\"",
            "otlp_endpoint = \"http://user:pw@collector:4318\"",
            "otlp_endpoint = \"not a url\"",
            "sample_ratio = 1.5",
            "sample_ratio = -0.1",
            "service_name = \"\"",
            "batch_delay = \"0s\"",
            "export_timeout = \"0s\"",
            "max_queue_size = 0",
            "max_batch_size = 4096",
        ] {
            assert!(checked(&format!("[tracing]\n{bad}")).is_err(), "{bad}");
        }
        assert!(checked("[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"").is_ok());
    }

    #[test]
    fn export_failures_and_drops_are_counted_not_fatal() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint("http://127.0.0.1:9/v1/traces")
            .with_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let counters = Arc::new(Counters::default());
        let logged = LoggedExporter::new(exporter, counters.clone(), 4);
        let failed = || {
            Err(opentelemetry_sdk::error::OTelSdkError::Timeout(
                Duration::ZERO,
            ))
        };
        counters.ended.fetch_add(6, Ordering::AcqRel);
        logged.note(&failed(), 3);
        logged.note(&failed(), 3);
        {
            let st = logged.state.lock().unwrap();
            assert!(st.failing);
            // The first failure was reported, the second waits for the next interval.
            assert_eq!(st.unreported_failures, 1);
            assert!(st.last_failure_warning.is_some());
            assert_eq!(st.reported_dropped, 0);
        }
        assert_eq!(counters.unhandled(), 0);
        logged.note(&Ok(()), 0);
        assert!(!logged.state.lock().unwrap().failing);
        // 20 more ended, 3 exported: beyond the 4 that may still be queued, 13 were dropped.
        counters.ended.fetch_add(20, Ordering::AcqRel);
        logged.note(&Ok(()), 3);
        assert_eq!(logged.state.lock().unwrap().reported_dropped, 13);
    }
}
