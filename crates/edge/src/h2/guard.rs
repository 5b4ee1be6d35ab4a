//! An HTTP/2 frame guard: watches the frames a client sends, before the HTTP/2 layer
//! sees them, and stops the floods that cost the server work without asking for
//! anything useful.
//!
//! The scanner is sans-I/O: it is fed the client's bytes as they arrive (after TLS) and
//! the time, and keeps only frame headers in view (9 bytes at a time; payloads are
//! skipped by length, except the 4 bytes of a WINDOW_UPDATE). It counts, per
//! connection, with token buckets (a rate per second and bursts of twice that):
//! - streams reset by the client (RST_STREAM): the rapid-reset attack
//!   (CVE-2023-44487) opens and cancels streams as fast as it can;
//! - control frames that ask for work and carry no request: PING and SETTINGS (other
//!   than acknowledgements), PRIORITY, empty DATA frames without END_STREAM, zero
//!   WINDOW_UPDATEs, and CONTINUATION frames;
//!
//! and bounds each header block (HEADERS and its CONTINUATIONs) in frames and bytes,
//! so that a CONTINUATION flood cannot make the server buffer or decode without end.

/// A token bucket in thousandths of a token, refilled by elapsed milliseconds.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: u64,
    capacity_milli: u64,
    milli: u64,
    last_ms: u64,
}

impl Bucket {
    /// `rate` tokens per second, bursts of `2 * rate`, full at `now_ms`.
    pub fn new(rate: u32, now_ms: u64) -> Self {
        let capacity_milli = u64::from(rate) * 2 * 1000;
        Self {
            rate: u64::from(rate),
            capacity_milli,
            milli: capacity_milli,
            last_ms: now_ms,
        }
    }

    /// Takes one token; false when none is left.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            self.milli = (self.milli + elapsed * self.rate).min(self.capacity_milli);
            self.last_ms = now_ms;
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// Limits of the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// RST_STREAM frames per second (bursts of twice as many).
    pub resets_per_second: u32,
    /// Control frames per second (bursts of twice as many).
    pub control_per_second: u32,
    /// Bytes of one header block (HEADERS plus CONTINUATIONs), compressed.
    pub max_header_block: usize,
    /// CONTINUATION frames in one header block.
    pub max_continuations: u32,
}

/// Why a client was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood(pub &'static str);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const ENHANCE_YOUR_CALM: u32 = 0xb;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Watches a client's frames.
#[derive(Debug, Clone)]
pub struct Scanner {
    limits: GuardLimits,
    preface_seen: usize,
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    /// Bytes of a WINDOW_UPDATE increment still expected, and the value so far.
    increment: Option<(usize, u32)>,
    /// Inside a header block: CONTINUATIONs and bytes so far.
    block: Option<(u32, usize)>,
    resets: Bucket,
    control: Bucket,
    /// The highest stream a client opened (HEADERS on an odd stream).
    last_stream: u32,
}

impl Scanner {
    /// A scanner for a new connection (the client preface comes first).
    pub fn new(limits: GuardLimits, now_ms: u64) -> Self {
        Self {
            limits,
            preface_seen: 0,
            head: [0; 9],
            head_len: 0,
            skip: 0,
            increment: None,
            block: None,
            resets: Bucket::new(limits.resets_per_second, now_ms),
            control: Bucket::new(limits.control_per_second, now_ms),
            last_stream: 0,
        }
    }

