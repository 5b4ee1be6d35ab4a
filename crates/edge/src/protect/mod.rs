//! Edge protection: connection filtering, per-source limits, request rate limits,
//! temporary bans, and the global connection cap, on the gateway's hooks.
//!
//! Order of checks on a new connection (cheapest first, before any TLS work):
//! listener and global deny lists, then allow lists, then exemptions, then the ban
//! list, then the source's counters in the stick table (open connections, connection
//! rate, TLS handshake rate). On a request (after routing): the ban list again (a
//! source banned while connected), then each request limit that applies to the
//! listener and route, in order; the first that refuses answers 429 with
//! `Retry-After` (after a tarpit delay when the limit has one).
//!
//! Offences (refusals by a limit, 4xx answers above the error rate, and everything the
//! gateway reports through [`AbuseObserver`]) add weight to the source's offence
//! rate; a source whose weight within the window reaches the threshold is banned, for
//! the ban duration doubled for each earlier ban of the same source (up to the
//! maximum). Bans are refused at accept.
//!
//! A *source* is an address cut to its source prefix (IPv4 /32 and IPv6 /64 by
//! default: one IPv6 subnet is one source). IPv4-mapped IPv6 peers count as IPv4.
//!
//! All state is bounded: the stick table and each request limit's table hold at most
//! `table.size` keys (least recently seen evicted first; sources with open connections
//! are never evicted), the ban list at most `bans.size`. The state is sharded (16
//! locks per table) and lives across reloads.

pub mod admin;
mod chain;
mod clock;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::StatusCode;
use rampart_model::net::{Cidr, IpSet};
use rampart_ratelimit::{
    Ban, BanList, BoundedLru, ConnectionAttempt, Decision, GcraState, Period, Periods, Quota,
    StickTable, Time,
};

use crate::config::protection::{LimitKey, Protection as Config, RequestLimit};
use crate::config::{EdgeConfig, Mode};
use crate::hooks::{
    Abuse, AbuseObserver, Admission, ConnectionFilter, RequestFilter, RequestInfo, RequestVerdict,
};

pub use chain::install;
pub use clock::{Clock, rfc3339};

const SHARDS: usize = 16;

/// Why a client was refused; the label of `rampart_edge_protection_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// In a deny list.
    DenyList,
    /// Not in an allow list.
    NotAllowed,
    /// Banned.
    Banned,
    /// Too many open connections from the source.
    ConnPerSource,
    /// Too many new connections from the source.
    ConnRate,
    /// Too many TLS handshakes from the source.
    HandshakeRate,
    /// The stick table is full of sources with open connections.
    TableFull,
    /// A request limit refused the request (429).
    RateLimited,
}

impl Refusal {
    const ALL: [Refusal; 8] = [
        Refusal::DenyList,
        Refusal::NotAllowed,
        Refusal::Banned,
        Refusal::ConnPerSource,
        Refusal::ConnRate,
        Refusal::HandshakeRate,
        Refusal::TableFull,
        Refusal::RateLimited,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::DenyList => "deny_list",
            Refusal::NotAllowed => "not_allowed",
            Refusal::Banned => "banned",
            Refusal::ConnPerSource => "conn_per_source",
            Refusal::ConnRate => "conn_rate",
            Refusal::HandshakeRate => "handshake_rate",
            Refusal::TableFull => "table_full",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// Kinds of offence, as counted and as named in ban reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offence {
    /// A request refused by a request limit.
    RateLimited,
    /// A connection refused by a per-source limit.
    ConnectionLimit,
    /// 4xx answers above the error rate.
    HttpErrors,
    /// Reported by the gateway.
    Abuse(Abuse),
}

const OFFENCES: usize = 3 + Abuse::ALL.len();

impl Offence {
    /// The metric label and ban reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Offence::RateLimited => "rate_limited",
            Offence::ConnectionLimit => "connection_limit",
            Offence::HttpErrors => "http_errors",
            Offence::Abuse(a) => a.as_str(),
        }
    }

    fn index(self) -> usize {
        match self {
            Offence::RateLimited => 0,
            Offence::ConnectionLimit => 1,
            Offence::HttpErrors => 2,
            Offence::Abuse(a) => 3 + a.index(),
        }
    }

    fn all() -> impl Iterator<Item = Offence> {
        [
            Offence::RateLimited,
            Offence::ConnectionLimit,
            Offence::HttpErrors,
        ]
        .into_iter()
        .chain(Abuse::ALL.iter().map(|a| Offence::Abuse(*a)))
    }
}

