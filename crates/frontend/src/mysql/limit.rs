//! `max_allowed_packet` on the MySQL port, below opensrv-mysql (whose packet reader buffers a
//! whole packet, re-parsing it on every read): this reader follows the packet framing and
//! never hands a packet over the limit upward. Its payload is read and dropped as it arrives
//! (memory stays at one small buffer), and in its place opensrv gets an empty COM_QUERY with
//! the same sequence number, which `on_query` answers with error 1153 once it sees `oversized`.
//! Before login an oversized packet ends the connection instead.
//!
//! Inside TLS the framing is encrypted, so there the reader counts the bytes a client sends
//! without an answer in between (the protocol is request/answer) and closes the connection once
//! they exceed the limit with room for TLS records.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// A header length of all ones: the packet continues in the next one.
const CONTINUED: usize = 0xFF_FFFF;
const COM_QUERY: u8 = 0x03;

/// What the reader, the shim and the writer share about one connection.
#[derive(Debug, Default)]
pub struct LimitShared {
    /// Logged in: an oversized packet is answered from now on instead of ending the connection.
    pub logged_in: AtomicBool,
    /// The connection switched to TLS: count bytes instead of reading packets.
    pub tls: AtomicBool,
    /// Bytes received since the server last wrote (TLS only).
    pub unanswered: AtomicUsize,
    /// Size of the packet just dropped, for `on_query` to report.
    pub oversized: Mutex<Option<usize>>,
}

impl LimitShared {
    /// The server wrote something: the client's next request starts.
    pub fn answered(&self) {
        self.unanswered.store(0, Ordering::Relaxed);
    }

    pub fn take_oversized(&self) -> Option<usize> {
        self.oversized.lock().expect("oversized lock").take()
    }
}

#[derive(Debug)]
enum State {
    /// Reading a packet header (4 bytes) into `header`.
    Header,
    /// Passing `left` bytes of an accepted packet's payload through.
    Body { left: usize },
    /// Dropping `left` bytes of an oversized packet; `total` dropped so far; `more`: another
    /// packet continues it.
    Drop {
        left: usize,
        total: usize,
        more: bool,
        seq: u8,
    },
    /// Reading the header of an oversized packet's continuation.
    DropHeader { total: usize },
}

pub struct PacketLimit<R> {
    inner: R,
    limit: usize,
    shared: std::sync::Arc<LimitShared>,
    state: State,
    header: [u8; 4],
    header_len: usize,
    /// Bytes to hand upward before reading more (an accepted header, or the stand-in packet).
    out: Vec<u8>,
    out_pos: usize,
}

