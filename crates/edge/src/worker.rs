//! The data-path worker threads as state sees them: which worker the current thread is,
//! and [`PerWorker`], one value per worker on cache lines of its own.
//!
//! Each worker thread drives its own runtime and its own connections. State that every
//! request updates (idle server connections, route counters) is kept per worker so
//! that two workers never write the same cache line on the hot path: a write to a line
//! the other core holds costs a transfer between cores on every request. Readers that
//! need a total (a metrics scrape) add the workers' values up.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as data-path worker `i` (1-based; 0 is any other thread).
pub fn set_index(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// The current thread's worker index (0 outside the data-path workers).
pub fn index() -> usize {
    WORKER.with(Cell::get)
}

/// At most this many slots per [`PerWorker`]: beyond it workers share slots (by index
/// modulo), which bounds the memory of per-route counters on machines with many cores.
pub const MAX_SLOTS: usize = 16;

/// Keeps `T` away from its neighbours' cache lines (128 bytes: adjacent-line prefetch
/// pairs 64-byte lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One `T` per worker thread plus one for every other thread.
#[derive(Debug)]
pub struct PerWorker<T> {
    slots: Box<[Padded<T>]>,
}

impl<T> PerWorker<T> {
    /// Slots for `workers` workers (and the other threads), each made by `make`.
    pub fn new(workers: usize, mut make: impl FnMut() -> T) -> Self {
        let n = (workers + 1).min(MAX_SLOTS);
        Self {
            slots: (0..n).map(|_| Padded(make())).collect(),
        }
    }

    /// The current thread's slot.
    pub fn local(&self) -> &T {
        &self.slots[index() % self.slots.len()].0
    }

    /// Every slot, to add up or to sweep.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_has_its_own_slot_on_its_own_lines() {
        let p = PerWorker::new(3, || std::sync::atomic::AtomicU64::new(0));
        let addrs: Vec<usize> = (0..4)
            .map(|i| {
                set_index(i);
                p.local() as *const _ as usize
            })
            .collect();
        set_index(0);
        for (k, a) in addrs.iter().enumerate() {
            assert_eq!(a % 128, 0);
            for b in &addrs[k + 1..] {
                assert!(a.abs_diff(*b) >= 128);
            }
        }
        assert_eq!(p.iter().count(), 4);
    }

    #[test]
    fn slots_are_capped_and_shared_beyond_the_cap() {
        let p = PerWorker::new(100, || 0u8);
        assert_eq!(p.iter().count(), MAX_SLOTS);
        set_index(MAX_SLOTS + 2);
        let a = p.local() as *const u8;
        set_index(2);
        let b = p.local() as *const u8;
        set_index(0);
        assert_eq!(a, b);
    }
}
