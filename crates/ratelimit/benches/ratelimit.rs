//! Costs of the rate-limiting primitives with 100,000 tracked keys, and the memory
//! each tracked key takes.
//!
//! `cargo bench -p rampart-ratelimit` runs the timings (criterion); the memory figures
//! are printed first: the growth of the process's resident memory while 100,000 keys
//! are added (allocator overhead and hash-table slack included).

#![expect(clippy::unwrap_used, reason = "a benchmark panics on setup failures")]

use std::hint::black_box;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use rampart_model::net::Cidr;
use rampart_ratelimit::{
    Ban, BanList, BoundedLru, ConnectionAttempt, GcraState, Period, Periods, Quota, StickTable,
    Time,
};

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
fn rss() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const KEYS: u32 = 100_000;

fn source(i: u32) -> Cidr {
    Cidr::host(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i)))
}

fn periods() -> Periods {
    let p = Period::new(Duration::from_secs(10)).unwrap();
    Periods {
        conn: p,
        handshake: p,
        http_req: p,
        http_err: p,
        offence: Period::new(Duration::from_secs(60)).unwrap(),
    }
}

fn full_table() -> StickTable<Cidr> {
    let mut t = StickTable::new(KEYS as usize, periods());
    for i in 0..KEYS {
        t.request(&source(i), Time::from_nanos(u64::from(i)))
            .unwrap();
    }
    t
}

fn memory() {
    let mut out = std::io::stdout().lock();
    let before = rss();
    let t = full_table();
    let stick = rss() - before;
    let before = rss();
    let mut g: BoundedLru<u64, GcraState> = BoundedLru::new(KEYS as usize);
    for i in 0..u64::from(KEYS) {
        g.get_or_insert_with(i, Time::from_nanos(i), GcraState::default)
            .unwrap();
    }
    let gcra = rss() - before;
    let before = rss();
    let mut bans = BanList::new(KEYS as usize);
    for i in 0..KEYS {
        let ban = Ban {
            since: Time::ZERO,
            until: Time::from_secs(600),
            reason: "rate_limited".to_owned(),
            manual: false,
        };
        bans.add(source(i), ban).unwrap();
    }
    let ban = rss() - before;
    let per = |b: isize| b as f64 / f64::from(KEYS);
    let _ = writeln!(
        out,
        "memory per tracked key ({KEYS} keys): stick table {:.1} B, request limit (GCRA) {:.1} B, ban {:.1} B",
        per(stick),
        per(gcra),
        per(ban)
    );
    drop((t, g, bans));
}

fn timings(c: &mut Criterion) {
    let mut t = full_table();
    let mut i = 0u32;
    let mut now = u64::from(KEYS);
    c.bench_function(
        "stick table: request from a tracked source (100k keys)",
        |b| {
            b.iter(|| {
                i = (i + 7919) % KEYS;
                now += 1000;
                black_box(t.request(&source(i), Time::from_nanos(now)).unwrap());
            })
        },
    );
    c.bench_function("stick table: connection open + close (100k keys)", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            now += 1000;
            let k = source(i);
            let attempt = ConnectionAttempt { handshake: true };
            black_box(
                t.connection(&k, Time::from_nanos(now), attempt, |s| s.conn_cur < 10)
                    .unwrap(),
            );
            t.close(&k, Time::from_nanos(now));
        })
    });
    let mut fresh = KEYS;
    c.bench_function(
        "stick table: new source, evicting the oldest (100k keys)",
        |b| {
            b.iter(|| {
                fresh = fresh.wrapping_add(1);
                now += 1000;
                black_box(t.request(&source(fresh), Time::from_nanos(now)).unwrap());
            })
        },
    );
    let q = Quota::new(100, Duration::from_secs(1), 200).unwrap();
    let mut g: BoundedLru<u64, GcraState> = BoundedLru::new(KEYS as usize);
    for k in 0..u64::from(KEYS) {
        g.get_or_insert_with(k, Time::ZERO, GcraState::default)
            .unwrap();
    }
    let mut k = 0u64;
    c.bench_function(
        "request limit: GCRA check of a tracked key (100k keys)",
        |b| {
            b.iter(|| {
                k = (k + 7919) % u64::from(KEYS);
                now += 1000;
                let n = Time::from_nanos(now);
                let s = g.get_or_insert_with(k, n, GcraState::default).unwrap();
                black_box(q.check(s.value, n));
            })
        },
    );
    let mut bans = BanList::new(KEYS as usize);
    for i in 0..KEYS {
        let ban = Ban {
            since: Time::ZERO,
            until: Time::from_secs(1 << 30),
            reason: "rate_limited".to_owned(),
            manual: false,
        };
        bans.add(source(i), ban).unwrap();
    }
    bans.add(
        Cidr::parse("192.0.2.0/24").unwrap(),
        Ban {
            since: Time::ZERO,
            until: Time::from_secs(1 << 30),
            reason: "manual".to_owned(),
            manual: true,
        },
    )
    .unwrap();
    let clean: IpAddr = "198.51.100.1".parse().unwrap();
    c.bench_function(
        "ban list: lookup of an address not banned (100k bans)",
        |b| b.iter(|| black_box(bans.find(black_box(clean), Time::from_secs(1)))),
    );
}

criterion_group!(benches, timings);

fn main() {
    memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
