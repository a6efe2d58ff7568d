//! The MySQL front door on `query_port`: opensrv-mysql speaks the protocol, this module
//! authenticates (mysql_native_password, a random salt per connection), runs each statement
//! through the same executor as gRPC, and renders results and Doris-style errors
//! (`ERROR 1105 (HY000): errCode = 2, detailMessage = ...`). Limits (`limits::ClientLimits`):
//! at most `max_connections` open (error 1040 beyond), `connect_timeout` to log in (throttled by
//! the FE's login throttle), and no packet over `max_allowed_packet` (`limit`).

mod limit;

use crate::statement::{self, Session};
use anyhow::Context as _;
use async_trait::async_trait;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter,
    IntermediaryOptions, OkResponse, ParamParser, QueryResultWriter, StatementMetaWriter,
    plain_run_with_options, secure_run_with_options,
};
use roster_node::{ApiError, FeNodeHandle, auth};
use roster_proto::{QueryResult, SqlType};
use rustls_pki_types::CertificateDer;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::ServerConfig;

/// What MySQL clients are told the server version is (Doris says the same).
const SERVER_VERSION: &str = "5.7.99";

static NEXT_CONNECTION_ID: AtomicU32 = AtomicU32::new(1);

/// TLS settings for the MySQL port: a PEM certificate chain and its PKCS#8 private key.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("tls_cert_file {}", cert.display()))?,
    ))
    .collect::<Result<Vec<CertificateDer>, _>>()
    .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls_cert_file {} holds no certificate",
        cert.display()
    );
    let key = rustls_pemfile::private_key(&mut io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("tls_key_file {}", key.display()))?,
    ))
    .with_context(|| format!("reading the private key from {}", key.display()))?
    .with_context(|| format!("tls_key_file {} holds no private key", key.display()))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// How long a refusal (1040) may take to write before the connection is just closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// TLS of the MySQL port: the server certificate, and whether plaintext logins are refused
/// (MySQL's `require_secure_transport`).
#[derive(Clone)]
pub struct MysqlTls {
    pub config: Option<Arc<ServerConfig>>,
    pub required: bool,
}

/// MySQL's own error for a plaintext login under `require_secure_transport`.
const INSECURE_TRANSPORT: &str =
    "Connections using insecure transport are prohibited while --require_secure_transport=ON.";

/// Accept connections until the task is aborted. With a TLS config, clients may switch to TLS.
pub async fn serve(fe: FeNodeHandle, listener: TcpListener, tls: MysqlTls) {
    let backoff = roster_transport::accept::AcceptBackoff::new("query");
    let slots = Arc::new(Semaphore::new(fe.config().limits.max_connections));
    let full_log =
        roster_transport::ratelog::RateLimit::new(roster_transport::ratelog::LOG_INTERVAL);
    loop {
        // With TCP_NODELAY, as every accepted socket.
        let (stream, peer) = roster_transport::accept::accept(&listener, &backoff).await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(suppressed) = full_log.check(()) {
                tracing::warn!(
                    %peer, suppressed,
                    "refused a MySQL connection: max_connections ({}) are open ({suppressed} more refused since the last line)",
                    fe.config().limits.max_connections
                );
            }
            tokio::spawn(async move {
                let payload = err_payload(1040, "08004", "Too many connections");
                let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, refuse_with(stream, &payload))
                    .await;
            });
            continue;
        };
        let fe = fe.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = run_connection(fe, stream, peer.ip(), tls).await {
                tracing::debug!(%peer, "mysql connection ended: {e}");
            }
        });
    }
}

async fn run_connection(
    fe: FeNodeHandle,
    stream: tokio::net::TcpStream,
    peer: IpAddr,
    tls: MysqlTls,
) -> io::Result<()> {
    let MysqlTls {
        config: tls,
        required,
    } = tls;
    // A drained FE refuses at login (the clearest text a client shows); inside TLS the login
    // error cannot be rewritten, so there it refuses before the handshake instead.
    if fe.is_draining() && tls.is_some() {
        return refuse_with(stream, &draining_payload()).await;
    }
    let limits = fe.config().limits.clone();
    let (r, w) = stream.into_split();
    let shared = Arc::new(limit::LimitShared::default());
    let mut r = limit::PacketLimit::new(r, limits.max_allowed_packet, shared.clone());
    let login_error = Arc::new(Mutex::new(None));
    let mut shim = Connection::new(fe, peer, login_error.clone(), shared.clone());
    let mut w = LoginErrorRewriter {
        inner: w,
        replacement: login_error,
        pending: Vec::new(),
        shared: shared.clone(),
    };
    let run = async {
        let (is_ssl, init) =
            AsyncMysqlIntermediary::init_before_ssl(&mut shim, &mut r, &mut w, &tls).await?;
        let opts = IntermediaryOptions::default();
        shim.refuse_plaintext = required && !is_ssl;
        match tls {
            Some(tls) if is_ssl => {
                shared.tls.store(true, Ordering::Relaxed);
                // Inside TLS the rewriter would see ciphertext: a failed login then gets
                // opensrv-mysql's own access-denied error (1698, SQLSTATE 28000).
                shim.rewrite_login_errors = false;
                secure_run_with_options(shim, w, opts, tls, init).await
            }
            _ => plain_run_with_options(shim, w, opts, init).await,
        }
    };
    tokio::select! {
        r = run => r,
        () = login_deadline(&shared, limits.connect_timeout) => {
            tracing::debug!(%peer, "mysql client not logged in within connect_timeout_sec; closing");
            Err(io::Error::new(io::ErrorKind::TimedOut, "not logged in within connect_timeout_sec"))
        }
    }
}