/// Counters of the protection layer.
#[derive(Debug, Default)]
pub struct ProtectMetrics {
    refused: [AtomicU64; Refusal::ALL.len()],
    offences: [AtomicU64; OFFENCES],
    /// Bans issued by the offence policy.
    pub bans_issued: AtomicU64,
    /// Bans not issued because the ban list was full of bans ending later.
    pub bans_dropped: AtomicU64,
    /// Requests held in a tarpit before their 429.
    pub tarpitted: AtomicU64,
    /// Times an accept loop paused at the global connection cap.
    pub accept_paused: AtomicU64,
    /// Log lines about refusals left out by the log rate limit.
    pub log_suppressed: AtomicU64,
}

impl ProtectMetrics {
    /// Refusals for `r` so far.
    pub fn refused(&self, r: Refusal) -> u64 {
        let i = Refusal::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.refused[i].load(Ordering::Relaxed)
    }

    fn count_refusal(&self, r: Refusal) {
        let i = Refusal::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Offences of kind `o` so far.
    pub fn offences(&self, o: Offence) -> u64 {
        self.offences[o.index()].load(Ordering::Relaxed)
    }
}

/// The global connection cap: a connection holds a [`Slot`] from before `accept` until
/// it closes; at the cap, accept loops wait (new connections queue in the kernel).
#[derive(Debug)]
pub struct ConnSlots {
    used: AtomicUsize,
    max: AtomicUsize,
    freed: tokio::sync::Notify,
}

/// One place under the global connection cap, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<ConnSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        let before = self.0.used.fetch_sub(1, Ordering::AcqRel);
        if before >= self.0.max.load(Ordering::Relaxed) {
            self.0.freed.notify_waiters();
        }
    }
}

impl ConnSlots {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// Connections holding a slot.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
        self.freed.notify_waiters();
    }

    /// A slot now, if the cap allows.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                (u < max).then_some(u + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Waits until the cap leaves room (without taking it). `paused` is counted once
    /// each time the cap makes it wait.
    pub async fn wait_for_room(&self, paused: &AtomicU64) {
        let mut counted = false;
        loop {
            let freed = self.freed.notified();
            if self.used.load(Ordering::Acquire) < self.max.load(Ordering::Relaxed) {
                return;
            }
            if !counted {
                paused.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            // A slot freed between the check and here still wakes this waiter: the
            // notification future was created before the check. The timeout covers a
            // cap raised by a reload.
            let _ = tokio::time::timeout(Duration::from_millis(250), freed).await;
        }
    }

    /// Waits for a slot.
    pub async fn acquire(self: &Arc<Self>, paused: &AtomicU64) -> Slot {
        loop {
            if let Some(s) = self.try_acquire() {
                return s;
            }
            self.wait_for_room(paused).await;
        }
    }
}

/// A listener's compiled lists.
#[derive(Debug, Default)]
struct ListenerPolicy {
    allow: Option<IpSet>,
    deny: IpSet,
    /// Connections do a TLS handshake here (counted in the handshake rate).
    tls: bool,
}

/// A request limit made live: its quota and its keys' states.
#[derive(Debug)]
pub struct LimitTable {
    /// The limit as configured.
    pub limit: RequestLimit,
    shards: Arc<[Mutex<BoundedLru<u64, GcraState>>]>,
    /// Requests refused by this limit.
    pub refused: Arc<AtomicU64>,
}

