//! Probes: one real connection attempt from one endpoint to another, in the source's
//! namespace, bounded by a timeout. A dropped packet shows as a timeout (a dropped TCP
//! SYN makes `connect()` wait, never fail fast).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rampart_model::{Probe, Protocol};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::netns::NsHandle;
use crate::serve::{raw_sctp, recv_sctp};
use crate::{LabError, sctp};

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The connection was made (TCP), the echo came back (UDP), the INIT was answered
    /// (SCTP).
    Connected,
    /// Nothing came back in time: the traffic was dropped (or the sender's own output
    /// rules refused to send it, which a host-network source sees at once).
    Timeout,
    /// The destination refused (TCP reset or ICMP unreachable): it was reached, but
    /// nothing listens. The lab always listens, so this is an anomaly.
    Refused,
    /// The probe could not run.
    Error(String),
}

/// Tags and ports from a small deterministic generator (xorshift), seeded per run.
#[derive(Debug)]
pub(crate) struct Tags(u64);

impl Tags {
    pub(crate) fn new(seed: u64) -> Self {
        Tags(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        // Never zero: a zero initiate tag is invalid.
        ((x >> 16) as u32) | 1
    }
}

fn tcp(src: IpAddr, dst: SocketAddr, timeout: Duration) -> Outcome {
    let domain = if src.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = match Socket::new(domain, Type::STREAM, Some(socket2::Protocol::TCP)) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("socket: {e}")),
    };
    if let Err(e) = socket.bind(&SockAddr::from(SocketAddr::new(src, 0))) {
        return Outcome::Error(format!("bind {src}: {e}"));
    }
    match socket.connect_timeout(&SockAddr::from(dst), timeout) {
        Ok(()) => Outcome::Connected,
        Err(e) => match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Outcome::Timeout,
            std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
            _ if e.raw_os_error() == Some(nix::libc::EHOSTUNREACH) => Outcome::Timeout,
            _ => Outcome::Error(format!("connect {dst}: {e}")),
        },
    }
}

fn udp(src: IpAddr, dst: SocketAddr, timeout: Duration, nonce: u32) -> Outcome {
    let socket = match UdpSocket::bind((src, 0)) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("bind {src}: {e}")),
    };
    let payload = format!("rampart-lab probe {nonce}");
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 256];
    // Up to three sends within the timeout; any echo counts.
    for attempt in 0..3u32 {
        match socket.send_to(payload.as_bytes(), dst) {
            Ok(_) => {}
            // The sender's own output rules dropped it (host-network sources).
            Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => return Outcome::Timeout,
            Err(_) => return Outcome::Refused,
        }
        let until = (Instant::now() + timeout / 3).min(deadline);
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let _ = socket.set_read_timeout(Some(until - now));
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == dst && &buf[..n] == payload.as_bytes() => {
                    return Outcome::Connected;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Outcome::Refused;
                }
                Err(_) => {}
            }
        }
        if attempt == 2 || Instant::now() >= deadline {
            break;
        }
    }
    Outcome::Timeout
}

fn sctp_probe(src: IpAddr, dst: SocketAddr, timeout: Duration, tag: u32, sport: u16) -> Outcome {
    let socket = match raw_sctp(src) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("raw SCTP socket on {src}: {e}")),
    };
    let init = sctp::init(sport, dst.port(), tag);
    let to = SockAddr::from(SocketAddr::new(dst.ip(), 0));
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        match socket.send_to(&init, &to) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => return Outcome::Timeout,
            Err(e) => return Outcome::Error(format!("send INIT to {dst}: {e}")),
        }
        let until = (Instant::now() + timeout / 3).min(deadline);
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let _ = socket.set_read_timeout(Some(until - now));
            let Ok((from, _, start, end)) = recv_sctp(&socket, &mut buf) else {
                continue;
            };
            if from != dst.ip() {
                continue;
            }
            if let Some(p) = sctp::parse(&buf[start..end])
                && p.chunk == sctp::INIT_ACK
                && p.vtag == tag
                && p.src_port == dst.port()
                && p.dst_port == sport
            {
                return Outcome::Connected;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Outcome::Timeout
}

/// One probe to run.
#[derive(Debug, Clone)]
pub struct Task {
    /// Namespace of the source.
    pub netns: String,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Port and protocol.
    pub probe: Probe,
}

/// Runs every task, `parallel` at a time, each bounded by `timeout`.
pub fn run(tasks: &[Task], timeout: Duration, parallel: usize) -> Result<Vec<Outcome>, LabError> {
    let mut handles: HashMap<&str, NsHandle> = HashMap::new();
    for t in tasks {
        if !handles.contains_key(t.netns.as_str()) {
            handles.insert(&t.netns, NsHandle::open(&t.netns)?);
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; tasks.len()]);
    let workers = parallel.clamp(1, 512).min(tasks.len().max(1));
    let seed = u64::from(std::process::id()) << 32
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    std::thread::scope(|s| {
        for w in 0..workers {
            let (next, results, handles) = (&next, &results, &handles);
            s.spawn(move || {
                let mut tags = Tags::new(seed ^ ((w as u64 + 1) << 20));
                let mut current: Option<&str> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = tasks.get(i) else { break };
                    let outcome = (|| {
                        if current != Some(task.netns.as_str()) {
                            let Some(ns) = handles.get(task.netns.as_str()) else {
                                return Outcome::Error(format!("no namespace {}", task.netns));
                            };
                            if let Err(e) = ns.enter() {
                                return Outcome::Error(e.to_string());
                            }
                            current = Some(task.netns.as_str());
                        }
                        let dst = SocketAddr::new(task.dst, task.probe.port);
                        match task.probe.protocol {
                            Protocol::Tcp => tcp(task.src, dst, timeout),
                            Protocol::Udp => udp(task.src, dst, timeout, tags.next()),
                            Protocol::Sctp => {
                                let sport = 32768 + (tags.next() % 28000) as u16;
                                sctp_probe(task.src, dst, timeout, tags.next(), sport)
                            }
                        }
                    })();
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(outcome);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| LabError::Setup("a probe thread panicked".to_owned()))?;
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Outcome::Error("probe did not run".to_owned())))
        .collect())
}
