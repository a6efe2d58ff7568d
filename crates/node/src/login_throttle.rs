//! Login throttling: per-source exponential backoff and a bounded per-user delay, shared by
//! every port that takes a password (MySQL, gRPC, HTTP). In memory, per FE, never replicated.
//!
//! Per source (IPv4 address, IPv6 /64): the first `free_failures` consecutive failures cost
//! nothing; after that each check from the source is scheduled `base_delay * 2^k` (capped at
//! `max_delay`) after the previous one. An attempt whose slot is at most `max_wait` away waits
//! for it (the answer is late, whatever the password); one whose slot is further away is refused
//! at once *without checking the password*, so a correct guess there is refused too. Parallel
//! connections from one source take successive slots: they buy the source nothing.
//!
//! Per user: after `user_free_failures` consecutive failures on a user (from any source), every
//! attempt on that user, right or wrong, waits `base_delay * 2^k` capped at `user_max_delay`
//! before its check. This never refuses anyone: the owner logging in from another source is
//! slowed by at most `user_max_delay`, never locked out (MySQL's connection_control shape, not
//! Doris's account lock).
//!
//! A successful login forgets its source's and its user's failures; failures older than
//! `window` are forgotten too. Both maps are bounded (`MAX_TRACKED`): past that, the entry with
//! the oldest failure is evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Entries kept per map (sources, users) before the oldest is evicted.
pub const MAX_TRACKED: usize = 65_536;

/// Knobs of the throttle (FE config `[login]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Consecutive failures from one source before its checks are spaced out.
    pub free_failures: u32,
    /// The first spacing; it doubles with each further failure.
    pub base_delay: Duration,
    /// The largest spacing between two checks from one source.
    pub max_delay: Duration,
    /// The longest an attempt is held waiting for its slot; further away, it is refused at once.
    pub max_wait: Duration,
    /// Consecutive failures on one user (any source) before its logins are slowed.
    pub user_free_failures: u32,
    /// The largest delay added to a login on a user under attack.
    pub user_max_delay: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
            max_wait: Duration::from_secs(2),
            user_free_failures: 10,
            user_max_delay: Duration::from_secs(1),
            window: Duration::from_secs(600),
        }
    }
}

/// What to do with one login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password after waiting this long (zero: at once).
    CheckAfter(Duration),
    /// Refuse without checking: the source's next check is this far away.
    Refused { retry_in: Duration, failures: u32 },
}

/// Counts since the FE started (for metrics).
#[derive(Debug, Default)]
pub struct LoginCounters {
    pub succeeded: AtomicU64,
    /// Checked and wrong (bad password or unknown user).
    pub failed: AtomicU64,
    /// Refused by the throttle without a check.
    pub throttled: AtomicU64,
}

/// A snapshot of `LoginCounters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub throttled: u64,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Consecutive failures (attempts admitted and not yet succeeded).
    failures: u32,
    /// The earliest time of the next check from this key.
    next_check: Instant,
    last_failure: Instant,
}

#[derive(Default)]
struct Maps {
    sources: HashMap<IpAddr, Record>,
    users: HashMap<String, Record>,
}

pub struct LoginThrottle {
    cfg: ThrottleConfig,
    maps: Mutex<Maps>,
    counters: LoginCounters,
}

/// The key of a source: the address, or its /64 for IPv6 (one host owns a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn spacing(base: Duration, cap: Duration, over: u32) -> Duration {
    base.saturating_mul(1u32 << over.min(20)).min(cap)
}

fn fresh(r: Option<&mut Record>, now: Instant, window: Duration) -> Option<&mut Record> {
    r.filter(|r| now.saturating_duration_since(r.last_failure) < window)
}

fn bound<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Record>, now: Instant, w: Duration) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, r| now.saturating_duration_since(r.last_failure) < w);
    if map.len() >= MAX_TRACKED
        && let Some(k) = map
            .iter()
            .min_by_key(|(_, r)| r.last_failure)
            .map(|(k, _)| k.clone())
    {
        map.remove(&k);
    }
}

