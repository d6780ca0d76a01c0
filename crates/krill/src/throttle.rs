//! Failed-key throttling per client address (brute-force resistance).
//!
//! After `max_failures` wrong keys within `window`, an address is blocked
//! for `base_backoff`; each further block of the same address doubles the
//! back-off, up to `max_backoff`. While blocked, its protected requests get
//! 429 with `Retry-After` and are **not** checked against the key, so a
//! blocked guess learns nothing. A request with the right key clears the
//! address's failure count (not its repeat count, which decays after
//! `max_backoff` without failures).
//!
//! IPv4 addresses are tracked one by one; IPv6 addresses by their /64
//! prefix, since one host usually controls a whole /64.
//!
//! Memory is bounded: at most `max_tracked` addresses are remembered. When
//! the table is full, entries that are neither blocked nor recent are
//! dropped first; if every entry is blocked, the new address is not
//! tracked (it can still only guess at the rate the other limits allow).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthThrottle;
use crate::slot::lock;

/// The throttling knobs, taken from the runtime settings
/// (`auth_throttle` in `GET/PATCH /api/config`, validated there) and the
/// memory bound from `krill.toml` (`limits.max_tracked_addresses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Wrong keys allowed from one address within `window_secs`.
    pub max_failures: u32,
    /// The window over which failures are counted.
    pub window_secs: u64,
    /// First block's length; doubles on each repeat.
    pub base_backoff_secs: u64,
    /// Longest block.
    pub max_backoff_secs: u64,
    /// Most addresses remembered at once.
    pub max_tracked: usize,
}

impl ThrottlePolicy {
    /// The policy for these settings.
    pub fn new(settings: &AuthThrottle, max_tracked: usize) -> ThrottlePolicy {
        ThrottlePolicy {
            max_failures: settings.max_failures.max(1),
            window_secs: u64::from(settings.window_seconds.max(1)),
            base_backoff_secs: u64::from(settings.backoff_seconds.max(1)),
            max_backoff_secs: u64::from(settings.max_backoff_seconds.max(settings.backoff_seconds)),
            max_tracked: max_tracked.max(1),
        }
    }
}

/// What the throttle says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the key as usual.
    Check,
    /// Refuse with 429; the client may retry after this long.
    Blocked { retry_after: Duration },
}

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The address is now blocked for this long.
    Started { source: IpAddr, backoff: Duration },
    /// The address's block has ended.
    Ended { source: IpAddr },
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
    strikes: u32,
    last_seen: Instant,
}

/// The table of addresses with recent failures.
#[derive(Debug)]
pub struct Throttle {
    policy: Mutex<ThrottlePolicy>,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// The address an entry is kept under: IPv4 as is, IPv6 by /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy: Mutex::new(policy),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> ThrottlePolicy {
        *lock(&self.policy)
    }

    /// Replaces the policy; existing blocks keep their end time.
    pub fn set_policy(&self, policy: ThrottlePolicy) {
        *lock(&self.policy) = policy;
    }

    /// Decides whether a protected request from `ip` is checked at all.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Admission {
        let table = lock(&self.table);
        match table.get(&source_of(ip)).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Admission::Blocked {
                retry_after: until - now,
            },
            _ => Admission::Check,
        }
    }

    /// Records a wrong key from `ip`; returns the start of a block if this
    /// failure caused one.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> Option<Transition> {
        let policy = self.policy();
        let source = source_of(ip);
        let mut table = lock(&self.table);
        if !table.contains_key(&source) && !make_room(&mut table, &policy, now) {
            return None;
        }
        let entry = table.entry(source).or_insert(Entry {
            failures: 0,
            window_start: now,
            blocked_until: None,
            strikes: 0,
            last_seen: now,
        });
        entry.last_seen = now;
        if now.duration_since(entry.window_start) > Duration::from_secs(policy.window_secs) {
            entry.failures = 0;
            entry.window_start = now;
        }
        entry.failures += 1;
        if entry.failures < policy.max_failures {
            return None;
        }
        let backoff = backoff(&policy, entry.strikes);
        entry.strikes = entry.strikes.saturating_add(1);
        entry.failures = 0;
        entry.window_start = now;
        entry.blocked_until = Some(now + backoff);
        Some(Transition::Started { source, backoff })
    }

    /// Records a right key from `ip`: its failure count starts again.
    pub fn record_success(&self, ip: IpAddr) {
        let mut table = lock(&self.table);
        if let Some(entry) = table.get_mut(&source_of(ip)) {
            entry.failures = 0;
        }
    }

    /// Ends blocks that are over and forgets addresses quiet for longer
    /// than both the window and the longest back-off. Returns the blocks
    /// that ended, for the log.
    pub fn sweep(&self, now: Instant) -> Vec<Transition> {
        let policy = self.policy();
        let forget_after = Duration::from_secs(policy.window_secs.max(policy.max_backoff_secs));
        let mut ended = Vec::new();
        let mut table = lock(&self.table);
        table.retain(|source, entry| {
            if let Some(until) = entry.blocked_until {
                if until <= now {
                    entry.blocked_until = None;
                    entry.last_seen = now;
                    ended.push(Transition::Ended { source: *source });
                }
            }
            entry.blocked_until.is_some() || now.duration_since(entry.last_seen) < forget_after
        });
        ended
    }

    /// Addresses blocked right now.
    pub fn blocked_count(&self, now: Instant) -> usize {
        lock(&self.table)
            .values()
            .filter(|e| e.blocked_until.is_some_and(|u| u > now))
            .count()
    }

    /// Addresses remembered right now.
    pub fn tracked_count(&self) -> usize {
        lock(&self.table).len()
    }
}

