//! Accepting connections without spinning: when the process or the system is out of file
//! descriptors (EMFILE, ENFILE) or buffers, accept fails at once and would fail again at once;
//! the loops here sleep a little instead and log once per interval with a count. Shared by
//! every listening port (Raft, gRPC, MySQL, HTTP, the agent's ports).

use crate::ratelog::{LOG_INTERVAL, RateLimit};
use futures::Stream;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long to wait before accepting again after running out of descriptors.
pub const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);

// Linux errno values (std names none of them).
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ENOBUFS: i32 = 105;

/// Out of descriptors or memory: retrying at once fails again at once.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

/// One listening port's error handling.
pub struct AcceptBackoff {
    what: &'static str,
    backoff: Duration,
    limit: RateLimit<bool>,
    lines: AtomicU64,
}

impl AcceptBackoff {
    /// `what` names the port in the log ("mysql", "http", ...).
    pub fn new(what: &'static str) -> Self {
        Self::with(what, EXHAUSTED_BACKOFF, LOG_INTERVAL)
    }

    /// With another backoff and log interval (tests).
    pub fn with(what: &'static str, backoff: Duration, log_interval: Duration) -> Self {
        AcceptBackoff {
            what,
            backoff,
            limit: RateLimit::new(log_interval),
            lines: AtomicU64::new(0),
        }
    }

    /// Lines logged so far (for tests).
    pub fn lines_logged(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// After a failed accept: back off if out of descriptors; log at most once per interval.
    pub async fn on_error(&self, e: &io::Error) {
        let exhausted = is_exhaustion(e);
        if let Some(suppressed) = self.limit.check(exhausted) {
            self.lines.fetch_add(1, Ordering::Relaxed);
            let port = self.what;
            if exhausted {
                let backoff = self.backoff;
                tracing::warn!(
                    port,
                    suppressed,
                    "accept failed: {e}; backing off {backoff:?} per attempt ({suppressed} more failures since the last line not logged)"
                );
            } else {
                tracing::debug!(port, suppressed, "accept failed: {e}");
            }
        }
        if exhausted {
            tokio::time::sleep(self.backoff).await;
        }
    }

    /// Run `accept` until it succeeds, handling each failure with `on_error`.
    pub async fn retry<T, F, Fut>(&self, mut accept: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = io::Result<T>>,
    {
        loop {
            match accept().await {
                Ok(x) => return x,
                Err(e) => self.on_error(&e).await,
            }
        }
    }
}

/// The next connection on `listener`, backing off on exhaustion. Every port of Roster accepts
/// through here, so every accepted socket has TCP_NODELAY: its messages are small
/// request/response frames that Nagle's algorithm would hold back for the peer's delayed ACK
/// (tens of ms a round trip). The dialling sides set it too (tonic endpoints by default).
pub async fn accept(listener: &TcpListener, backoff: &AcceptBackoff) -> (TcpStream, SocketAddr) {
    let (stream, peer) = backoff.retry(|| listener.accept()).await;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "TCP_NODELAY not set on an accepted connection: {e}");
    }
    (stream, peer)
}

/// Connections on `listener` as a stream, for tonic's `serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    what: &'static str,
) -> impl Stream<Item = io::Result<TcpStream>> + Send + 'static {
    futures::stream::unfold(
        (listener, AcceptBackoff::new(what)),
        |(listener, backoff)| async move {
            let (stream, _) = accept(&listener, &backoff).await;
            Some((Ok(stream), (listener, backoff)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(EMFILE)
    }

    #[tokio::test]
    async fn accepted_sockets_do_not_wait_for_acks_to_send() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dial = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (stream, _) = accept(&listener, &AcceptBackoff::new("test")).await;
        assert!(
            stream.nodelay().unwrap(),
            "TCP_NODELAY on the accepted socket"
        );
        drop(dial.await.unwrap());
    }

    /// 200 ms of EMFILE with a 1 ms backoff and a 50 ms log interval: at most 200 attempts
    /// (a spinning loop makes millions) and at most one line per 50 ms, not one per attempt.
    #[tokio::test]
    async fn exhaustion_backs_off_and_logs_once_per_interval() {
        let b = AcceptBackoff::with("test", Duration::from_millis(1), Duration::from_millis(50));
        let start = Instant::now();
        let mut attempts = 0u32;
        let got = b
            .retry(|| {
                attempts += 1;
                let r = if start.elapsed() < Duration::from_millis(200) {
                    Err(emfile())
                } else {
                    Ok(7)
                };
                async move { r }
            })
            .await;
        assert_eq!(got, 7);
        assert!(attempts <= 201, "{attempts} attempts: no backoff");
        let lines = b.lines_logged();
        assert!(
            (1..=5).contains(&lines),
            "{lines} lines for {attempts} failures"
        );
    }

    #[tokio::test]
    async fn other_errors_retry_at_once_and_quietly() {
        let b = AcceptBackoff::with("test", Duration::from_secs(3600), Duration::from_secs(3600));
        let mut n = 0;
        let got = b
            .retry(|| {
                n += 1;
                let r = if n < 50 {
                    Err(io::Error::from(io::ErrorKind::ConnectionAborted))
                } else {
                    Ok(n)
                };
                async move { r }
            })
            .await;
        assert_eq!(got, 50, "no hour-long sleep for a non-exhaustion error");
        assert!(is_exhaustion(&emfile()));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(ENFILE)));
        assert!(!is_exhaustion(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
    }
}