impl LimitTable {
    fn new(limit: RequestLimit, size: usize) -> Self {
        Self {
            limit,
            shards: (0..SHARDS)
                .map(|i| Mutex::new(BoundedLru::new(shard_size(size, i))))
                .collect(),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    fn check(&self, key: u64, now: Time) -> Decision {
        let mut shard = lock(&self.shards[(key as usize) % SHARDS]);
        match shard.get_or_insert_with(key, now, GcraState::default) {
            Ok(a) => self.limit.quota.check(a.value, now),
            // Unreachable: nothing is pinned here.
            Err(_) => Decision::Deny {
                retry_after: self.limit.quota.interval(),
            },
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, now: Time) {
        // A key unseen for burst × interval is back at rest: forgetting it loses
        // nothing.
        let span = self
            .limit
            .quota
            .interval()
            .saturating_mul(self.limit.quota.burst());
        for s in self.shards.iter() {
            lock(s).expire(now.saturating_sub(span), 20_000, |_, _| {});
        }
    }
}

/// The configuration compiled for fast checks.
#[derive(Debug)]
struct Policy {
    enabled: bool,
    v4: u8,
    v6: u8,
    allow: Option<IpSet>,
    deny: IpSet,
    exempt: IpSet,
    listeners: HashMap<String, ListenerPolicy>,
    per_source: u32,
    conn_rate: u32,
    handshake_rate: u32,
    http_err_rate: u32,
    limits: Vec<Arc<LimitTable>>,
    tarpit_gate: Option<Quota>,
    config: Config,
}

/// Shard `i`'s part of `size`: the parts add up to exactly `size` (the hard bound).
fn shard_size(size: usize, i: usize) -> usize {
    (size / SHARDS + usize::from(i < size % SHARDS)).max(1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// IPv4-mapped IPv6 addresses count as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn periods(c: &Config) -> Periods {
    let p = |d: Duration| Period::new(d).unwrap_or_else(unreachable_period);
    Periods {
        conn: p(c.connections.rate_per_source.period),
        handshake: p(c.connections.tls_handshakes_per_source.period),
        http_req: p(Duration::from_secs(10)),
        http_err: p(c.bans.http_error_rate.period),
        offence: p(c.bans.window),
    }
}

#[expect(clippy::unwrap_used, reason = "one second is a valid period")]
fn unreachable_period() -> Period {
    Period::new(Duration::from_secs(1)).unwrap()
}

/// The protection layer of one gateway. Install it with [`install`]; its state
/// (counters, bans, limit tables) outlives reloads ([`Protection::apply`]).
#[derive(Debug)]
pub struct Protection {
    policy: ArcSwap<Policy>,
    sources: ArcSwap<Box<[Mutex<StickTable<Cidr>>]>>,
    table_size: AtomicUsize,
    limit_tables: Mutex<HashMap<String, Arc<LimitTable>>>,
    bans: RwLock<BanList>,
    slots: Arc<ConnSlots>,
    tarpit: Mutex<GcraState>,
    log_gate: Mutex<(Quota, GcraState)>,
    hasher: RandomState,
    clock: Clock,
    /// Counters.
    pub metrics: ProtectMetrics,
}

/// A connection's hold on its source's `conn_cur`, released on drop.
#[derive(Debug)]
struct ConnToken {
    protection: Arc<Protection>,
    source: Cidr,
}

impl Drop for ConnToken {
    fn drop(&mut self) {
        let now = self.protection.clock.now();
        let sources = self.protection.sources.load();
        let shard = self.protection.shard_of(&self.source);
        lock(&sources[shard]).close(&self.source, now);
    }
}

/// The most open client connections the process's file-descriptor limit allows,
/// leaving room for a server connection each and for everything else.
pub fn fd_budget() -> usize {
    let soft = raise_fd_limit();
    (soft.saturating_sub(256) / 2).max(64)
}

/// Raises the soft file-descriptor limit to the hard one; returns the soft limit.
fn raise_fd_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                return usize::try_from(hard).unwrap_or(usize::MAX);
            }
            usize::try_from(soft).unwrap_or(usize::MAX)
        }
        Err(_) => 1024,
    }
}

