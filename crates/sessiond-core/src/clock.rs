//! Time source: every deadline is computed from an injectable clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch (UTC). A plain integer so stores can index it.
pub type Timestamp = i64;

/// Where "now" comes from. The server uses [`SystemClock`]; tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        d.as_millis() as i64
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, t: Timestamp) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.0.load(Ordering::SeqCst)
    }
}

/// A timestamp's UTC calendar fields: year, month, day, hour, minute, second, millisecond.
fn civil(ts: Timestamp) -> [i64; 7] {
    // Civil-from-days (Howard Hinnant's algorithm): avoids a date crate in the core.
    let secs = ts.div_euclid(1000);
    let ms = ts.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    [y, m, d, sod / 3600, (sod % 3600) / 60, sod % 60, ms]
}

/// [`to_rfc3339`] through `format!`: years outside 0–9999, and the tests' reference.
fn padded([y, m, d, hh, mm, ss, ms]: [i64; 7]) -> String {
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

/// Formats a timestamp as RFC 3339 (UTC, millisecond precision) for JSON and logs.
pub fn to_rfc3339(ts: Timestamp) -> String {
    let f = civil(ts);
    if !(0..=9999).contains(&f[0]) {
        return padded(f);
    }
    // Digits written in place: `format!` with padding cost several times more, and
    // every session and audit answer carries a few of these.
    let mut b = *b"0000-00-00T00:00:00.000Z";
    for (v, (at, width)) in
        f.into_iter()
            .zip([(0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2), (20, 3)])
    {
        let mut v = v;
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    b.iter().map(|&c| char::from(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(to_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(to_rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(to_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(to_rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(to_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        // Outside four-digit years: the long form.
        assert_eq!(to_rfc3339(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_digits_match_the_padded_format() {
        // Year 0 to 9999, pseudo-random instants: the in-place digits against `format!`.
        let (lo, hi) = (-62_167_219_200_000_i64, 253_402_300_799_999_i64);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let ts = lo + (x % (hi - lo) as u64) as i64;
            assert_eq!(to_rfc3339(ts), padded(civil(ts)), "{ts}");
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1000);
        let c2 = c.clone();
        c.advance_ms(500);
        assert_eq!(c2.now(), 1500);
    }
}
