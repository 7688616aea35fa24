//! A sliding-window rate limit per client address, in memory.
//!
//! One process only: a partner running several instances would keep the windows in a
//! shared store (Redis, its database) or limit at its proxy.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked addresses, idle ones are dropped.
const MAX_KEYS: usize = 50_000;

pub(crate) struct RateLimiter {
    limit: u32,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// `limit` requests per `window`; 0 disables the limit.
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Records a request from `key` at `now`, or refuses it with how long to wait until
    /// the oldest request in the window leaves it (at least one second).
    pub(crate) fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if hits.len() >= MAX_KEYS && !hits.contains_key(key) {
            let window = self.window;
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let queue = hits.entry(key.to_owned()).or_default();
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            queue.pop_front();
        }
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if queue.len() >= limit {
            let oldest = queue.front().copied().unwrap_or(now);
            let wait = (oldest + self.window).saturating_duration_since(now);
            return Err(wait.max(Duration::from_secs(1)));
        }
        queue.push_back(now);
        Ok(())
    }
}

/// Whole seconds for `Retry-After`, rounded up.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_window_slides() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limiter.check("a", t0).is_ok());
        assert!(limiter.check("a", t0 + Duration::from_secs(10)).is_ok());
        let wait = limiter
            .check("a", t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        // Another address has its own window.
        assert!(limiter.check("b", t0 + Duration::from_secs(20)).is_ok());
        // The first request leaves the window at t0 + 60 s.
        assert!(limiter.check("a", t0 + Duration::from_secs(60)).is_ok());
        assert!(limiter.check("a", t0 + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn zero_disables_and_retry_after_rounds_up() {
        let limiter = RateLimiter::new(0, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(limiter.check("a", t0).is_ok());
        }
        assert_eq!(retry_after_secs(Duration::from_millis(40_001)), 41);
        assert_eq!(retry_after_secs(Duration::from_secs(40)), 40);
    }
}