    /// The highest stream the client opened so far (for a GOAWAY).
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// Looks at bytes the client sent. An error means the connection must be cut.
    pub fn feed(&mut self, mut bytes: &[u8], now_ms: u64) -> Result<(), Flood> {
        while !bytes.is_empty() {
            if self.preface_seen < PREFACE.len() {
                let n = (PREFACE.len() - self.preface_seen).min(bytes.len());
                // The HTTP/2 layer checks the preface itself; this only skips it.
                self.preface_seen += n;
                bytes = &bytes[n..];
                continue;
            }
            if let Some((left, value)) = self.increment {
                let b = bytes[0];
                bytes = &bytes[1..];
                self.skip -= 1;
                let value = (value << 8) | u32::from(b);
                if left == 1 {
                    self.increment = None;
                    if value & 0x7fff_ffff == 0 && !self.control.take(now_ms) {
                        return Err(Flood("zero WINDOW_UPDATE flood"));
                    }
                } else {
                    self.increment = Some((left - 1, value));
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
            self.head_len += n;
            bytes = &bytes[n..];
            if self.head_len == 9 {
                self.head_len = 0;
                self.frame(now_ms)?;
            }
        }
        Ok(())
    }

    fn frame(&mut self, now_ms: u64) -> Result<(), Flood> {
        let h = self.head;
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        self.skip = len;
        if let Some((conts, bytes)) = self.block {
            if kind != CONTINUATION {
                // The HTTP/2 layer refuses this as a protocol error.
                self.block = None;
            } else {
                let conts = conts + 1;
                let bytes = bytes + len;
                if conts > self.limits.max_continuations {
                    return Err(Flood("CONTINUATION flood"));
                }
                if bytes > self.limits.max_header_block {
                    return Err(Flood("header block too large"));
                }
                if !self.control.take(now_ms) {
                    return Err(Flood("CONTINUATION flood"));
                }
                self.block = if flags & END_HEADERS != 0 {
                    None
                } else {
                    Some((conts, bytes))
                };
                return Ok(());
            }
        }
        // Frames that cost work and carry no request: which budget pays for them.
        let costly = match kind {
            DATA if len == 0 && flags & END_STREAM == 0 => Some((false, "empty DATA flood")),
            PRIORITY => Some((false, "PRIORITY flood")),
            RST_STREAM => Some((true, "rapid reset")),
            SETTINGS if flags & ACK == 0 => Some((false, "SETTINGS flood")),
            PING if flags & ACK == 0 => Some((false, "PING flood")),
            HEADERS => {
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if stream % 2 == 1 {
                    self.last_stream = self.last_stream.max(stream);
                }
                if len > self.limits.max_header_block {
                    return Err(Flood("header block too large"));
                }
                if flags & END_HEADERS == 0 {
                    self.block = Some((0, len));
                }
                None
            }
            WINDOW_UPDATE if len == 4 => {
                self.increment = Some((4, 0));
                None
            }
            // A CONTINUATION outside a header block is refused by the HTTP/2 layer.
            _ => None,
        };
        if let Some((reset, why)) = costly {
            let bucket = if reset {
                &mut self.resets
            } else {
                &mut self.control
            };
            if !bucket.take(now_ms) {
                return Err(Flood(why));
            }
        }
        Ok(())
    }
}

/// Where the server's own frames begin and end, so that a frame of the gateway's can be
/// put between two of them.
#[derive(Debug, Clone, Default)]
pub struct Boundaries {
    head: [u8; 3],
    head_len: usize,
    skip: usize,
}

impl Boundaries {
    /// Follows bytes written to the client.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.head_len).min(bytes.len());
            for (i, &b) in bytes[..n].iter().enumerate() {
                if self.head_len + i < 3 {
                    self.head[self.head_len + i] = b;
                }
            }
            self.head_len += n;
            bytes = &bytes[n..];
            if self.head_len == 9 {
                self.head_len = 0;
                self.skip = (usize::from(self.head[0]) << 16)
                    | (usize::from(self.head[1]) << 8)
                    | usize::from(self.head[2]);
            }
        }
    }

    /// True between two frames.
    pub fn at_boundary(&self) -> bool {
        self.head_len == 0 && self.skip == 0
    }

    /// Bytes to write before the next step towards a boundary (0 at a boundary).
    pub fn until_boundary(&self) -> usize {
        if self.skip > 0 {
            self.skip
        } else if self.head_len > 0 {
            9 - self.head_len
        } else {
            0
        }
    }
}

