//! Capped exponential backoff with jitter, for reconnects and REST retries.

use std::time::Duration;

/// Delay `n` (0-based) is drawn uniformly from `[d/2, d]` with `d = min(cap, base·2^n)`
/// ("equal jitter": never zero, so a flapping endpoint is not hammered, and spread so that many
/// clients do not retry in lockstep).
#[derive(Clone, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap: cap.max(base), attempt: 0 }
    }
    /// The ceiling `min(cap, base·2^n)` of the next delay.
    pub fn ceiling(&self) -> Duration {
        let f = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(f).min(self.cap)
    }
    /// The next delay; each call doubles the ceiling up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let spread = (d - half).as_nanos() as u64;
        half + Duration::from_nanos(if spread == 0 { 0 } else { rand::random_range(0..=spread) })
    }
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
    /// After a success: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_range() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