impl Protection {
    /// The protection of `config`.
    pub fn new(config: &EdgeConfig) -> Arc<Self> {
        let c = &config.protection;
        let p = Arc::new(Self {
            policy: ArcSwap::from_pointee(Policy {
                enabled: false,
                v4: 32,
                v6: 64,
                allow: None,
                deny: IpSet::empty(),
                exempt: IpSet::empty(),
                listeners: HashMap::new(),
                per_source: 0,
                conn_rate: 0,
                handshake_rate: 0,
                http_err_rate: 0,
                limits: Vec::new(),
                tarpit_gate: None,
                config: c.clone(),
            }),
            sources: ArcSwap::from_pointee(Self::shards(c.table_size, periods(c))),
            table_size: AtomicUsize::new(c.table_size),
            limit_tables: Mutex::new(HashMap::new()),
            bans: RwLock::new(BanList::new(c.bans.size)),
            slots: ConnSlots::new(usize::MAX),
            tarpit: Mutex::new(GcraState::default()),
            log_gate: Mutex::new((
                Quota::per_second(c.log_rejections_per_second.max(1))
                    .unwrap_or_else(|_| unreachable_quota()),
                GcraState::default(),
            )),
            hasher: RandomState::new(),
            clock: Clock::new(),
            metrics: ProtectMetrics::default(),
        });
        p.apply(config);
        p
    }

    fn shards(size: usize, periods: Periods) -> Box<[Mutex<StickTable<Cidr>>]> {
        (0..SHARDS)
            .map(|i| Mutex::new(StickTable::new(shard_size(size, i), periods)))
            .collect()
    }

    /// Applies a new (validated) configuration; counters, bans and the tables of
    /// limits that keep their name and quota carry over. A changed table size starts
    /// the stick table afresh.
    pub fn apply(&self, config: &EdgeConfig) {
        let c = &config.protection;
        let set = |cidrs: &[Cidr]| IpSet::from_cidrs(cidrs.iter());
        let mut listeners = HashMap::new();
        for l in &config.listeners {
            let f = c.listeners.iter().find(|f| f.name == l.name);
            listeners.insert(
                l.name.clone(),
                ListenerPolicy {
                    allow: f.filter(|f| !f.allow.is_empty()).map(|f| set(&f.allow)),
                    deny: f.map(|f| set(&f.deny)).unwrap_or_default(),
                    tls: l.mode == Mode::Http && l.tls.is_some(),
                },
            );
        }
        let old_size = self.table_size.load(Ordering::Relaxed);
        let mut tables = lock(&self.limit_tables);
        let limits: Vec<Arc<LimitTable>> = c
            .request_limits
            .iter()
            .map(|l| match tables.get(&l.name) {
                Some(t)
                    if t.limit.quota == l.quota
                        && t.limit.key == l.key
                        && old_size == c.table_size =>
                {
                    // Same counting: share the keys' states, take the new scope.
                    Arc::new(LimitTable {
                        limit: l.clone(),
                        shards: t.shards.clone(),
                        refused: t.refused.clone(),
                    })
                }
                _ => Arc::new(LimitTable::new(l.clone(), c.table_size)),
            })
            .collect();
        tables.clear();
        for t in &limits {
            tables.insert(t.limit.name.clone(), t.clone());
        }
        drop(tables);
        let longest_tarpit = c.request_limits.iter().filter_map(|l| l.tarpit).max();
        let tarpit_gate = longest_tarpit
            .and_then(|d| Quota::new(c.max_tarpitted.max(1), d, c.max_tarpitted.max(1)).ok());
        if self.table_size.swap(c.table_size, Ordering::Relaxed) != c.table_size {
            self.sources
                .store(Arc::new(Self::shards(c.table_size, periods(c))));
        } else {
            for s in self.sources.load().iter() {
                lock(s).set_periods(periods(c));
            }
        }
        self.bans
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_capacity(c.bans.size);
        *lock(&self.log_gate) = (
            Quota::per_second(c.log_rejections_per_second.max(1))
                .unwrap_or_else(|_| unreachable_quota()),
            GcraState::default(),
        );
        let max = if c.enabled {
            c.connections
                .max_total
                .unwrap_or_else(|| fd_budget().min(c.table_size / 2))
        } else {
            usize::MAX
        };
        self.slots.set_max(max);
        self.policy.store(Arc::new(Policy {
            enabled: c.enabled,
            v4: c.source_prefix_v4,
            v6: c.source_prefix_v6,
            allow: (!c.allow.is_empty()).then(|| set(&c.allow)),
            deny: set(&c.deny),
            exempt: set(&c.exempt),
            listeners,
            per_source: c.connections.per_source,
            conn_rate: c.connections.rate_per_source.count,
            handshake_rate: c.connections.tls_handshakes_per_source.count,
            http_err_rate: c.bans.http_error_rate.count,
            limits,
            tarpit_gate,
            config: c.clone(),
        }));
    }

