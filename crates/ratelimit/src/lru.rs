//! A map with a hard bound on its size that forgets the least recently seen keys.
//!
//! Keys come from attackers (source addresses, header values), so the map never grows
//! past its capacity: inserting into a full map evicts the key seen least recently.
//! Entries can be *pinned* (a source with open connections): pinned entries are never
//! evicted nor expired, so that counts that must come back down (concurrent
//! connections) stay exact. When every entry is pinned, an insert fails with [`Full`]
//! and the caller refuses what it was tracking (fail closed); sizing the map above the
//! number of things that can pin (the global connection cap) keeps that from happening.
//!
//! Layout: entries live densely in one vector (removal moves the last entry into the
//! hole), linked into two recency lists (idle and pinned) by 32-bit indices; the hash
//! index holds 4-byte entry numbers only. Hashing is keyed per map
//! ([`std::hash::RandomState`] by default, SipHash with a random key) so that an
//! attacker cannot aim keys at one bucket.

use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

use crate::time::Time;

const NIL: u32 = u32::MAX;

/// The map is full of pinned entries: nothing can be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("table full: every entry is pinned")]
pub struct Full;

#[derive(Debug)]
struct Slot<K, V> {
    key: K,
    value: V,
    last_seen: Time,
    prev: u32,
    next: u32,
    pinned: bool,
}

#[derive(Debug, Clone, Copy)]
struct List {
    /// Most recently seen.
    head: u32,
    /// Least recently seen.
    tail: u32,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
        }
    }
}

/// The result of [`BoundedLru::get_or_insert_with`].
#[derive(Debug)]
pub struct Access<'a, K, V> {
    /// The entry's value.
    pub value: &'a mut V,
    /// True when the key was not there.
    pub inserted: bool,
    /// The entry evicted to make room, if any.
    pub evicted: Option<(K, V)>,
}

/// A bounded map with least-recently-seen eviction and expiry.
#[derive(Debug)]
pub struct BoundedLru<K, V, S = RandomState> {
    index: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    /// `[idle, pinned]`.
    lists: [List; 2],
    capacity: usize,
    hasher: S,
}