/// A GOAWAY frame with ENHANCE_YOUR_CALM, naming the last stream processed.
pub fn goaway_calm(last_stream: u32) -> [u8; 17] {
    let mut f = [0u8; 17];
    f[2] = 8;
    f[3] = GOAWAY;
    f[9..13].copy_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GuardLimits = GuardLimits {
        resets_per_second: 10,
        control_per_second: 10,
        max_header_block: 1000,
        max_continuations: 8,
    };

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn scanner() -> Scanner {
        let mut s = Scanner::new(LIMITS, 0);
        s.feed(PREFACE, 0).unwrap();
        s
    }

    #[test]
    fn ordinary_traffic_passes_in_any_pieces() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        for i in 0..200u32 {
            bytes.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                2 * i + 1,
                &[0x82; 20],
            ));
            bytes.extend(frame(SETTINGS, ACK, 0, &[]));
            bytes.extend(frame(DATA, END_STREAM, 2 * i + 1, b"body"));
        }
        for piece in [1usize, 7, 9, 100, bytes.len()] {
            let mut s = Scanner::new(LIMITS, 0);
            for chunk in bytes.chunks(piece) {
                s.feed(chunk, 0).unwrap();
            }
        }
    }

    #[test]
    fn rapid_reset_is_cut_and_slow_resets_pass() {
        let mut s = scanner();
        // 20 at once (the burst) pass, then one every 100 ms (the rate) too.
        for i in 0..20u32 {
            s.feed(&frame(RST_STREAM, 0, 2 * i + 1, &[0, 0, 0, 8]), 0)
                .unwrap();
        }
        for t in 1..50u64 {
            s.feed(&frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]), t * 100)
                .unwrap();
        }
        let mut s = scanner();
        let mut cut = None;
        for i in 0..1000u32 {
            let mut b = frame(HEADERS, END_HEADERS, 2 * i + 1, &[0x82]);
            b.extend(frame(RST_STREAM, 0, 2 * i + 1, &[0, 0, 0, 8]));
            if let Err(f) = s.feed(&b, u64::from(i)) {
                cut = Some((i, f));
                break;
            }
        }
        let (i, f) = cut.expect("rapid reset not cut");
        assert_eq!(f, Flood("rapid reset"));
        assert!(i < 40, "cut after {i} resets");
    }

    #[test]
    fn ping_settings_priority_floods_are_cut() {
        for (kind, flags, payload, what) in [
            (PING, 0u8, vec![0u8; 8], "PING flood"),
            (SETTINGS, 0, vec![], "SETTINGS flood"),
            (PRIORITY, 0, vec![0, 0, 0, 0, 16], "PRIORITY flood"),
            (DATA, 0, vec![], "empty DATA flood"),
            (
                WINDOW_UPDATE,
                0,
                vec![0, 0, 0, 0],
                "zero WINDOW_UPDATE flood",
            ),
        ] {
            let mut s = scanner();
            let r = (0..100).try_for_each(|_| s.feed(&frame(kind, flags, 1, &payload), 0));
            assert_eq!(r, Err(Flood(what)));
        }
        // Acknowledgements cost nothing.
        let mut s = scanner();
        for _ in 0..1000 {
            s.feed(&frame(PING, ACK, 0, &[0; 8]), 0).unwrap();
            s.feed(&frame(SETTINGS, ACK, 0, &[]), 0).unwrap();
        }
    }

    #[test]
    fn continuation_floods_are_cut() {
        let mut s = scanner();
        s.feed(&frame(HEADERS, 0, 1, &[0x82; 10]), 0).unwrap();
        let r = (0..20).try_for_each(|_| s.feed(&frame(CONTINUATION, 0, 1, &[0; 10]), 0));
        assert_eq!(r, Err(Flood("CONTINUATION flood")));
        let mut s = scanner();
        s.feed(&frame(HEADERS, 0, 1, &[0x82; 10]), 0).unwrap();
        let r = (0..5).try_for_each(|_| s.feed(&frame(CONTINUATION, 0, 1, &[0; 300]), 0));
        assert_eq!(r, Err(Flood("header block too large")));
        // A block that ends in time is fine.
        let mut s = scanner();
        s.feed(&frame(HEADERS, 0, 1, &[0x82; 10]), 0).unwrap();
        s.feed(&frame(CONTINUATION, 0, 1, &[0; 10]), 0).unwrap();
        s.feed(&frame(CONTINUATION, END_HEADERS, 1, &[0; 10]), 0)
            .unwrap();
        s.feed(&frame(HEADERS, END_HEADERS, 3, &[0x82; 10]), 0)
            .unwrap();
    }

    #[test]
    fn headers_name_the_last_stream_for_the_goaway() {
        let mut s = scanner();
        s.feed(&frame(HEADERS, END_HEADERS, 1, &[0x82]), 0).unwrap();
        s.feed(&frame(HEADERS, END_HEADERS, 7, &[0x82]), 0).unwrap();
        // Even streams are the server's (and invalid from a client): not counted.
        s.feed(&frame(HEADERS, END_HEADERS, 8, &[0x82]), 0).unwrap();
        assert_eq!(s.last_stream(), 7);
        let g = goaway_calm(s.last_stream());
        assert_eq!(&g[..9], &[0, 0, 8, GOAWAY, 0, 0, 0, 0, 0]);
        assert_eq!(&g[9..13], &7u32.to_be_bytes());
        assert_eq!(&g[13..], &ENHANCE_YOUR_CALM.to_be_bytes());
    }

    #[test]
    fn boundaries_follow_frames_in_any_pieces() {
        let mut bytes = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        bytes.extend(frame(DATA, 0, 1, &[7; 300]));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, &[]));
        bytes.extend(frame(DATA, END_STREAM, 1, &[7; 5]));
        let ends = [15, 15 + 309, 15 + 309 + 9, bytes.len()];
        for piece in [1usize, 4, 9, 10, 100] {
            let mut b = Boundaries::default();
            let mut pos = 0;
            for chunk in bytes.chunks(piece) {
                for &byte in chunk {
                    b.advance(&[byte]);
                    pos += 1;
                    assert_eq!(b.at_boundary(), ends.contains(&pos), "at {pos}");
                }
            }
        }
        // until_boundary says how far the current step goes.
        let mut b = Boundaries::default();
        assert_eq!(b.until_boundary(), 0);
        b.advance(&bytes[..4]);
        assert_eq!(b.until_boundary(), 5);
        b.advance(&bytes[4..9]);
        assert_eq!(b.until_boundary(), 6);
        b.advance(&bytes[9..15]);
        assert!(b.at_boundary());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000), piece in 1usize..64) {
            let mut s = Scanner::new(LIMITS, 0);
            for (i, chunk) in bytes.chunks(piece).enumerate() {
                if s.feed(chunk, i as u64).is_err() {
                    break;
                }
            }
        }
    }
}
