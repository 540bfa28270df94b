//! Who may try to log in: connections that have not logged in yet are bounded per client
//! address, and an address with too many failed logins is turned away for a while.
//!
//! An address is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64). The
//! tables hold at most [`MAX_TRACKED`] addresses each; past that the oldest entries go first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Shared;

/// Addresses each table of [`Door`] remembers at most.
pub(crate) const MAX_TRACKED: usize = 10_000;

/// Where a connection comes from, as the limits count it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Source(IpAddr);

impl Source {
    pub fn of(peer: SocketAddr) -> Self {
        match peer.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Source(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
            v4 => Source(v4),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

struct Failures {
    since: Instant,
    count: u32,
}

/// The login limits' state, shared by all connections.
#[derive(Default)]
pub(crate) struct Door {
    pending: Mutex<HashMap<Source, usize>>,
    failures: Mutex<HashMap<Source, Failures>>,
}

/// A connection's place among its address's connections that have not logged in; given back
/// at the login or when the connection ends.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    source: Source,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut p) = self.shared.door.pending.lock()
            && let Some(n) = p.get_mut(&self.source)
        {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.source);
            }
        }
    }
}

/// Make room in a table that is full: expired entries first, then the oldest.
fn make_room<V>(map: &mut HashMap<Source, V>, expired: impl Fn(&V) -> bool, age: impl Fn(&V) -> Instant) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, v| !expired(v));
    while map.len() >= MAX_TRACKED {
        let Some(oldest) = map.iter().min_by_key(|(_, v)| age(v)).map(|(k, _)| *k) else {
            return;
        };
        map.remove(&oldest);
    }
}

impl Door {
    /// Let a new connection from `peer` start its login, or say why not.
    pub fn admit(shared: &Arc<Shared>, peer: SocketAddr) -> Result<Pending, String> {
        let source = Source::of(peer);
        let limit = shared.limits.max_pending_per_address;
        let mut p = shared.door.pending.lock().map_err(|_| "internal lock".to_string())?;
        let n = p.get(&source).copied().unwrap_or(0);
        if n >= limit {
            return Err(format!(
                "too many connections from {source} that have not logged in yet (the server's limit is {limit})"
            ));
        }
        if n == 0 && p.len() >= MAX_TRACKED {
            // every tracked address has a connection waiting: refuse rather than forget one
            return Err("too many connections that have not logged in yet".into());
        }
        p.insert(source, n + 1);
        Ok(Pending {
            shared: shared.clone(),
            source,
        })
    }

    /// How long `peer`'s address is still turned away after its failed logins, if it is.
    pub fn locked_out(&self, limits: &crate::Limits, peer: SocketAddr) -> Option<Duration> {
        let f = self.failures.lock().ok()?;
        let entry = f.get(&Source::of(peer))?;
        let left = limits.failed_login_window.checked_sub(entry.since.elapsed())?;
        (entry.count >= limits.max_failed_logins).then_some(left)
    }

    /// Count a failed login from `peer`; `true` when this one locks its address out.
    pub fn failed(&self, limits: &crate::Limits, peer: SocketAddr) -> bool {
        let Ok(mut f) = self.failures.lock() else { return false };
        let window = limits.failed_login_window;
        make_room(&mut f, |v| v.since.elapsed() >= window, |v| v.since);
        let entry = f.entry(Source::of(peer)).or_insert(Failures {
            since: Instant::now(),
            count: 0,
        });
        if entry.since.elapsed() >= window {
            *entry = Failures {
                since: Instant::now(),
                count: 0,
            };
        }
        entry.count += 1;
        entry.count == limits.max_failed_logins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:5000".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:bbbb::9]:6000".parse().unwrap();
        let c: SocketAddr = "[2001:db8:1:3::1]:5000".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:1".parse().unwrap();
        let v4: SocketAddr = "192.0.2.7:2".parse().unwrap();
        assert_eq!(Source::of(mapped), Source::of(v4));
    }

    #[test]
    fn a_full_table_forgets_expired_entries_then_the_oldest() {
        let mut m: HashMap<Source, Instant> = HashMap::new();
        let now = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            m.insert(Source(ip), now + Duration::from_millis(u64::from(i)));
        }
        make_room(&mut m, |_| false, |v| *v);
        assert_eq!(m.len(), MAX_TRACKED - 1);
        assert!(!m.contains_key(&Source(IpAddr::V4(std::net::Ipv4Addr::from(0)))));
    }
}
