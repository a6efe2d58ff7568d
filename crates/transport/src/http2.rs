//! The HTTP/2 settings of every gRPC connection, chosen once (issue 15):
//!
//! - **Windows.** h2's defaults are 64 KiB per stream and per connection, so a large message
//!   (a 64 MiB AppendEntries catch-up, 1 MiB snapshot chunks) stalls on WINDOW_UPDATE round
//!   trips. Each stream may have 1 MiB in flight and each connection 8 MiB: a snapshot chunk
//!   fits a window, and memory per connection stays bounded. Small messages (the common case)
//!   are not affected either way.
//! - **Keep-alive.** Between FEs a ping every 2 s, with 2 s to answer, notices a peer that is
//!   gone without a FIN (a pulled cable, a partition) within about 4 s, even when no Raft
//!   message is due; Raft's own timeouts act sooner. Toward clients the server pings every
//!   30 s (20 s to answer), so connections of vanished clients are closed without taxing idle
//!   ones.
//! - **TCP_NODELAY** on every socket (`accept` sets it on accepted ones, `endpoint` on dialled
//!   ones): messages are small and answered at once, so Nagle's algorithm only adds latency.

use std::time::Duration;

/// Bytes one HTTP/2 stream may have in flight.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// Bytes one HTTP/2 connection may have in flight, over all its streams.
pub const CONNECTION_WINDOW: u32 = 8 << 20;
/// Keep-alive pings between FEs: interval, and how long an answer may take.
pub const PEER_KEEPALIVE: Duration = Duration::from_secs(2);
/// Keep-alive pings from a server to its clients: interval, and how long an answer may take.
pub const CLIENT_KEEPALIVE: Duration = Duration::from_secs(30);
pub const CLIENT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A server with these settings: keep-alive toward its callers (`peer`: FEs, else clients).
pub fn server(peer: bool) -> tonic::transport::Server {
    let (every, answer) = if peer {
        (PEER_KEEPALIVE, PEER_KEEPALIVE)
    } else {
        (CLIENT_KEEPALIVE, CLIENT_KEEPALIVE_TIMEOUT)
    };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keepalive_interval(Some(every))
        .http2_keepalive_timeout(Some(answer))
}

/// An endpoint with these settings (windows and Nagle off); callers add their timeouts.
pub fn endpoint(e: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
    e.tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
}
