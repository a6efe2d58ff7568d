//! Rate limits for repetitive log lines: at most one line per key per interval, and that line
//! says how many were suppressed since the previous one (a down peer, an exhausted fd table).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The usual interval between two lines about the same thing.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct RateLimit<K> {
    interval: Duration,
    slots: Mutex<BTreeMap<K, Slot>>,
}

struct Slot {
    last: Instant,
    suppressed: u64,
}

impl<K: Ord> RateLimit<K> {
    pub const fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            slots: Mutex::new(BTreeMap::new()),
        }
    }

    /// `Some(n)` when a line about `key` is due now (`n` were suppressed since the last one);
    /// `None` to stay quiet and count this one.
    pub fn check(&self, key: K) -> Option<u64> {
        self.check_at(key, Instant::now())
    }

    /// `check` at a given time.
    pub fn check_at(&self, key: K, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().expect("rate limit lock");
        match slots.get_mut(&key) {
            Some(s) if now.duration_since(s.last) < self.interval => {
                s.suppressed += 1;
                None
            }
            Some(s) => {
                let n = s.suppressed;
                *s = Slot {
                    last: now,
                    suppressed: 0,
                };
                Some(n)
            }
            None => {
                slots.insert(
                    key,
                    Slot {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Forget `key` (it recovered): the next problem with it is logged at once.
    pub fn reset(&self, key: &K) {
        self.slots.lock().expect("rate limit lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn one_line_per_key_per_interval_with_the_count() {
        let r = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.check_at(1, t0), Some(0));
        assert_eq!(r.check_at(2, t0), Some(0), "keys are independent");
        for i in 1..=5 {
            assert_eq!(r.check_at(1, t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(r.check_at(1, t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(r.check_at(1, t0 + Duration::from_secs(11)), None);
        r.reset(&1);
        assert_eq!(
            r.check_at(1, t0 + Duration::from_secs(12)),
            Some(0),
            "a reset key logs at once"
        );
    }
}
