//! Temporary bans of address prefixes, with expiry and a hard bound.
//!
//! A ban covers a [`Cidr`] (one address, an IPv6 /64, or any prefix an operator
//! names) until a time. Lookups mask the address with each prefix length in use (a
//! handful), so a check costs a few hash lookups whatever the list's size. The list
//! holds at most `capacity` bans: when it is full, an automatic ban replaces the
//! automatic ban that ends first (if the new one ends later), and operators' bans
//! (manual) are never displaced by automatic ones.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use rampart_model::net::Cidr;

use crate::time::Time;

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// When it started.
    pub since: Time,
    /// When it ends.
    pub until: Time,
    /// Why (a short label such as `rate_limited`, or an operator's note).
    pub reason: String,
    /// Set by an operator rather than by the offence policy.
    pub manual: bool,
}

/// Why a ban was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    /// The list is full and nothing may be displaced.
    #[error("the ban list is full")]
    Full,
}

/// What adding a ban did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// A new ban.
    New,
    /// The prefix was banned already; its end moved to the later of both.
    Extended,
    /// A new ban that displaced this automatic one.
    Displaced(Cidr),
}

/// Bans by prefix.
#[derive(Debug, Default)]
pub struct BanList {
    bans: HashMap<Cidr, Ban>,
    /// (until, prefix) of automatic bans, to expire and displace the first to end.
    auto_by_end: BTreeSet<(Time, Cidr)>,
    /// (until, prefix) of manual bans, to expire them.
    manual_by_end: BTreeSet<(Time, Cidr)>,
    /// Bans per prefix length: `[0..=32]` IPv4, `[33..=161]` IPv6.
    per_length: Vec<u32>,
    capacity: usize,
}

fn length_slot(c: &Cidr) -> usize {
    match c.addr() {
        IpAddr::V4(_) => usize::from(c.prefix()),
        IpAddr::V6(_) => 33 + usize::from(c.prefix()),
    }
}

impl BanList {
    /// An empty list of at most `capacity` bans.
    pub fn new(capacity: usize) -> Self {
        Self {
            per_length: vec![0; 33 + 129],
            capacity: capacity.max(1),
            ..Self::default()
        }
    }

