//! Rampart's own HTTP/1.1 engine for terminated client connections and for the
//! connections to servers.
//!
//! A client connection is served by one task that reads request heads into a
//! connection buffer, parses them in place ([`head`]), decides (filter, route,
//! redirect, limits), writes the request head for the server into a reusable buffer
//! ([`encode`]), and streams bodies between the client and a pooled server connection
//! by their framing (`Content-Length`, [`chunked`], until close). There are no
//! per-request header maps, request objects or body channels, and no task per request:
//! the server connection is driven by the client connection's task. Buffers are
//! allocated when bytes arrive and released when the connection waits idle, so an idle
//! keep-alive connection holds no buffer.
//!
//! What it does not do: pipelining beyond serving queued requests one after another,
//! `Upgrade` (WebSocket) tunnelling, trailers (dropped), `CONNECT`, and 1xx responses
//! other than the gateway's own `100 Continue`.

pub mod chunked;
pub mod encode;
pub mod head;
pub(crate) mod server;