fn backoff(policy: &ThrottlePolicy, strikes: u32) -> Duration {
    let factor = 1u64.checked_shl(strikes.min(32)).unwrap_or(u64::MAX);
    let secs = policy
        .base_backoff_secs
        .saturating_mul(factor)
        .min(policy.max_backoff_secs);
    Duration::from_secs(secs)
}

/// Frees a slot when the table is full. Returns false when every entry is
/// blocked (the new address then goes untracked).
fn make_room(table: &mut HashMap<IpAddr, Entry>, policy: &ThrottlePolicy, now: Instant) -> bool {
    if table.len() < policy.max_tracked {
        return true;
    }
    let window = Duration::from_secs(policy.window_secs);
    table.retain(|_, e| {
        e.blocked_until.is_some_and(|u| u > now) || now.duration_since(e.last_seen) < window
    });
    if table.len() < policy.max_tracked {
        return true;
    }
    // Still full of recent entries: drop the quietest one that is not
    // blocked.
    let victim = table
        .iter()
        .filter(|(_, e)| e.blocked_until.is_none_or(|u| u <= now))
        .min_by_key(|(_, e)| e.last_seen)
        .map(|(k, _)| *k);
    match victim {
        Some(k) => {
            table.remove(&k);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            max_failures: 3,
            window_secs: 60,
            base_backoff_secs: 10,
            max_backoff_secs: 35,
            max_tracked: 16,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_after_the_threshold_and_only_that_address() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        assert_eq!(t.record_failure(ip("10.0.0.1"), now), None);
        assert_eq!(t.record_failure(ip("10.0.0.1"), now), None);
        let started = t.record_failure(ip("10.0.0.1"), now);
        assert!(
            matches!(started, Some(Transition::Started { backoff, .. }) if backoff == Duration::from_secs(10))
        );
        assert!(matches!(
            t.admit(ip("10.0.0.1"), now),
            Admission::Blocked { .. }
        ));
        assert_eq!(t.admit(ip("10.0.0.2"), now), Admission::Check);
    }

    #[test]
    fn backoff_grows_on_repeat_up_to_the_cap() {
        let t = Throttle::new(policy());
        let mut now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut last = None;
            for _ in 0..3 {
                last = t.record_failure(ip("10.0.0.1"), now);
            }
            if let Some(Transition::Started { backoff, .. }) = last {
                seen.push(backoff.as_secs());
                now += backoff;
            }
            let ended = t.sweep(now);
            assert_eq!(ended.len(), 1);
            assert_eq!(t.admit(ip("10.0.0.1"), now), Admission::Check);
        }
        assert_eq!(seen, vec![10, 20, 35, 35]);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        t.record_failure(ip("10.0.0.1"), now);
        t.record_failure(ip("10.0.0.1"), now);
        let later = now + Duration::from_secs(61);
        assert_eq!(t.record_failure(ip("10.0.0.1"), later), None);
    }

    #[test]
    fn a_right_key_resets_the_count() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        t.record_failure(ip("10.0.0.1"), now);
        t.record_failure(ip("10.0.0.1"), now);
        t.record_success(ip("10.0.0.1"));
        assert_eq!(t.record_failure(ip("10.0.0.1"), now), None);
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix_and_mapped_v4_is_v4() {
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for i in 0..10_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.record_failure(addr, now);
        }
        assert!(t.tracked_count() <= 16);
    }

    #[test]
    fn a_full_table_of_blocked_addresses_keeps_its_blocks() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for i in 0..16u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            for _ in 0..3 {
                t.record_failure(addr, now);
            }
        }
        assert_eq!(t.blocked_count(now), 16);
        t.record_failure(ip("192.0.2.1"), now);
        assert_eq!(t.blocked_count(now), 16);
    }
}