impl LoginThrottle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        LoginThrottle {
            cfg,
            maps: Mutex::new(Maps::default()),
            counters: LoginCounters::default(),
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.cfg
    }

    pub fn counts(&self) -> LoginCounts {
        let c = &self.counters;
        LoginCounts {
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
        }
    }

    /// Decide about one attempt at `now`. An admitted attempt counts as a failure until
    /// `succeeded` says otherwise, so parallel attempts from one source take successive slots.
    pub fn admit(&self, source: IpAddr, user: &str, now: Instant) -> Admission {
        let cfg = &self.cfg;
        let source = source_key(source);
        let mut maps = self.maps.lock().expect("login throttle lock");
        let maps = &mut *maps;
        let src = fresh(maps.sources.get_mut(&source), now, cfg.window).copied();
        let slot = src.map_or(now, |r| r.next_check.max(now));
        let wait = slot - now;
        if wait > cfg.max_wait {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
            return Admission::Refused {
                retry_in: wait,
                failures: src.map_or(0, |r| r.failures),
            };
        }
        let failures = src.map_or(0, |r| r.failures) + 1;
        let next_check = slot
            + match failures.checked_sub(cfg.free_failures) {
                Some(over) => spacing(cfg.base_delay, cfg.max_delay, over),
                None => Duration::ZERO,
            };
        bound(&mut maps.sources, now, cfg.window);
        maps.sources.insert(
            source,
            Record {
                failures,
                next_check,
                last_failure: now,
            },
        );
        // The user's delay adds to the source's wait, within the handshake's time.
        let user_wait = match fresh(maps.users.get_mut(user), now, cfg.window) {
            Some(u) if u.failures >= cfg.user_free_failures => spacing(
                cfg.base_delay,
                cfg.user_max_delay,
                u.failures - cfg.user_free_failures,
            ),
            _ => Duration::ZERO,
        };
        Admission::CheckAfter(wait + user_wait)
    }

    /// The check after `admit` failed (wrong password or unknown user).
    pub fn failed(&self, user: &str, now: Instant) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        let mut maps = self.maps.lock().expect("login throttle lock");
        let window = self.cfg.window;
        // Unknown users are tracked too (bounded), so probing for names costs the same.
        match fresh(maps.users.get_mut(user), now, window) {
            Some(u) => {
                u.failures = u.failures.saturating_add(1);
                u.last_failure = now;
            }
            None => {
                bound(&mut maps.users, now, window);
                maps.users.insert(
                    user.to_string(),
                    Record {
                        failures: 1,
                        next_check: now,
                        last_failure: now,
                    },
                );
            }
        }
    }

    /// The check after `admit` succeeded: forget the source's and the user's failures.
    pub fn succeeded(&self, source: IpAddr, user: &str) {
        self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
        let mut maps = self.maps.lock().expect("login throttle lock");
        maps.sources.remove(&source_key(source));
        maps.users.remove(user);
    }

    /// The attempt ended without a verdict (the cluster could not look the user up): it must
    /// not count against the source.
    pub fn abandoned(&self, source: IpAddr) {
        let mut maps = self.maps.lock().expect("login throttle lock");
        if let Some(r) = maps.sources.get_mut(&source_key(source)) {
            r.failures = r.failures.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg() -> ThrottleConfig {
        ThrottleConfig::default()
    }

    /// A sequential attacker: three free checks, then spaced 200, 400, 800, 1600 ms; then its
    /// slot is more than max_wait away and it is refused at once until the slot comes near.
    #[test]
    fn one_source_backs_off_exponentially_then_is_refused() {
        let t = LoginThrottle::new(cfg());
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..7 {
            match t.admit(ip("127.0.0.2"), "victim", now) {
                Admission::CheckAfter(w) => {
                    now += w;
                    waits.push(w.as_millis());
                    t.failed("victim", now);
                }
                other => panic!("refused too early: {other:?} after {waits:?}"),
            }
        }
        assert_eq!(waits, [0, 0, 0, 200, 400, 800, 1600]);
        match t.admit(ip("127.0.0.2"), "victim", now) {
            Admission::Refused { retry_in, failures } => {
                assert_eq!(retry_in, Duration::from_millis(3200));
                assert_eq!(failures, 7);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.counts().throttled, 1);
        // Within max_wait of the slot, it waits for it again.
        let later = now + Duration::from_millis(1300);
        assert_eq!(
            t.admit(ip("127.0.0.2"), "victim", later),
            Admission::CheckAfter(Duration::from_millis(1900) + Duration::ZERO)
        );
    }

    #[test]
    fn parallel_attempts_take_successive_slots() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        let mut waits = Vec::new();
        while let Admission::CheckAfter(w) = t.admit(ip("10.0.0.1"), "u", now) {
            waits.push(w.as_millis());
        }
        assert_eq!(waits, [0, 0, 0, 200, 600, 1400]);
    }

    #[test]
    fn other_sources_are_not_slowed_and_the_user_delay_is_bounded() {
        let t = LoginThrottle::new(cfg());
        let mut now = Instant::now();
        // 40 failures on "root" from many sources (each under its free allowance).
        for i in 0..40u8 {
            let src = ip(&format!("127.0.{i}.1"));
            assert!(matches!(
                t.admit(src, "root", now),
                Admission::CheckAfter(w) if w <= cfg().user_max_delay
            ));
            t.failed("root", now);
            now += Duration::from_millis(1);
        }
        // The owner from a fresh source: slowed by at most user_max_delay, never refused.
        assert_eq!(
            t.admit(ip("192.0.2.7"), "root", now),
            Admission::CheckAfter(cfg().user_max_delay)
        );
        t.succeeded(ip("192.0.2.7"), "root");
        // Another user from another source: not slowed at all.
        assert_eq!(
            t.admit(ip("192.0.2.8"), "ops", now),
            Admission::CheckAfter(Duration::ZERO)
        );
        // Success forgot root's failures.
        assert_eq!(
            t.admit(ip("192.0.2.9"), "root", now),
            Admission::CheckAfter(Duration::ZERO)
        );
    }

    #[test]
    fn success_and_the_window_forget_failures() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        for _ in 0..5 {
            let _ = t.admit(ip("127.0.0.3"), "a", now);
            t.failed("a", now);
        }
        assert!(matches!(
            t.admit(ip("127.0.0.3"), "a", now),
            Admission::Refused { .. } | Admission::CheckAfter(_)
        ));
        t.succeeded(ip("127.0.0.3"), "a");
        assert_eq!(
            t.admit(ip("127.0.0.3"), "a", now),
            Admission::CheckAfter(Duration::ZERO)
        );
        let t = LoginThrottle::new(cfg());
        for _ in 0..8 {
            let _ = t.admit(ip("127.0.0.4"), "a", now);
        }
        let much_later = now + cfg().window + Duration::from_secs(120);
        assert_eq!(
            t.admit(ip("127.0.0.4"), "a", much_later),
            Admission::CheckAfter(Duration::ZERO)
        );
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa::1")),
            source_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_key(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
    }

    #[test]
    fn maps_stay_bounded() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let _ = t.admit(IpAddr::V4(i.into()), "x", now);
        }
        assert!(t.maps.lock().unwrap().sources.len() <= MAX_TRACKED);
    }
}