    /// The global connection cap.
    pub fn slots(&self) -> &Arc<ConnSlots> {
        &self.slots
    }

    /// The clock decisions are made on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn shard_of(&self, source: &Cidr) -> usize {
        (self.hasher.hash_one(source) as usize) % SHARDS
    }

    /// The source `ip` belongs to.
    fn source_of(p: &Policy, ip: IpAddr) -> Cidr {
        let len = if ip.is_ipv4() { p.v4 } else { p.v6 };
        Cidr::new(ip, len).unwrap_or_else(|_| Cidr::host(ip))
    }

    /// Tracked sources.
    pub fn tracked_sources(&self) -> usize {
        self.sources.load().iter().map(|s| lock(s).len()).sum()
    }

    /// Sources evicted to make room.
    pub fn evicted_sources(&self) -> u64 {
        self.sources.load().iter().map(|s| lock(s).evicted()).sum()
    }

    /// The request limits in force.
    pub fn limits(&self) -> Vec<Arc<LimitTable>> {
        self.policy.load().limits.clone()
    }

    /// The counters of the source `ip` belongs to.
    pub fn source(&self, ip: IpAddr) -> Option<(Cidr, rampart_ratelimit::Snapshot)> {
        let p = self.policy.load();
        let src = Self::source_of(&p, canonical(ip));
        let now = self.clock.now();
        let sources = self.sources.load();
        let snap = lock(&sources[self.shard_of(&src)]).get(&src, now)?;
        Some((src, snap))
    }

    /// The busiest sources by request rate, with their counters.
    pub fn top_sources(&self, n: usize) -> Vec<(Cidr, rampart_ratelimit::Snapshot)> {
        let now = self.clock.now();
        let mut all = Vec::new();
        for s in self.sources.load().iter() {
            let t = lock(s);
            all.extend(t.iter(now).map(|(k, snap, _)| (*k, snap)));
        }
        all.sort_by_key(|(_, s)| {
            std::cmp::Reverse((s.http_req_rate, s.conn_cur, s.conn_rate, s.offence_rate))
        });
        all.truncate(n);
        all
    }

    /// Runs with the ban list.
    pub fn with_bans<R>(&self, f: impl FnOnce(&BanList) -> R) -> R {
        f(&self
            .bans
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Runs with the ban list, to change it.
    pub fn with_bans_mut<R>(&self, f: impl FnOnce(&mut BanList) -> R) -> R {
        f(&mut self
            .bans
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Forgets idle sources and ended bans. Call about once a second.
    pub fn sweep(&self) {
        let now = self.clock.now();
        let p = self.policy.load();
        for s in self.sources.load().iter() {
            lock(s).expire(now, p.config.table_expire, 20_000);
        }
        for l in &p.limits {
            l.expire(now);
        }
        self.with_bans_mut(|b| b.expire(now));
    }

    fn banned(&self, ip: IpAddr, now: Time) -> Option<Duration> {
        let bans = self
            .bans
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if bans.is_empty() {
            return None;
        }
        bans.find(ip, now).map(|(_, b)| b.until.since(now))
    }

    fn refuse(&self, r: Refusal, listener: &str, peer: SocketAddr, detail: &str) {
        self.metrics.count_refusal(r);
        self.log(|| {
            tracing::info!(
                listener,
                peer = %peer.ip(),
                reason = r.as_str(),
                detail,
                "client refused"
            )
        });
    }

    /// Logs through the log rate limit; the lines left out are counted and reported
    /// with the next line that gets through.
    fn log(&self, line: impl FnOnce()) {
        let now = self.clock.now();
        let allowed = {
            let mut g = lock(&self.log_gate);
            let (q, mut s) = *g;
            let d = q.check(&mut s, now);
            g.1 = s;
            d.is_allowed()
        };
        if allowed {
            let left_out = self.metrics.log_suppressed.swap(0, Ordering::Relaxed);
            if left_out > 0 {
                tracing::info!(
                    left_out,
                    "protection: log lines left out by the log rate limit"
                );
            }
            line();
        } else {
            self.metrics.log_suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an offence by the source of `ip`, banning it when its weight reaches the
    /// threshold.
    fn offend(&self, p: &Policy, ip: IpAddr, offence: Offence, now: Time) {
        self.metrics.offences[offence.index()].fetch_add(1, Ordering::Relaxed);
        let bans = &p.config.bans;
        let weight = match offence {
            Offence::RateLimited => bans.weights.rate_limited,
            Offence::ConnectionLimit => bans.weights.connection_limit,
            Offence::HttpErrors => bans.weights.http_errors,
            Offence::Abuse(a) => bans.weights.of(a),
        };
        if !p.enabled || !bans.enabled || weight == 0 || p.exempt.contains(ip) {
            return;
        }
        let src = Self::source_of(p, ip);
        let sources = self.sources.load();
        let count = {
            let mut t = lock(&sources[self.shard_of(&src)]);
            match t.offence(&src, now, weight) {
                Ok(s) if s.offence_rate >= bans.threshold => t.banned(&src, now),
                _ => return,
            }
        };
        let doubling = 1u32 << (count - 1).min(20);
        let length = bans
            .duration
            .saturating_mul(doubling)
            .min(bans.max_duration);
        let ban = Ban {
            since: now,
            until: now.saturating_add(length),
            reason: offence.as_str().to_owned(),
            manual: false,
        };
        match self.with_bans_mut(|b| b.add(src, ban)) {
            Ok(_) => {
                self.metrics.bans_issued.fetch_add(1, Ordering::Relaxed);
                self.log(|| {
                    tracing::warn!(
                        source = %src,
                        reason = offence.as_str(),
                        seconds = length.as_secs(),
                        bans = count,
                        "source banned"
                    )
                });
            }
            Err(_) => {
                self.metrics.bans_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn key_hash(&self, limit: &RequestLimit, src: &Cidr, info: &RequestInfo<'_>) -> u64 {
        match &limit.key {
            LimitKey::Client => self.hasher.hash_one((0u8, src)),
            LimitKey::Path => self.hasher.hash_one((1u8, info.path)),
            LimitKey::Header(h) => match info.headers.first(h) {
                Some(v) => self.hasher.hash_one((2u8, v)),
                None => self.hasher.hash_one((0u8, src)),
            },
        }
    }
}

#[expect(clippy::unwrap_used, reason = "one per second is a valid quota")]
fn unreachable_quota() -> Quota {
    Quota::per_second(1).unwrap()
}

/// The hook side of [`Protection`] (it needs the `Arc` to hand out tokens).
#[derive(Debug, Clone)]
pub struct Guard(pub Arc<Protection>);

impl ConnectionFilter for Guard {
    fn admit(&self, listener: &str, peer: SocketAddr) -> Admission {
        let pr = &self.0;
        let p = pr.policy.load();
        if !p.enabled {
            return Admission::Accept(None);
        }
        let ip = canonical(peer.ip());
        let lp = p.listeners.get(listener);
        if p.deny.contains(ip) || lp.is_some_and(|l| l.deny.contains(ip)) {
            pr.refuse(Refusal::DenyList, listener, peer, "");
            return Admission::Refuse;
        }
        let allowed = |a: &Option<IpSet>| a.as_ref().is_none_or(|a| a.contains(ip));
        if !allowed(&p.allow) || !lp.is_none_or(|l| allowed(&l.allow)) {
            pr.refuse(Refusal::NotAllowed, listener, peer, "");
            return Admission::Refuse;
        }
        if p.exempt.contains(ip) {
            return Admission::Accept(None);
        }
        let now = pr.clock.now();
        if pr.banned(ip, now).is_some() {
            pr.refuse(Refusal::Banned, listener, peer, "");
            return Admission::Refuse;
        }
        let src = Protection::source_of(&p, ip);
        let attempt = ConnectionAttempt {
            handshake: lp.is_some_and(|l| l.tls),
        };
        let mut why = None;
        let decided = {
            let sources = pr.sources.load();
            let mut t = lock(&sources[pr.shard_of(&src)]);
            t.connection(&src, now, attempt, |s| {
                why = if s.conn_cur >= p.per_source {
                    Some(Refusal::ConnPerSource)
                } else if s.conn_rate > p.conn_rate {
                    Some(Refusal::ConnRate)
                } else if attempt.handshake && s.handshake_rate > p.handshake_rate {
                    Some(Refusal::HandshakeRate)
                } else {
                    None
                };
                why.is_none()
            })
        };
        match decided {
            Ok(true) => Admission::Accept(Some(Box::new(ConnToken {
                protection: pr.clone(),
                source: src,
            }))),
            Ok(false) => {
                let r = why.unwrap_or(Refusal::ConnPerSource);
                pr.refuse(r, listener, peer, "");
                pr.offend(&p, ip, Offence::ConnectionLimit, now);
                Admission::Refuse
            }
            Err(_) => {
                pr.refuse(Refusal::TableFull, listener, peer, "");
                Admission::Refuse
            }
        }
    }
}

fn retry_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl RequestFilter for Guard {
    fn check(&self, info: &RequestInfo<'_>) -> RequestVerdict {
        let pr = &self.0;
        let p = pr.policy.load();
        if !p.enabled {
            return RequestVerdict::Continue;
        }
        let ip = canonical(info.peer.ip());
        if p.exempt.contains(ip) {
            return RequestVerdict::Continue;
        }
        let now = pr.clock.now();
        if let Some(left) = pr.banned(ip, now) {
            pr.refuse(Refusal::Banned, info.listener, info.peer, "");
            return RequestVerdict::Respond {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after: Some(retry_secs(left)),
                delay: None,
            };
        }
        let src = Protection::source_of(&p, ip);
        {
            let sources = pr.sources.load();
            let _ = lock(&sources[pr.shard_of(&src)]).request(&src, now);
        }
        for table in &p.limits {
            let l = &table.limit;
            if !l.listeners.is_empty() && !l.listeners.iter().any(|n| n == info.listener) {
                continue;
            }
            if !l.routes.is_empty() && !info.route.is_some_and(|r| l.routes.iter().any(|n| n == r))
            {
                continue;
            }
            let key = pr.key_hash(l, &src, info);
            if let Decision::Deny { retry_after } = table.check(key, now) {
                table.refused.fetch_add(1, Ordering::Relaxed);
                pr.refuse(Refusal::RateLimited, info.listener, info.peer, &l.name);
                pr.offend(&p, ip, Offence::RateLimited, now);
                let delay = match (l.tarpit, &p.tarpit_gate) {
                    (Some(d), Some(q)) if q.check(&mut lock(&pr.tarpit), now).is_allowed() => {
                        pr.metrics.tarpitted.fetch_add(1, Ordering::Relaxed);
                        Some(d)
                    }
                    _ => None,
                };
                return RequestVerdict::Respond {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    retry_after: Some(retry_secs(retry_after)),
                    delay,
                };
            }
        }
        RequestVerdict::Continue
    }

    fn responded(
        &self,
        _listener: &str,
        _route: Option<&str>,
        peer: SocketAddr,
        status: StatusCode,
    ) {
        if !status.is_client_error() {
            return;
        }
        let pr = &self.0;
        let p = pr.policy.load();
        if !p.enabled {
            return;
        }
        let ip = canonical(peer.ip());
        if p.exempt.contains(ip) {
            return;
        }
        let now = pr.clock.now();
        let src = Protection::source_of(&p, ip);
        let over = {
            let sources = pr.sources.load();
            let r = lock(&sources[pr.shard_of(&src)]).error(&src, now);
            r.is_ok_and(|s| s.http_err_rate > p.http_err_rate)
        };
        if over {
            pr.offend(&p, ip, Offence::HttpErrors, now);
        }
    }
}

impl AbuseObserver for Guard {
    fn observed(&self, listener: &str, peer: SocketAddr, abuse: Abuse) {
        let pr = &self.0;
        let p = pr.policy.load();
        if !p.enabled {
            return;
        }
        let ip = canonical(peer.ip());
        let now = pr.clock.now();
        pr.log(
            || tracing::info!(listener, peer = %ip, offence = abuse.as_str(), "client misbehaved"),
        );
        pr.offend(&p, ip, Offence::Abuse(abuse), now);
    }
}

/// Renders the protection metrics in Prometheus text format.
pub fn render(pr: &Protection, out: &mut String) {
    use std::fmt::Write;
    let m = &pr.metrics;
    out.push_str("# HELP rampart_edge_protection_refused_total Clients refused by the protection layer, by reason.\n# TYPE rampart_edge_protection_refused_total counter\n");
    for r in Refusal::ALL {
        let _ = writeln!(
            out,
            "rampart_edge_protection_refused_total{{reason=\"{}\"}} {}",
            r.as_str(),
            m.refused(r)
        );
    }
    out.push_str("# HELP rampart_edge_protection_rate_limited_total Requests refused (429) by each request limit.\n# TYPE rampart_edge_protection_rate_limited_total counter\n");
    for l in pr.limits() {
        let _ = writeln!(
            out,
            "rampart_edge_protection_rate_limited_total{{limit=\"{}\"}} {}",
            l.limit.name,
            l.refused.load(Ordering::Relaxed)
        );
    }
    out.push_str("# HELP rampart_edge_protection_offences_total Offences counted towards bans, by kind.\n# TYPE rampart_edge_protection_offences_total counter\n");
    for o in Offence::all() {
        let _ = writeln!(
            out,
            "rampart_edge_protection_offences_total{{kind=\"{}\"}} {}",
            o.as_str(),
            m.offences(o)
        );
    }
    let bans = pr.with_bans(|b| b.len());
    let counters: [(&str, &str, &str, u64); 9] = [
        (
            "rampart_edge_protection_bans",
            "Bans in force.",
            "gauge",
            bans as u64,
        ),
        (
            "rampart_edge_protection_bans_issued_total",
            "Bans issued by the offence policy.",
            "counter",
            m.bans_issued.load(Ordering::Relaxed),
        ),
        (
            "rampart_edge_protection_bans_dropped_total",
            "Bans not issued: the ban list was full of bans ending later.",
            "counter",
            m.bans_dropped.load(Ordering::Relaxed),
        ),
        (
            "rampart_edge_protection_tarpitted_total",
            "Requests held in a tarpit before their 429.",
            "counter",
            m.tarpitted.load(Ordering::Relaxed),
        ),
        (
            "rampart_edge_protection_accept_paused_total",
            "Times an accept loop paused at the global connection cap.",
            "counter",
            m.accept_paused.load(Ordering::Relaxed),
        ),
        (
            "rampart_edge_protection_connections",
            "Client connections under the global cap.",
            "gauge",
            pr.slots.used() as u64,
        ),
        (
            "rampart_edge_protection_connections_max",
            "The global connection cap.",
            "gauge",
            pr.slots.max().min(u64::MAX as usize) as u64,
        ),
        (
            "rampart_edge_protection_tracked_sources",
            "Sources in the stick table.",
            "gauge",
            pr.tracked_sources() as u64,
        ),
        (
            "rampart_edge_protection_evicted_sources_total",
            "Sources evicted from the full stick table (least recently seen first).",
            "counter",
            pr.evicted_sources(),
        ),
    ];
    for (name, help, kind, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP rampart_edge_protection_log_suppressed_total Log lines about refusals left out by the log rate limit.\n# TYPE rampart_edge_protection_log_suppressed_total counter\nrampart_edge_protection_log_suppressed_total {}",
        m.log_suppressed.load(Ordering::Relaxed)
    );
}

/// Sweeps the protection state of a gateway once a second while it lives.
pub(crate) async fn sweeper(shared: std::sync::Weak<crate::Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.protection.sweep();
    }
}
