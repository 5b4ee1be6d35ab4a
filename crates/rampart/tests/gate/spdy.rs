//! The server side of SPDY/3.1 framing, as much of it as the stand-in API server needs
//! to answer kubectl's SPDY clients (remote command v4 for exec and attach, and
//! port-forward): frames, the zlib-compressed name/value header blocks with the
//! protocol's preset dictionary, SYN_STREAM / SYN_REPLY, DATA with FIN, PING echoes.
//! No flow control (kubectl's SPDY library has none either), no server push.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame payload read (the protocol allows 16 MiB).
const MAX_FRAME: usize = 1 << 20;
/// How long the client may stay silent.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 1;

/// The header-compression dictionary of SPDY/3 (draft 3, section 2.6.10.1): header
/// names, each after its length as a 32-bit big-endian number, then common values.
fn dictionary() -> Vec<u8> {
    const WORDS: [&str; 65] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
        "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::new();
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A frame from the client.
#[derive(Debug)]
pub(crate) enum Frame {
    SynStream {
        id: u32,
        headers: HashMap<String, String>,
    },
    Data {
        id: u32,
        data: Vec<u8>,
        fin: bool,
    },
    Ping(u32),
    Reset,
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do for them here.
    Other,
}

/// One SPDY connection, server side.
pub(crate) struct Conn<IO> {
    io: IO,
    inflate: Decompress,
    deflate: Compress,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    pub(crate) fn new(io: IO) -> io::Result<Self> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dictionary())
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            io,
            inflate: Decompress::new(true),
            deflate,
        })
    }

    /// The next frame; `None` at the end of the connection. Bounded in time.
    pub(crate) async fn read(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match tokio::time::timeout(READ_TIMEOUT, self.io.read_exact(&mut head)).await {
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Ok(r) => r?,
        };
        let flags = head[4];
        let len = be32(&[0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!("frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        tokio::time::timeout(READ_TIMEOUT, self.io.read_exact(&mut payload))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                id: be32(&head) & 0x7fff_ffff,
                data: payload,
                fin,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(invalid(format!("SPDY version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |n: usize| {
            if payload.len() < n {
                Err(invalid(format!("control frame {kind} too short")))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            SYN_STREAM => {
                need(10)?;
                let headers = self.header_block(&payload[10..])?;
                Frame::SynStream {
                    id: be32(&payload) & 0x7fff_ffff,
                    headers,
                }
            }
            RST_STREAM => Frame::Reset,
            PING => {
                need(4)?;
                Frame::Ping(be32(&payload))
            }
            GOAWAY => Frame::GoAway,
            _ => Frame::Other,
        }))
    }

    /// Decompresses one name/value header block (the zlib stream runs on across the
    /// connection's blocks) and parses it.
    fn header_block(&mut self, block: &[u8]) -> io::Result<HashMap<String, String>> {
        let mut out: Vec<u8> = Vec::with_capacity(4096);
        let mut input = block;
        for _ in 0..64 {
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before) as usize..];
            if let Err(e) = result {
                let Some(id) = e.needs_dictionary() else {
                    return Err(invalid(format!("header block: {e}")));
                };
                let dict = dictionary();
                if adler32(&dict) != id {
                    return Err(invalid("header block compressed with another dictionary"));
                }
                self.inflate
                    .set_dictionary(&dict)
                    .map_err(|e| invalid(e.to_string()))?;
                continue;
            }
            if input.is_empty() && out.capacity() > out.len() {
                return parse_header_block(&out);
            }
        }
        Err(invalid("header block does not end"))
    }

    fn compress(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = block;
        for _ in 0..64 {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| invalid(e.to_string()))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.capacity() > out.len() {
                return Ok(out);
            }
        }
        Err(invalid("cannot compress a header block"))
    }

    async fn control(&mut self, kind: u16, payload: &[u8]) -> io::Result<()> {
        let mut f = vec![0x80, 3];
        f.extend_from_slice(&kind.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        self.io.write_all(&f).await?;
        self.io.flush().await
    }

    /// Accepts a stream the client opened (SYN_REPLY with no headers).
    pub(crate) async fn reply(&mut self, id: u32) -> io::Result<()> {
        let block = self.compress(&0u32.to_be_bytes())?;
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&block);
        self.control(SYN_REPLY, &payload).await
    }

    /// Sends data on a stream; `fin` ends the server's side of it.
    pub(crate) async fn data(&mut self, id: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut f = id.to_be_bytes().to_vec();
        f.push(if fin { FLAG_FIN } else { 0 });
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(data);
        self.io.write_all(&f).await?;
        self.io.flush().await
    }

    /// Answers a PING.
    pub(crate) async fn pong(&mut self, id: u32) -> io::Result<()> {
        self.control(PING, &id.to_be_bytes()).await
    }
}

fn parse_header_block(b: &[u8]) -> io::Result<HashMap<String, String>> {
    let short = || invalid("header block too short");
    let mut at = 0usize;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        let s = b.get(at..at + n).ok_or_else(short)?;
        at += n;
        Ok(s)
    };
    let count = be32(take(4)?);
    let mut out = HashMap::new();
    for _ in 0..count.min(256) {
        let n = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(n)?).into_owned();
        let n = be32(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        out.insert(name, value);
    }
    Ok(out)
}