impl<K: Hash + Eq, V> BoundedLru<K, V, RandomState> {
    /// An empty map holding at most `capacity` keys (at least 1, at most 2³² - 2).
    pub fn new(capacity: usize) -> Self {
        Self::with_hasher(capacity, RandomState::new())
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> BoundedLru<K, V, S> {
    /// An empty map with the given hasher.
    pub fn with_hasher(capacity: usize, hasher: S) -> Self {
        Self {
            index: HashTable::new(),
            slots: Vec::new(),
            lists: [List::default(); 2],
            capacity: capacity.clamp(1, (NIL - 1) as usize),
            hasher,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn find(&self, key: &K) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slots[i as usize].key == *key)
            .copied()
    }

    /// The value of `key`, without marking it seen.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).map(|i| &self.slots[i as usize].value)
    }

    /// The value of `key`, marking it seen at `now`.
    pub fn get_mut(&mut self, key: &K, now: Time) -> Option<&mut V> {
        let i = self.find(key)?;
        self.touch(i, now);
        Some(&mut self.slots[i as usize].value)
    }

    /// When `key` was last seen.
    pub fn last_seen(&self, key: &K) -> Option<Time> {
        self.find(key).map(|i| self.slots[i as usize].last_seen)
    }

    /// True when `key` is pinned.
    pub fn is_pinned(&self, key: &K) -> bool {
        self.find(key)
            .is_some_and(|i| self.slots[i as usize].pinned)
    }

    /// The value of `key` marked seen at `now`, inserted with `make` when absent
    /// (evicting the least recently seen unpinned key when the map is full).
    pub fn get_or_insert_with(
        &mut self,
        key: K,
        now: Time,
        make: impl FnOnce() -> V,
    ) -> Result<Access<'_, K, V>, Full> {
        if let Some(i) = self.find(&key) {
            self.touch(i, now);
            return Ok(Access {
                value: &mut self.slots[i as usize].value,
                inserted: false,
                evicted: None,
            });
        }
        let mut evicted = None;
        if self.slots.len() >= self.capacity {
            let victim = self.lists[0].tail;
            if victim == NIL {
                return Err(Full);
            }
            evicted = Some(self.remove_at(victim));
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by doubling, never past the bound.
            let want = (self.slots.len() * 2).max(16).min(self.capacity);
            self.slots.reserve_exact(want - self.slots.len());
        }
        let i = self.slots.len() as u32;
        let hash = self.hasher.hash_one(&key);
        self.slots.push(Slot {
            key,
            value: make(),
            last_seen: now,
            prev: NIL,
            next: NIL,
            pinned: false,
        });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&slots[j as usize].key));
        self.push_front(i);
        Ok(Access {
            value: &mut self.slots[i as usize].value,
            inserted: true,
            evicted,
        })
    }

    /// Pins or unpins `key` (pinned entries are never evicted nor expired) and marks
    /// it seen at `now`. Returns false when the key is absent.
    pub fn set_pinned(&mut self, key: &K, pinned: bool, now: Time) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        if self.slots[i as usize].pinned != pinned {
            self.unlink(i);
            self.slots[i as usize].pinned = pinned;
            self.push_front(i);
        }
        self.touch(i, now);
        true
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.find(key)?;
        Some(self.remove_at(i).1)
    }

    /// Removes up to `max` unpinned entries not seen since `before`, least recently
    /// seen first, handing each to `gone`. Returns how many were removed.
    pub fn expire(&mut self, before: Time, max: usize, mut gone: impl FnMut(K, V)) -> usize {
        let mut n = 0;
        while n < max {
            let t = self.lists[0].tail;
            if t == NIL || self.slots[t as usize].last_seen >= before {
                break;
            }
            let (k, v) = self.remove_at(t);
            gone(k, v);
            n += 1;
        }
        n
    }

    /// Every entry: key, value, last seen, pinned. In no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V, Time, bool)> {
        self.slots
            .iter()
            .map(|s| (&s.key, &s.value, s.last_seen, s.pinned))
    }

    /// Unpinned keys from the least recently seen on (for tests and diagnostics).
    pub fn idle_keys_oldest_first(&self) -> Vec<&K> {
        let mut out = Vec::new();
        let mut i = self.lists[0].tail;
        while i != NIL {
            out.push(&self.slots[i as usize].key);
            i = self.slots[i as usize].prev;
        }
        out
    }

    fn list_of(&self, i: u32) -> usize {
        usize::from(self.slots[i as usize].pinned)
    }

    fn touch(&mut self, i: u32, now: Time) {
        let s = &mut self.slots[i as usize];
        if now > s.last_seen {
            s.last_seen = now;
        }
        let l = self.list_of(i);
        if self.lists[l].head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let l = self.list_of(i);
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.lists[l].head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[l].tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn push_front(&mut self, i: u32) {
        let l = self.list_of(i);
        let head = self.lists[l].head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = head;
        }
        if head == NIL {
            self.lists[l].tail = i;
        } else {
            self.slots[head as usize].prev = i;
        }
        self.lists[l].head = i;
    }

    /// Removes entry `i`, moving the last entry into its place.
    fn remove_at(&mut self, i: u32) -> (K, V) {
        self.unlink(i);
        let hash = self.hasher.hash_one(&self.slots[i as usize].key);
        if let Ok(e) = self.index.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        let last = (self.slots.len() - 1) as u32;
        if i != last {
            // The last entry moves to `i`: fix its neighbours, its list ends and its
            // index entry.
            let (prev, next, l) = {
                let s = &self.slots[last as usize];
                (s.prev, s.next, usize::from(s.pinned))
            };
            if prev == NIL {
                self.lists[l].head = i;
            } else {
                self.slots[prev as usize].next = i;
            }
            if next == NIL {
                self.lists[l].tail = i;
            } else {
                self.slots[next as usize].prev = i;
            }
            let h = self.hasher.hash_one(&self.slots[last as usize].key);
            if let Some(e) = self.index.find_mut(h, |&j| j == last) {
                *e = i;
            }
        }
        let s = self.slots.swap_remove(i as usize);
        (s.key, s.value)
    }

    /// Checks every structural invariant (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert!(self.slots.len() <= self.capacity);
        assert_eq!(self.index.len(), self.slots.len());
        let mut seen = 0;
        for (l, list) in self.lists.iter().enumerate() {
            let mut i = list.head;
            let mut prev = NIL;
            let mut last_time = None;
            while i != NIL {
                let s = &self.slots[i as usize];
                assert_eq!(usize::from(s.pinned), l);
                assert_eq!(s.prev, prev);
                if let Some(t) = last_time {
                    assert!(s.last_seen <= t, "lists are ordered by recency");
                }
                last_time = Some(s.last_seen);
                assert_eq!(self.find(&s.key), Some(i));
                prev = i;
                i = s.next;
                seen += 1;
            }
            assert_eq!(list.tail, prev);
        }
        assert_eq!(seen, self.slots.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_least_recently_seen() {
        let mut m: BoundedLru<u32, u32> = BoundedLru::new(3);
        for k in 0..3 {
            m.get_or_insert_with(k, Time::from_secs(u64::from(k)), || k)
                .unwrap();
        }
        // Seeing 0 again makes 1 the oldest.
        m.get_mut(&0, Time::from_secs(10));
        let a = m.get_or_insert_with(7, Time::from_secs(11), || 7).unwrap();
        assert!(a.inserted);
        assert_eq!(a.evicted, Some((1, 1)));
        assert_eq!(m.idle_keys_oldest_first(), vec![&2, &0, &7]);
        m.check_invariants();
    }

    #[test]
    fn pinned_entries_stay_and_a_full_pinned_map_refuses() {
        let mut m: BoundedLru<u32, ()> = BoundedLru::new(2);
        m.get_or_insert_with(1, Time::ZERO, || ()).unwrap();
        m.get_or_insert_with(2, Time::ZERO, || ()).unwrap();
        assert!(m.set_pinned(&1, true, Time::ZERO));
        let a = m.get_or_insert_with(3, Time::from_secs(1), || ()).unwrap();
        assert_eq!(a.evicted, Some((2, ())));
        m.set_pinned(&3, true, Time::from_secs(1));
        assert_eq!(
            m.get_or_insert_with(4, Time::from_secs(2), || ()).err(),
            Some(Full)
        );
        // Pinned entries never expire; unpinned ones do.
        assert_eq!(m.expire(Time::from_secs(100), usize::MAX, |_, _| {}), 0);
        m.set_pinned(&1, false, Time::from_secs(3));
        let mut gone = vec![];
        assert_eq!(
            m.expire(Time::from_secs(100), usize::MAX, |k, _| gone.push(k)),
            1
        );
        assert_eq!(gone, vec![1]);
        m.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Touch(u16),
        Pin(u16, bool),
        Remove(u16),
        Expire(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..64).prop_map(Op::Insert),
            2 => (0u16..64).prop_map(Op::Touch),
            2 => ((0u16..64), any::<bool>()).prop_map(|(k, p)| Op::Pin(k, p)),
            1 => (0u16..64).prop_map(Op::Remove),
            1 => any::<u8>().prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// Against a plain model: the bound always holds, eviction takes the least
        /// recently seen unpinned key, pinned keys are never lost, and the structure
        /// stays consistent.
        #[test]
        fn behaves_like_the_model(cap in 1usize..12, ops in proptest::collection::vec(op(), 0..300)) {
            let mut m: BoundedLru<u16, u16> = BoundedLru::new(cap);
            // Model: key -> (last seen, pinned, insertion order for ties).
            let mut model: std::collections::HashMap<u16, (u64, bool, u64)> = Default::default();
            let mut clock = 0u64;
            let mut seq = 0u64;
            for op in ops {
                clock += 1;
                seq += 1;
                let now = Time::from_nanos(clock);
                match op {
                    Op::Insert(k) => {
                        let r = m.get_or_insert_with(k, now, || k);
                        if let Some(e) = model.get_mut(&k) {
                            let a = r.unwrap();
                            prop_assert!(!a.inserted);
                            e.0 = clock; e.2 = seq;
                        } else if model.len() < cap {
                            let a = r.unwrap();
                            prop_assert!(a.inserted && a.evicted.is_none());
                            model.insert(k, (clock, false, seq));
                        } else {
                            let oldest = model.iter().filter(|(_, v)| !v.1)
                                .min_by_key(|(_, v)| (v.0, v.2)).map(|(k, _)| *k);
                            match oldest {
                                None => prop_assert_eq!(r.err(), Some(Full)),
                                Some(o) => {
                                    let a = r.unwrap();
                                    prop_assert_eq!(a.evicted.map(|e| e.0), Some(o));
                                    model.remove(&o);
                                    model.insert(k, (clock, false, seq));
                                }
                            }
                        }
                    }
                    Op::Touch(k) => {
                        let got = m.get_mut(&k, now).is_some();
                        prop_assert_eq!(got, model.contains_key(&k));
                        if let Some(e) = model.get_mut(&k) { e.0 = clock; e.2 = seq; }
                    }
                    Op::Pin(k, p) => {
                        prop_assert_eq!(m.set_pinned(&k, p, now), model.contains_key(&k));
                        if let Some(e) = model.get_mut(&k) {
                            *e = (clock, p, seq);
                        }
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(m.remove(&k), model.remove(&k).map(|_| k));
                    }
                    Op::Expire(back) => {
                        let before = Time::from_nanos(clock.saturating_sub(u64::from(back)));
                        let mut gone = vec![];
                        m.expire(before, usize::MAX, |k, _| gone.push(k));
                        for k in &gone {
                            let e = model.remove(k);
                            prop_assert!(matches!(e, Some((t, false, _)) if t < before.as_nanos()));
                        }
                        prop_assert!(model.values().all(|v| v.1 || v.0 >= before.as_nanos()));
                    }
                }
                m.check_invariants();
                prop_assert!(m.len() <= cap);
                prop_assert_eq!(m.len(), model.len());
            }
        }
    }
}