/// Ready when `timeout` passed without a login; never once logged in.
async fn login_deadline(shared: &limit::LimitShared, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    if shared.logged_in.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

struct Connection {
    fe: FeNodeHandle,
    /// The client's address: the login throttle's key.
    peer: IpAddr,
    limit: Arc<limit::LimitShared>,
    salt: [u8; 20],
    id: u32,
    /// Set by `authenticate` (which only gets `&self`).
    user: Mutex<Option<String>>,
    session: Session,
    login_error: Arc<Mutex<Option<Vec<u8>>>>,
    /// Whether a failed login's error packet is swapped for MySQL's 1045 (plain connections).
    rewrite_login_errors: bool,
    /// The client did not switch to TLS and the port requires it: every login fails (3159).
    refuse_plaintext: bool,
}

impl Connection {
    fn new(
        fe: FeNodeHandle,
        peer: IpAddr,
        login_error: Arc<Mutex<Option<Vec<u8>>>>,
        limit: Arc<limit::LimitShared>,
    ) -> Self {
        Connection {
            fe,
            peer,
            limit,
            salt: auth::random_salt(),
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            user: Mutex::new(None),
            session: Session::default(),
            login_error,
            rewrite_login_errors: true,
            refuse_plaintext: false,
        }
    }

    fn session(&mut self) -> &mut Session {
        if self.session.user.is_empty()
            && let Some(u) = self.user.lock().expect("user lock").clone()
        {
            self.session = Session::new(u);
        }
        &mut self.session
    }
}

/// MySQL error number and text for an API error.
fn mysql_error(e: &ApiError) -> (ErrorKind, String) {
    match e {
        ApiError::TooLarge(m) => (ErrorKind::ER_NET_PACKET_TOO_LARGE, m.clone()),
        ApiError::AccessDenied(_) => (
            ErrorKind::ER_SPECIFIC_ACCESS_DENIED_ERROR,
            e.mysql_message(),
        ),
        _ => (ErrorKind::ER_UNKNOWN_ERROR, e.mysql_message()),
    }
}

fn draining_payload() -> Vec<u8> {
    let e = ApiError::Invalid(roster_proto::status::DRAINING_MESSAGE.to_string());
    err_payload(1105, "HY000", &e.mysql_message())
}

/// One ERR packet in place of the handshake (as MySQL does for "Too many connections"), then
/// close.
async fn refuse_with(mut stream: tokio::net::TcpStream, payload: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let len = (payload.len() as u32).to_le_bytes();
    let mut packet = vec![len[0], len[1], len[2], 0];
    packet.extend_from_slice(payload);
    stream.write_all(&packet).await?;
    stream.shutdown().await
}

/// An ERR packet payload: 0xff, error code, '#', SQLSTATE, message.
fn err_payload(code: u16, sqlstate: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(sqlstate.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    p
}

async fn write_result<W: AsyncWrite + Send + Unpin>(
    r: QueryResult,
    results: QueryResultWriter<'_, W>,
) -> io::Result<()> {
    if !r.is_result_set() {
        return results
            .completed(OkResponse {
                affected_rows: r.affected_rows,
                info: r.message,
                ..Default::default()
            })
            .await;
    }
    // The statement declares its columns' types: SHOW output is text, as in Doris; SELECTs of
    // integer constants and variables are integers.
    let columns: Vec<Column> = r
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| Column {
            table: String::new(),
            column: name.clone(),
            coltype: match r.column_type(i) {
                SqlType::Int => ColumnType::MYSQL_TYPE_LONGLONG,
                SqlType::Text => ColumnType::MYSQL_TYPE_VAR_STRING,
            },
            colflags: ColumnFlags::empty(),
        })
        .collect();
    let mut w = results.start(&columns).await?;
    for row in r.rows {
        for (v, c) in row.into_iter().zip(&columns) {
            match (v, c.coltype) {
                // Declared integer by the statement, which made the text from an integer.
                (Some(v), ColumnType::MYSQL_TYPE_LONGLONG) => match v.parse::<i64>() {
                    Ok(n) => w.write_col(n)?,
                    Err(_) => w.write_col(v)?,
                },
                (v, _) => w.write_col(v)?,
            }
        }
        w.end_row().await?;
    }
    w.finish().await
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for Connection {
    type Error = io::Error;

    fn version(&self) -> String {
        SERVER_VERSION.to_string()
    }

    fn connect_id(&self) -> u32 {
        self.id
    }

    /// Random per connection, so a captured login response cannot be replayed.
    fn salt(&self) -> [u8; 20] {
        self.salt
    }

    async fn authenticate(
        &self,
        _plugin: &str,
        username: &[u8],
        salt: &[u8],
        auth_data: &[u8],
    ) -> bool {
        if self.refuse_plaintext {
            tracing::info!("refused a plaintext MySQL login (require_secure_transport)");
            *self.login_error.lock().expect("login error lock") =
                Some(err_payload(3159, "HY000", INSECURE_TRANSPORT));
            return false;
        }
        if self.fe.is_draining() && self.rewrite_login_errors {
            *self.login_error.lock().expect("login error lock") = Some(draining_payload());
            return false;
        }
        let user = String::from_utf8_lossy(username).to_string();
        let res = auth::login(
            &self.fe,
            self.peer,
            &user,
            !auth_data.is_empty(),
            |stored| auth::verify_scramble(stored, salt, auth_data),
        )
        .await;
        match res {
            Ok(()) => {
                *self.user.lock().expect("user lock") = Some(user);
                self.limit.logged_in.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let payload = match &e {
                    ApiError::AccessDenied(m) => err_payload(1045, "28000", m),
                    ApiError::Throttled(m) => err_payload(1129, "HY000", m),
                    other => err_payload(1105, "HY000", &other.mysql_message()),
                };
                if self.rewrite_login_errors {
                    *self.login_error.lock().expect("login error lock") = Some(payload);
                }
                false
            }
        }
    }

    async fn on_prepare<'a>(
        &'a mut self,
        _query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        info.error(
            ErrorKind::ER_UNKNOWN_ERROR,
            b"errCode = 2, detailMessage = prepared statements are not supported",
        )
        .await
    }

    async fn on_execute<'a>(
        &'a mut self,
        _id: u32,
        _p: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        results
            .error(
                ErrorKind::ER_UNKNOWN_ERROR,
                b"errCode = 2, detailMessage = prepared statements are not supported",
            )
            .await
    }

    async fn on_close<'a>(&'a mut self, _stmt: u32)
    where
        W: 'async_trait,
    {
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        if let Some(len) = self.limit.take_oversized() {
            let e = roster_node::limits::too_large(len, self.fe.config().limits.max_allowed_packet);
            return results
                .error(ErrorKind::ER_NET_PACKET_TOO_LARGE, e.to_string().as_bytes())
                .await;
        }
        let fe = self.fe.clone();
        match statement::execute_sql(&fe, self.session(), query).await {
            Ok(r) => write_result(r, results).await,
            Err(e) => {
                let (kind, msg) = mysql_error(&e);
                results.error(kind, msg.as_bytes()).await
            }
        }
    }

    async fn on_init<'a>(&'a mut self, db: &'a str, writer: InitWriter<'a, W>) -> io::Result<()> {
        self.session().db = Some(db.to_string());
        writer.ok().await
    }
}