/// Serves a remote command (exec or attach) with the v4 stream protocol: accepts the
/// client's streams until those in `expected` are there (`error`, `stdout`, ... as the
/// request's query asks), writes `stdout` on the stdout stream, ends the output streams,
/// reports success on the error stream, and waits for the client to hang up. Returns
/// the stream types the client opened, in order.
pub(crate) async fn serve_remote_command<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    expected: &[&str],
    stdout: &[u8],
) -> io::Result<Vec<String>> {
    let mut conn = Conn::new(io)?;
    let mut streams: Vec<(String, u32)> = Vec::new();
    while !expected.iter().all(|e| streams.iter().any(|(t, _)| t == e)) {
        match conn.read().await? {
            Some(Frame::SynStream { id, headers, .. }) => {
                conn.reply(id).await?;
                let kind = headers.get("streamtype").cloned().unwrap_or_default();
                streams.push((kind, id));
            }
            Some(Frame::Ping(p)) => conn.pong(p).await?,
            Some(Frame::GoAway | Frame::Reset) | None => {
                return Err(invalid(format!("the client left early: {streams:?}")));
            }
            Some(_) => {}
        }
    }
    let id = |kind: &str| streams.iter().find(|(t, _)| t == kind).map(|(_, id)| *id);
    if let Some(out) = id("stdout") {
        conn.data(out, stdout, false).await?;
        conn.data(out, &[], true).await?;
    }
    if let Some(err) = id("stderr") {
        conn.data(err, &[], true).await?;
    }
    if let Some(error) = id("error") {
        conn.data(error, br#"{"metadata":{},"status":"Success"}"#, true)
            .await?;
    }
    loop {
        match conn.read().await {
            Ok(Some(Frame::Ping(p))) => conn.pong(p).await?,
            Ok(Some(Frame::GoAway) | None) | Err(_) => break,
            Ok(Some(_)) => {}
        }
    }
    Ok(streams.into_iter().map(|(t, _)| t).collect())
}

/// Serves port-forward (`portforward.k8s.io`): accepts every stream; bytes on a `data`
/// stream are echoed back on it (the stand-in pod's port is an echo service); when the
/// client ends a data stream, the server ends it and its request's error stream.
/// Returns the ports asked for once the client has gone (a close, or a write that fails
/// because it went away, which is how a killed kubectl ends a session).
pub(crate) async fn serve_port_forward<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
) -> io::Result<Vec<String>> {
    let mut conn = Conn::new(io)?;
    // request id -> (error stream, data stream)
    let mut requests: HashMap<String, (Option<u32>, Option<u32>)> = HashMap::new();
    let mut data_streams: HashMap<u32, String> = HashMap::new();
    let mut ports = Vec::new();
    loop {
        let frame = match conn.read().await {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        match frame {
            Frame::SynStream { id, headers, .. } => {
                if conn.reply(id).await.is_err() {
                    break; // the client went away
                }
                let request = headers.get("requestid").cloned().unwrap_or_default();
                let entry = requests.entry(request.clone()).or_default();
                match headers.get("streamtype").map(String::as_str) {
                    Some("error") => entry.0 = Some(id),
                    Some("data") => {
                        entry.1 = Some(id);
                        data_streams.insert(id, request);
                        ports.push(headers.get("port").cloned().unwrap_or_default());
                    }
                    _ => {}
                }
            }
            Frame::Data { id, data, fin } => {
                let Some(request) = data_streams.get(&id).cloned() else {
                    continue;
                };
                if !data.is_empty() && conn.data(id, &data, false).await.is_err() {
                    break;
                }
                if fin {
                    if conn.data(id, &[], true).await.is_err() {
                        break;
                    }
                    if let Some((Some(error), _)) = requests.get(&request)
                        && conn.data(*error, &[], true).await.is_err()
                    {
                        break;
                    }
                }
            }
            Frame::Ping(p) => {
                if conn.pong(p).await.is_err() {
                    break;
                }
            }
            Frame::GoAway => break,
            Frame::Reset | Frame::Other => {}
        }
    }
    Ok(ports)
}

#[test]
fn header_blocks_round_trip_through_the_dictionary_compression() {
    // The server's compressor and a second connection's decompressor agree, block after
    // block of one zlib stream.
    let (a, _b) = tokio::io::duplex(64);
    let mut c = Conn::new(a).unwrap();
    let mut d = Decompress::new(true);
    let block = |pairs: &[(&str, &str)]| {
        let mut b = (pairs.len() as u32).to_be_bytes().to_vec();
        for (k, v) in pairs {
            b.extend_from_slice(&(k.len() as u32).to_be_bytes());
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        b
    };
    for pairs in [
        vec![("streamtype", "error")],
        vec![("streamtype", "data"), ("port", "80"), ("requestid", "0")],
    ] {
        let compressed = c.compress(&block(&pairs)).unwrap();
        let mut out = Vec::with_capacity(4096);
        let mut input = &compressed[..];
        loop {
            let before = d.total_in();
            let r = d.decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(d.total_in() - before) as usize..];
            match r {
                Err(e) => {
                    assert_eq!(e.needs_dictionary(), Some(adler32(&dictionary())));
                    d.set_dictionary(&dictionary()).unwrap();
                }
                Ok(_) if input.is_empty() => break,
                Ok(_) => {}
            }
        }
        let parsed = parse_header_block(&out).unwrap();
        for (k, v) in pairs {
            assert_eq!(parsed[k], v);
        }
    }
}
