//! How long to wait: jitter, exponential backoff, and the fixed delays of
//! the error policy.

use std::time::Duration;

/// How soon a write that lost a race (409, failed precondition) is retried.
pub const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// Extra delay, up to twice this, on top of the wait an object held back by
/// its provider's request budget is requeued after.
pub const THROTTLE_SPREAD: Duration = Duration::from_millis(100);
/// How often an object whose namespace is being deleted is looked at again
/// (its own deletion normally wakes it first).
pub const NAMESPACE_TERMINATING_RECHECK: Duration = Duration::from_secs(2);

/// `d` scaled by a random factor in `[1 - spread, 1 + spread]`.
pub fn jitter(d: Duration, spread: f64) -> Duration {
    let factor = 1.0 + spread * (rand::random::<f64>() * 2.0 - 1.0);
    d.mul_f64(factor.max(0.0))
}

/// Exponential backoff for the `attempt`-th consecutive failure (1-based), with
/// ±25% jitter, capped at `max`, and never shorter than the vendor's `Retry-After`.
pub fn backoff_delay(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let delay = jitter(exp.min(max), 0.25);
    match retry_after {
        Some(wait) => delay.max(wait),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let first = backoff_delay(base, max, 1, None);
            assert!(
                first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500),
                "{first:?}"
            );
            let fourth = backoff_delay(base, max, 4, None);
            assert!(
                fourth >= Duration::from_secs(12) && fourth <= Duration::from_secs(20),
                "{fourth:?}"
            );
            let late = backoff_delay(base, max, 40, None);
            assert!(late <= Duration::from_secs(75), "{late:?}");
            let told = backoff_delay(base, max, 1, Some(Duration::from_secs(30)));
            assert!(told >= Duration::from_secs(30));
        }
    }

    #[test]
    fn jitter_spreads_resyncs() {
        let d = Duration::from_secs(600);
        let samples: Vec<_> = (0..200).map(|_| jitter(d, 0.1)).collect();
        assert!(
            samples
                .iter()
                .all(|s| *s >= Duration::from_secs(540) && *s <= Duration::from_secs(660))
        );
        let distinct: std::collections::HashSet<_> =
            samples.iter().map(|s| s.as_millis()).collect();
        assert!(
            distinct.len() > 100,
            "jitter must actually spread the delays"
        );
    }
}