/// opensrv-mysql answers a failed login with error 1698 and its own text; MySQL and Doris
/// answer 1045 `Access denied for user ...`. This writer swaps that one ERR packet for ours
/// (same sequence number). Everything else passes through untouched.
struct LoginErrorRewriter<W> {
    inner: W,
    replacement: Arc<Mutex<Option<Vec<u8>>>>,
    /// Bytes of a swapped packet not yet written to `inner`.
    pending: Vec<u8>,
    /// Told of every write: the client's next request starts (the TLS size budget).
    shared: Arc<limit::LimitShared>,
}

impl<W: AsyncWrite + Unpin> LoginErrorRewriter<W> {
    /// If a replacement is armed, queue it as the packet with sequence `seq` (the ERR packet
    /// being written is then dropped) and start writing it; true if it swapped.
    fn swap(&mut self, seq: u8, cx: &mut Context<'_>) -> io::Result<bool> {
        let Some(payload) = self.replacement.lock().expect("login error lock").take() else {
            return Ok(false);
        };
        let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        packet.push(seq);
        packet.extend_from_slice(&payload);
        self.pending = packet;
        // Whatever is not written now is written by the next poll (each one drains first).
        let _ = self.drain(cx)?;
        Ok(true)
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LoginErrorRewriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        this.shared.answered();
        if buf.len() > 4 && buf[4] == 0xff && this.swap(buf[3], cx)? {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    /// opensrv writes each packet as `[header, payload]`.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        this.shared.answered();
        let is_err_packet = bufs.len() == 2 && bufs[0].len() == 4 && bufs[1].first() == Some(&0xff);
        if is_err_packet && this.swap(bufs[0][3], cx)? {
            return Poll::Ready(Ok(bufs[0].len() + bufs[1].len()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
