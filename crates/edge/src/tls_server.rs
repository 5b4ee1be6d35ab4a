//! The server side of TLS on a client connection: a rustls `ServerConnection` over an
//! async stream, sans-I/O core driven by hand.
//!
//! What it does differently from a generic adapter: when a TLS 1.3 handshake ends, the
//! session ticket rustls has just queued is not flushed on its own; it leaves with the
//! gateway's first bytes (the HTTP/1.1 response, the HTTP/2 SETTINGS), one segment
//! fewer per connection. Everything else the handshake queues (TLS 1.2's last flight,
//! alerts) is flushed at once. [`ClientTransport::take_last`] puts a last response and
//! the close_notify in one write.
//!
//! Read side: a close_notify ends the stream (`Ok` with no bytes); a transport EOF
//! without it is an `UnexpectedEof` error, as with any rustls stream.

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::{ProtocolVersion, ServerConfig, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::io::ClientTransport;

/// Most bytes handed to TLS as the last write: within rustls's send buffer limit
/// (64 KiB) when nothing else is pending, so that it takes all of them.
const LAST_WRITE_MAX: usize = 16 * 1024;

/// A TLS server stream over `IO`.
#[derive(Debug)]
pub struct TlsServer<IO> {
    io: IO,
    conn: ServerConnection,
    /// The transport reached its end.
    eof: bool,
}

/// A handshake that failed, with the stream: the caller closes it when it is done
/// with the failure (counted before the client sees the close).
pub type Failed<IO> = (io::Error, Option<TlsServer<IO>>);

/// Runs the server side of a handshake on `io`.
pub async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> Result<TlsServer<IO>, Failed<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = match ServerConnection::new(config) {
        Ok(c) => c,
        Err(e) => return Err((io::Error::other(e), None)),
    };
    let mut s = TlsServer {
        io,
        conn,
        eof: false,
    };
    match std::future::poll_fn(|cx| s.poll_handshake(cx)).await {
        Ok(()) => Ok(s),
        Err(e) => Err((e, Some(s))),
    }
}

impl<IO> TlsServer<IO> {
    /// The TLS session (ALPN, server name, handshake kind).
    pub fn conn(&self) -> &ServerConnection {
        &self.conn
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsServer<IO> {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.conn.is_handshaking() {
                // TLS 1.3 tickets wait for the first application bytes; anything
                // else the client waits for goes now.
                if self.conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
                    return self.poll_flush_tls(cx);
                }
                return Poll::Ready(Ok(()));
            }
            if self.conn.wants_write() {
                match self.poll_flush_tls(cx) {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
            }
            if self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client left during the TLS handshake",
                )));
            }
            match self.poll_read_tls(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
    }

    /// Reads TLS records from the transport and processes them; on a TLS error, the
    /// alert rustls queued is sent (best effort) and the error returned.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut reader = SyncIo {
            io: &mut self.io,
            cx,
        };
        match self.conn.read_tls(&mut reader) {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.poll_flush_tls(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(()))
    }

    /// Writes everything rustls has queued.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut writer = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut writer) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Puts plaintext into the session with `put`, then writes out what the transport
    /// takes: the bytes put, or `Pending` when neither the session's buffer nor the
    /// transport has room.
    fn poll_put(
        &mut self,
        cx: &mut Context<'_>,
        put: impl Fn(&mut ServerConnection) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = put(&mut self.conn)?;
            let flushed = match self.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => false,
            };
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            if !flushed {
                return Poll::Pending;
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsServer<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    // n == 0: the client's close_notify, the end of the stream.
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                // rustls has seen the end of the transport and reports it above; this
                // is only reached for a stream already ended.
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            match this.poll_read_tls(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsServer<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        self.get_mut()
            .poll_put(cx, |conn| conn.writer().write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_flush_tls(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Idempotent in rustls: a close_notify already queued is not sent twice.
        this.conn.send_close_notify();
        std::task::ready!(this.poll_flush_tls(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ClientTransport for TlsServer<IO> {
    fn take_last(&mut self, data: &[u8]) -> usize {
        // Pending bytes (a TLS 1.3 ticket) leave with `data`; keep within the limit.
        if data.len() > LAST_WRITE_MAX || self.conn.is_handshaking() {
            return 0;
        }
        // Encrypted into the session's send buffer; nothing is written yet.
        let taken = self.conn.writer().write(data).unwrap_or(0);
        if taken == data.len() {
            self.conn.send_close_notify();
        }
        taken
    }
}

/// A blocking-style view of an async stream for rustls: `Pending` becomes
/// `WouldBlock`.
struct SyncIo<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncRead + Unpin> Read for SyncIo<'_, '_, IO> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<IO: AsyncWrite + Unpin> Write for SyncIo<'_, '_, IO> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
