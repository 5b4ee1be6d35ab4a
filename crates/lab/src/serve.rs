//! Listeners on the probed ports of every endpoint: TCP (accepts, writes a line naming
//! the endpoint, closes), UDP (echoes each datagram), SCTP (answers INIT with INIT ACK
//! on a raw socket). One thread polls them all and stops when asked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rampart_model::{Probe, Protocol};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::netns::{NsHandle, run_in};
use crate::topology::Topology;
use crate::{LabError, sctp};

enum Sock {
    Tcp(TcpListener, Vec<u8>),
    Udp(UdpSocket),
    Sctp {
        socket: Socket,
        ip: IpAddr,
        ports: BTreeSet<u16>,
    },
}

impl Sock {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Sock::Tcp(l, _) => l.as_fd(),
            Sock::Udp(u) => u.as_fd(),
            Sock::Sctp { socket, .. } => socket.as_fd(),
        }
    }
}

/// The ports to listen on at one address, and the endpoint's name.
type PortsOf = (BTreeSet<u16>, String);

/// Running listeners; dropping this stops them and closes every socket.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Number of sockets served.
    pub sockets: usize,
}

/// A TCP listener with a deep accept queue: probes complete their handshake in the
/// kernel, and must not be refused while the listener thread waits for a CPU.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(4096)?;
    Ok(s.into())
}

/// A raw SCTP socket bound to `ip`.
pub(crate) fn raw_sctp(ip: IpAddr) -> std::io::Result<Socket> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(
        domain,
        Type::RAW,
        Some(socket2::Protocol::from(i32::from(sctp::PROTO))),
    )?;
    s.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    Ok(s)
}

/// Receives one raw SCTP packet: (source address, destination address if known, the SCTP
/// packet without any IP header).
pub(crate) fn recv_sctp(
    socket: &Socket,
    buf: &mut [u8],
) -> std::io::Result<(IpAddr, Option<IpAddr>, usize, usize)> {
    let (n, from) =
        nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrStorage>(socket.as_raw_fd(), buf)
            .map_err(std::io::Error::from)?;
    let from_ip = from.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| IpAddr::V4(v4.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
    });
    let Some(from_ip) = from_ip else {
        return Err(std::io::Error::other("raw packet without a source address"));
    };
    if from_ip.is_ipv4() {
        // Raw IPv4 sockets hand over the IP header too.
        let ihl = usize::from(buf.first().copied().unwrap_or(0) & 0x0f) * 4;
        let dst = (n >= 20)
            .then(|| IpAddr::V4(std::net::Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19])));
        return Ok((from_ip, dst, ihl.min(n), n));
    }
    Ok((from_ip, None, 0, n))
}

impl Server {
    /// Opens listeners for `probes` on every endpoint of `topo`, in their namespaces.
    pub fn start(topo: &Topology, probes: &[Probe]) -> Result<Server, LabError> {
        // Sockets per namespace: (ip, protocol, port) once, even when host-network
        // endpoints share an address.
        let mut wanted: BTreeMap<&str, BTreeMap<(IpAddr, Protocol), PortsOf>> = BTreeMap::new();
        for e in &topo.endpoints {
            for ip in &e.ips {
                for p in probes {
                    let entry = wanted
                        .entry(e.netns.as_str())
                        .or_default()
                        .entry((*ip, p.protocol))
                        .or_insert_with(|| (BTreeSet::new(), e.name.clone()));
                    entry.0.insert(p.port);
                }
            }
        }
        let mut socks = Vec::new();
        for (netns, entries) in wanted {
            let ns = NsHandle::open(netns)?;
            let made = run_in(&ns, || -> Result<Vec<Sock>, LabError> {
                let mut out = Vec::new();
                for ((ip, protocol), (ports, name)) in &entries {
                    let err = |what: &str, e: std::io::Error| {
                        LabError::Setup(format!("{name}: {what} on {ip}: {e}"))
                    };
                    match protocol {
                        Protocol::Tcp => {
                            for port in ports {
                                let l = tcp_listener(SocketAddr::new(*ip, *port))
                                    .map_err(|e| err("TCP listener", e))?;
                                l.set_nonblocking(true)
                                    .map_err(|e| err("TCP listener", e))?;
                                out.push(Sock::Tcp(l, format!("{name} {port}/TCP\n").into_bytes()));
                            }
                        }
                        Protocol::Udp => {
                            for port in ports {
                                let u = UdpSocket::bind((*ip, *port))
                                    .map_err(|e| err("UDP socket", e))?;
                                u.set_nonblocking(true).map_err(|e| err("UDP socket", e))?;
                                out.push(Sock::Udp(u));
                            }
                        }
                        Protocol::Sctp => {
                            let s = raw_sctp(*ip).map_err(|e| err("raw SCTP socket", e))?;
                            s.set_nonblocking(true)
                                .map_err(|e| err("raw SCTP socket", e))?;
                            out.push(Sock::Sctp {
                                socket: s,
                                ip: *ip,
                                ports: ports.clone(),
                            });
                        }
                    }
                }
                Ok(out)
            })??;
            socks.extend(made);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let sockets = socks.len();
        let thread = std::thread::Builder::new()
            .name("lab-listeners".to_owned())
            .spawn(move || serve(&socks, &flag))
            .map_err(|e| LabError::Setup(format!("listener thread: {e}")))?;
        Ok(Server {
            stop,
            thread: Some(thread),
            sockets,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socks: &[Sock], stop: &AtomicBool) {
    let mut tags = crate::probe::Tags::new(0x5eed);
    let mut buf = vec![0u8; 65536];
    let mut acks: HashMap<(IpAddr, u16, u16, u32), u32> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut fds: Vec<PollFd<'_>> = socks
            .iter()
            .map(|s| PollFd::new(s.fd(), PollFlags::POLLIN))
            .collect();
        if poll(&mut fds, PollTimeout::from(50u16)).is_err() {
            continue;
        }
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, f)| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        for i in ready {
            match &socks[i] {
                Sock::Tcp(l, banner) => {
                    while let Ok((mut stream, _)) = l.accept() {
                        let _ = stream.set_nonblocking(true);
                        let _ = stream.write_all(banner);
                    }
                }
                Sock::Udp(u) => {
                    while let Ok((n, from)) = u.recv_from(&mut buf) {
                        let _ = u.send_to(&buf[..n], from);
                    }
                }
                Sock::Sctp { socket, ip, ports } => {
                    while let Ok((from, dst, start, end)) = recv_sctp(socket, &mut buf) {
                        if dst.is_some_and(|d| d != *ip) {
                            continue;
                        }
                        let Some(init) = sctp::parse(&buf[start..end]) else {
                            continue;
                        };
                        if init.chunk != sctp::INIT
                            || init.vtag != 0
                            || !ports.contains(&init.dst_port)
                        {
                            continue;
                        }
                        // A retransmitted INIT gets the same answer.
                        let key = (from, init.src_port, init.dst_port, init.init_tag);
                        let tag = *acks.entry(key).or_insert_with(|| tags.next());
                        let ack = sctp::init_ack(&init, tag);
                        let _ = socket.send_to(&ack, &SockAddr::from(SocketAddr::new(from, 0)));
                    }
                    if acks.len() > 100_000 {
                        acks.clear();
                    }
                }
            }
        }
    }
}
