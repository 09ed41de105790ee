//! Throttling of failed authentication per client address: wrong API keys (calls, result
//! downloads, scrapes) and wrong page logins.
//!
//! Each address may fail [`Throttle::burst`] times at once, then once per
//! [`Throttle::period`] (GCRA, by `governor`). A failure past that blocks the address until
//! its next allowed failure: while blocked, its requests are answered 429 with `Retry-After`
//! *before* their key is looked at, so guessing goes no faster than the quota whatever the
//! guesses. Other addresses are not affected; a blocked address that presents the right key
//! waits like any other request from it. IPv6 addresses count per /64 (one host's share).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// How failed authentication is throttled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthThrottle {
    /// Failures an address may make at once.
    pub burst: u32,
    /// After the burst, one more failure per this period.
    pub period: Duration,
}

impl Default for AuthThrottle {
    /// 10 at once, then one per 6 s (10 a minute).
    fn default() -> AuthThrottle {
        AuthThrottle {
            burst: 10,
            period: Duration::from_secs(6),
        }
    }
}

/// Addresses blocked at most at once (each entry is ~40 B); past it, expired entries are
/// dropped and, if none has expired, the new address is only throttled by the limiter.
const MAX_BLOCKED: usize = 65_536;

/// The per-address state.
#[derive(Debug)]
pub(crate) struct Throttle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

/// What an address counts as: itself (IPv4), its /64 (IPv6).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl Throttle {
    pub(crate) fn new(config: AuthThrottle) -> Throttle {
        let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(config.period.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Throttle {
            limiter: governor::RateLimiter::keyed(quota),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// How long `ip` must still wait, if it is blocked.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut blocked = self.blocked.lock();
        let until = *blocked.get(&bucket(ip))?;
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&bucket(ip));
            None
        }
    }

    /// Counts a failure of `ip`; if it is past the quota, blocks the address and answers how
    /// long it must wait.
    pub(crate) fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let key = bucket(ip);
        let not_until = self.limiter.check_key(&key).err()?;
        let wait = not_until.wait_time_from(self.clock.now());
        let now = Instant::now();
        let mut blocked = self.blocked.lock();
        if blocked.len() >= MAX_BLOCKED {
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < MAX_BLOCKED {
            blocked.insert(key, now + wait);
        }
        Some(wait)
    }

    /// Forgets addresses whose failures are all behind them (called by the server's sweep).
    pub(crate) fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        let mut blocked = self.blocked.lock();
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }
}

/// Whole seconds to put in `Retry-After` (at least 1).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_past_its_burst_and_others_are_not() {
        let t = Throttle::new(AuthThrottle {
            burst: 3,
            period: Duration::from_secs(60),
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.failed(a), None);
            assert_eq!(t.blocked(a), None);
        }
        let wait = t.failed(a).expect("the fourth failure is over the quota");
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(t.blocked(a).is_some());
        assert_eq!(t.blocked(b), None);
        assert_eq!(t.failed(b), None);
        t.sweep();
        assert!(t.blocked(a).is_some(), "a live block survives the sweep");
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = Throttle::new(AuthThrottle {
            burst: 1,
            period: Duration::from_secs(60),
        });
        assert_eq!(t.failed("2001:db8::1".parse().unwrap()), None);
        assert!(t.failed("2001:db8::ffff:2".parse().unwrap()).is_some());
        assert!(t.blocked("2001:db8::3".parse().unwrap()).is_some());
        assert_eq!(t.blocked("2001:db8:0:1::3".parse().unwrap()), None);
    }
}