impl<R> PacketLimit<R> {
    pub fn new(inner: R, limit: usize, shared: std::sync::Arc<LimitShared>) -> Self {
        PacketLimit {
            inner,
            limit,
            shared,
            state: State::Header,
            header: [0; 4],
            header_len: 0,
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// What a TLS client may send unanswered: the limit, TLS record overhead, and a handshake.
    fn tls_budget(&self) -> usize {
        self.limit + self.limit / 8 + 64 * 1024
    }
}

fn too_large_before_login(len: usize, limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a {len}-byte packet before login is over max_allowed_packet ({limit})"),
    )
}

impl<R: AsyncRead + Unpin> PacketLimit<R> {
    /// Read from `inner` into `dst`; Ready(Ok(0)) is end of stream.
    fn read_inner(&mut self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(dst);
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Read the rest of a 4-byte header; Ready(Ok(false)) at a clean end of stream.
    fn read_header(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        while self.header_len < 4 {
            let mut h = self.header;
            let n = match self.read_inner(cx, &mut h[self.header_len..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.header = h;
            if n == 0 {
                return if self.header_len == 0 {
                    Poll::Ready(Ok(false))
                } else {
                    Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                };
            }
            self.header_len += n;
        }
        self.header_len = 0;
        Poll::Ready(Ok(true))
    }

    fn header_fields(&self) -> (usize, u8) {
        let h = self.header;
        (u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize, h[3])
    }

    fn poll_packets(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.out_pos < self.out.len() {
                let n = (self.out.len() - self.out_pos).min(buf.remaining());
                buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Poll::Ready(Ok(()));
            }
            match self.state {
                State::Header => {
                    match self.read_header(cx) {
                        Poll::Ready(Ok(true)) => {}
                        Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                    let (len, seq) = self.header_fields();
                    if len > self.limit {
                        if !self.shared.logged_in.load(Ordering::Relaxed) {
                            return Poll::Ready(Err(too_large_before_login(len, self.limit)));
                        }
                        self.state = State::Drop {
                            left: len,
                            total: 0,
                            more: len == CONTINUED,
                            seq,
                        };
                    } else {
                        self.out = self.header.to_vec();
                        self.out_pos = 0;
                        self.state = State::Body { left: len };
                    }
                }
                State::Body { left: 0 } => self.state = State::Header,
                State::Body { left } => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let dst = buf.initialize_unfilled_to(left.min(buf.remaining()));
                    let got = match self.read_inner(cx, dst) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        Poll::Ready(Ok(got)) => got,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    };
                    buf.advance(got);
                    self.state = State::Body { left: left - got };
                    return Poll::Ready(Ok(()));
                }
                State::Drop {
                    left: 0,
                    total,
                    more,
                    seq,
                } => {
                    if more {
                        self.state = State::DropHeader { total };
                    } else {
                        // Stand in with an empty COM_QUERY, answered by `on_query`.
                        *self.shared.oversized.lock().expect("oversized lock") = Some(total);
                        self.out = vec![1, 0, 0, seq, COM_QUERY];
                        self.out_pos = 0;
                        self.state = State::Header;
                    }
                }
                State::Drop {
                    left,
                    total,
                    more,
                    seq,
                } => {
                    let mut scratch = [0u8; 16 * 1024];
                    let want = left.min(scratch.len());
                    match self.read_inner(cx, &mut scratch[..want]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        Poll::Ready(Ok(got)) => {
                            self.state = State::Drop {
                                left: left - got,
                                total: total + got,
                                more,
                                seq,
                            }
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::DropHeader { total } => {
                    match self.read_header(cx) {
                        Poll::Ready(Ok(true)) => {}
                        Poll::Ready(Ok(false)) => {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                    let (len, seq) = self.header_fields();
                    self.state = State::Drop {
                        left: len,
                        total,
                        more: len == CONTINUED,
                        seq,
                    };
                }
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for PacketLimit<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.shared.tls.load(Ordering::Relaxed) {
            return this.poll_packets(cx, buf);
        }
        // Leftover plaintext bytes (none in practice: the client waits for the switch).
        if this.out_pos < this.out.len() {
            return this.poll_packets(cx, buf);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len() - before;
            let total = this.shared.unanswered.fetch_add(n, Ordering::Relaxed) + n;
            if total > this.tls_budget() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a TLS client sent {total} bytes without waiting for an answer: over max_allowed_packet ({})",
                        this.limit
                    ),
                )));
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    async fn read_all(
        input: Vec<u8>,
        limit: usize,
        logged_in: bool,
    ) -> (io::Result<Vec<u8>>, Arc<LimitShared>) {
        let shared = Arc::new(LimitShared::default());
        shared.logged_in.store(logged_in, Ordering::Relaxed);
        let mut r = PacketLimit::new(&input[..], limit, shared.clone());
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).await.map(|_| out);
        (res, shared)
    }

    #[tokio::test]
    async fn small_packets_pass_untouched() {
        let mut input = packet(0, b"\x03SELECT 1");
        input.extend(packet(0, b"\x03SHOW BACKENDS"));
        let (out, shared) = read_all(input.clone(), 64, true).await;
        assert_eq!(out.unwrap(), input);
        assert_eq!(shared.take_oversized(), None);
    }

    #[tokio::test]
    async fn an_oversized_packet_becomes_an_empty_query_with_its_sequence() {
        let big = vec![b'x'; 10_000];
        let mut input = packet(0, &big);
        input.extend(packet(0, b"\x03SELECT 1"));
        let (out, shared) = read_all(input, 4096, true).await;
        let mut want = vec![1, 0, 0, 0, COM_QUERY];
        want.extend(packet(0, b"\x03SELECT 1"));
        assert_eq!(out.unwrap(), want);
        assert_eq!(shared.take_oversized(), Some(10_000));
    }

    #[tokio::test]
    async fn a_continued_packet_is_dropped_whole() {
        let mut input = vec![0xff, 0xff, 0xff, 0];
        input.extend(vec![b'y'; CONTINUED]);
        input.extend(packet(1, b"tail"));
        input.extend(packet(0, b"\x03SELECT 2"));
        let (out, shared) = read_all(input, 4096, true).await;
        let mut want = vec![1, 0, 0, 1, COM_QUERY];
        want.extend(packet(0, b"\x03SELECT 2"));
        assert_eq!(out.unwrap(), want);
        assert_eq!(shared.take_oversized(), Some(CONTINUED + 4));
    }

    #[tokio::test]
    async fn before_login_an_oversized_packet_ends_the_connection() {
        let (out, _) = read_all(packet(1, &vec![0u8; 5000]), 4096, false).await;
        assert_eq!(out.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