    /// Bans held (expired ones included until [`Self::expire`]).
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// True when nothing is banned.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// The most bans held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the bound; when lowered, the bans that end first go (automatic ones
    /// before manual ones).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.bans.len() > self.capacity {
            let first = self
                .auto_by_end
                .first()
                .or_else(|| self.manual_by_end.first())
                .map(|(_, c)| *c);
            match first {
                Some(c) => {
                    self.remove(&c);
                }
                None => break,
            }
        }
    }

    /// Bans `cidr` as `ban` says. A prefix banned already keeps the later end (and a
    /// manual ban stays manual).
    pub fn add(&mut self, cidr: Cidr, ban: Ban) -> Result<Added, BanError> {
        if let Some(old) = self.bans.get(&cidr).cloned() {
            let merged = Ban {
                since: old.since,
                until: old.until.max(ban.until),
                reason: if ban.until > old.until {
                    ban.reason
                } else {
                    old.reason
                },
                manual: old.manual || ban.manual,
            };
            self.remove(&cidr);
            self.insert(cidr, merged);
            return Ok(Added::Extended);
        }
        let mut displaced = None;
        if self.bans.len() >= self.capacity {
            let first = self.auto_by_end.first().copied();
            match first {
                Some((end, victim)) if ban.manual || end < ban.until => {
                    self.remove(&victim);
                    displaced = Some(victim);
                }
                _ => return Err(BanError::Full),
            }
        }
        self.insert(cidr, ban);
        Ok(displaced.map_or(Added::New, Added::Displaced))
    }

    /// Sets the ban of `cidr` exactly (an operator's change), replacing any.
    pub fn set(&mut self, cidr: Cidr, ban: Ban) -> Result<Added, BanError> {
        self.remove(&cidr);
        self.add(cidr, ban)
    }

    fn insert(&mut self, cidr: Cidr, ban: Ban) {
        let by_end = if ban.manual {
            &mut self.manual_by_end
        } else {
            &mut self.auto_by_end
        };
        by_end.insert((ban.until, cidr));
        self.per_length[length_slot(&cidr)] += 1;
        self.bans.insert(cidr, ban);
    }

    /// Lifts the ban of exactly `cidr`.
    pub fn remove(&mut self, cidr: &Cidr) -> Option<Ban> {
        let ban = self.bans.remove(cidr)?;
        let by_end = if ban.manual {
            &mut self.manual_by_end
        } else {
            &mut self.auto_by_end
        };
        by_end.remove(&(ban.until, *cidr));
        self.per_length[length_slot(cidr)] -= 1;
        Some(ban)
    }

    /// The ban covering `ip` at `now` (the longest prefix when several do).
    pub fn find(&self, ip: IpAddr, now: Time) -> Option<(Cidr, &Ban)> {
        if self.bans.is_empty() {
            return None;
        }
        let (base, max) = match ip {
            IpAddr::V4(_) => (0, 32u8),
            IpAddr::V6(_) => (33, 128u8),
        };
        for len in (0..=max).rev() {
            if self.per_length[base + usize::from(len)] == 0 {
                continue;
            }
            let Ok(c) = Cidr::new(ip, len) else {
                continue;
            };
            if let Some(b) = self.bans.get(&c)
                && b.until > now
            {
                return Some((c, b));
            }
        }
        None
    }

    /// The ban of exactly `cidr`.
    pub fn get(&self, cidr: &Cidr) -> Option<&Ban> {
        self.bans.get(cidr)
    }

    /// Drops bans ended by `now`; returns how many.
    pub fn expire(&mut self, now: Time) -> usize {
        let mut ended = Vec::new();
        for set in [&self.auto_by_end, &self.manual_by_end] {
            ended.extend(set.iter().take_while(|(t, _)| *t <= now).map(|(_, c)| *c));
        }
        for c in &ended {
            self.remove(c);
        }
        ended.len()
    }

    /// Every ban, ending first first.
    pub fn iter(&self) -> impl Iterator<Item = (&Cidr, &Ban)> {
        let mut all: Vec<(&Cidr, &Ban)> = self.bans.iter().collect();
        all.sort_by_key(|(c, b)| (b.until, **c));
        all.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    fn ban(until: u64, manual: bool) -> Ban {
        Ban {
            since: Time::ZERO,
            until: Time::from_secs(until),
            reason: "test".into(),
            manual,
        }
    }

    #[test]
    fn finds_covering_prefixes_until_they_end() {
        let mut l = BanList::new(10);
        l.add(c("203.0.113.7/32"), ban(10, false)).unwrap();
        l.add(c("2001:db8:1:2::/64"), ban(20, false)).unwrap();
        l.add(c("198.51.100.0/24"), ban(30, true)).unwrap();
        let at = |s: &str, t: u64| {
            l.find(s.parse().unwrap(), Time::from_secs(t))
                .map(|(c, _)| c.to_string())
        };
        assert_eq!(at("203.0.113.7", 5).as_deref(), Some("203.0.113.7/32"));
        assert_eq!(at("203.0.113.8", 5), None);
        assert_eq!(at("203.0.113.7", 10), None);
        assert_eq!(
            at("2001:db8:1:2:ffff::1", 5).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(at("2001:db8:1:3::1", 5), None);
        assert_eq!(at("198.51.100.200", 29).as_deref(), Some("198.51.100.0/24"));
        assert_eq!(l.expire(Time::from_secs(20)), 2);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn bounded_automatic_bans_never_displace_manual_ones() {
        let mut l = BanList::new(2);
        l.add(c("10.0.0.1/32"), ban(100, true)).unwrap();
        l.add(c("10.0.0.2/32"), ban(50, false)).unwrap();
        // Ends later than the automatic one: displaces it.
        assert_eq!(
            l.add(c("10.0.0.3/32"), ban(60, false)),
            Ok(Added::Displaced(c("10.0.0.2/32")))
        );
        // Ends sooner: refused.
        assert_eq!(l.add(c("10.0.0.4/32"), ban(55, false)), Err(BanError::Full));
        // Manual bans displace automatic ones.
        assert!(l.add(c("10.0.0.5/32"), ban(10, true)).is_ok());
        assert_eq!(
            l.add(c("10.0.0.6/32"), ban(999, false)),
            Err(BanError::Full)
        );
        assert_eq!(l.add(c("10.0.0.6/32"), ban(999, true)), Err(BanError::Full));
        // Re-banning extends.
        assert_eq!(l.add(c("10.0.0.5/32"), ban(70, false)), Ok(Added::Extended));
        let b = l.get(&c("10.0.0.5/32")).unwrap();
        assert!(b.manual && b.until == Time::from_secs(70));
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity_and_finds_what_it_holds(
            cap in 1usize..20,
            ops in proptest::collection::vec((any::<u8>(), 24u8..=32, 1u64..100, any::<bool>()), 0..200),
        ) {
            let mut l = BanList::new(cap);
            for (host, len, until, manual) in ops {
                let ip: IpAddr = [10, 0, 0, host].into();
                let cidr = Cidr::new(ip, len).unwrap();
                let _ = l.add(cidr, ban(until, manual));
                prop_assert!(l.len() <= cap);
                if let Some(b) = l.get(&cidr) {
                    prop_assert!(l.find(ip, Time::ZERO).is_some());
                    prop_assert!(b.until >= Time::from_secs(until));
                }
                let total: u32 = l.per_length.iter().sum();
                prop_assert_eq!(total as usize, l.len());
                prop_assert_eq!(l.auto_by_end.len() + l.manual_by_end.len(), l.len());
            }
        }
    }
}
