//! Per-resource exponential backoff with deterministic jitter, capped.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl BackoffPolicy {
    /// Local signers (self-signed, CA): cheap to retry, so retry soon.
    pub const LOCAL: BackoffPolicy = BackoffPolicy {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(10 * 60),
    };
    /// Remote issuers (ACME): cert-manager's schedule, one hour doubling up to 32 hours,
    /// so that a CA is never hammered.
    pub const REMOTE: BackoffPolicy = BackoffPolicy {
        base: Duration::from_secs(3600),
        cap: Duration::from_secs(32 * 3600),
    };

    /// Delay before attempt number `failures + 1`, with ±10 % jitter derived from `key`
    /// and `failures` (stable for the same inputs, spread across resources).
    pub fn delay(&self, failures: u32, key: &str) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exp = failures.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp.min(20)).min(self.cap);
        // FNV-1a of key and attempt: a cheap, stable spread.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes().chain(failures.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let frac = (h % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
        let jittered = raw.as_secs_f64() * (1.0 + 0.1 * frac);
        Duration::from_secs_f64(jittered.max(1.0)).min(self.cap.mul_f64(1.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let p = BackoffPolicy::LOCAL;
        let d: Vec<f64> = (1..=10)
            .map(|n| p.delay(n, "demo/c").as_secs_f64())
            .collect();
        assert!((9.0..=11.0).contains(&d[0]), "{d:?}");
        assert!((18.0..=22.0).contains(&d[1]), "{d:?}");
        assert!((36.0..=44.0).contains(&d[2]), "{d:?}");
        assert!(d[9] <= 660.0 && d[9] >= 540.0, "{d:?}");
        assert_eq!(p.delay(0, "x"), Duration::ZERO);
        // Jitter spreads resources failing together.
        let a = p.delay(3, "demo/a");
        let b = p.delay(3, "demo/b");
        assert_ne!(a, b);
        assert_eq!(a, p.delay(3, "demo/a"));
        let r = BackoffPolicy::REMOTE.delay(40, "x");
        assert!(r <= Duration::from_secs(32 * 3600 * 11 / 10));
    }
}
