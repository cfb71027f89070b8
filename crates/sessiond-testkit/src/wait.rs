//! Bounded waits on conditions: tests poll for the state they expect until a deadline
//! instead of sleeping a fixed time and hoping the server got there.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How often a condition is polled. Short enough to add little latency to a test, long
/// enough not to load a shared 2-core machine.
pub const POLL: Duration = Duration::from_millis(20);

/// The default bound of a wait: far above any latency the specification asks for, so a
/// loaded machine does not fail a test that would pass, while a hang still fails.
pub const DEFAULT: Duration = Duration::from_secs(10);

/// Polls `probe` until it yields `Some`, at most `within`; panics naming `what` otherwise.
pub async fn until_some<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `cond` until it holds, at most `within`; panics naming `what` otherwise.
pub async fn until<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_some(within, what, || {
        let f = cond();
        async move { f.await.then_some(()) }
    })
    .await
}

/// [`until_some`] for blocking (thread) code, e.g. child processes and their files.
pub fn until_some_blocking<T>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn polls_until_the_condition_holds() {
        let n = &AtomicU32::new(0);
        let start = Instant::now();
        until(Duration::from_secs(1), "three polls", move || async move {
            n.fetch_add(1, Ordering::SeqCst) >= 2
        })
        .await;
        assert_eq!(n.load(Ordering::SeqCst), 3);
        assert_eq!(start.elapsed(), POLL * 2);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 100ms waiting for never")]
    async fn panics_at_the_deadline() {
        until(Duration::from_millis(100), "never", || async { false }).await;
    }

    #[test]
    fn blocking_variant_returns_the_value() {
        let mut n = 0;
        let v = until_some_blocking(Duration::from_secs(1), "a value", || {
            n += 1;
            (n == 2).then_some(n)
        });
        assert_eq!(v, 2);
    }
}
