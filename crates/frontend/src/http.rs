//! The FE's HTTP port (`http_port`): `/api/health` and `/metrics` are open; the JSON views need a login (HTTP
//! Basic, the same users and privileges as SQL) and run their SHOW statement through the
//! executor, so privileges and the linearizable read barrier are those of MySQL and gRPC:
//! `/api/backends`, `/api/frontends`, `/api/decommission`, `/api/decommission/blockers`,
//! `/api/tables`, `/api/blacklist` (every FE's). Rows are objects keyed by column name, typed
//! for programs (README "HTTP API": numbers, integer bytes, RFC 3339 times, objects).

use crate::statement::{Session, execute_sql};
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use roster_node::{ApiError, FeNodeHandle, auth};
use roster_proto::QueryResult;
use roster_proto::cell::Cell;
use roster_proto::format::rfc3339;
use roster_transport::accept::AcceptBackoff;
use serde_json::{Map, Value, json};

fn statement(view: &str) -> Option<&'static str> {
    Some(match view {
        "backends" => "SHOW BACKENDS",
        "frontends" => "SHOW FRONTENDS",
        "decommission" => "SHOW DECOMMISSION",
        "decommission/blockers" => "SHOW DECOMMISSION BLOCKERS",
        "tables" => "SHOW TABLES",
        "blacklist" => "SHOW BACKEND BLACKLIST FROM ALL FRONTENDS",
        _ => return None,
    })
}

/// A typed cell as programs read it: numbers, integer bytes, RFC 3339 times, objects.
fn cell_json(c: &Cell) -> Value {
    match c {
        Cell::Null | Cell::Time(None) => Value::Null,
        Cell::Int(v) => json!(v),
        Cell::Bool(v) => json!(v),
        Cell::Text(v) => json!(v),
        Cell::Bytes(v) => json!(v),
        Cell::Time(Some(ms)) => json!(rfc3339(*ms)),
        Cell::Pct(v) => serde_json::Number::from_f64((v * 100.0).round() / 100.0)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Cell::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), cell_json(v)))
                .collect(),
        ),
        Cell::Sql(_, inner) => cell_json(inner),
    }
}

/// Rows as objects keyed by column; typed when the statement renders typed cells (every JSON
/// view but `/api/tables`, whose one column is a name).
fn to_json(r: &QueryResult) -> Value {
    let typed = r.cells.len() == r.rows.len();
    let rows: Vec<Value> = r
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let obj: Map<String, Value> = r
                .columns
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let v = match r.cells.get(i).and_then(|cells| cells.get(j)) {
                        Some(cell) if typed => cell_json(cell),
                        _ => row
                            .get(j)
                            .cloned()
                            .flatten()
                            .map(Value::String)
                            .unwrap_or(Value::Null),
                    };
                    (c.clone(), v)
                })
                .collect();
            Value::Object(obj)
        })
        .collect();
    json!({ "columns": r.columns, "rows": rows })
}

fn error(status: StatusCode, message: String) -> Response {
    let mut resp = (status, axum::Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"roster\""),
        );
    }
    resp
}

fn api_error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e.to_string())
}

/// User and password from an `Authorization: Basic` header.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// 200 while this FE serves clients; 503 otherwise, so that a VIP's health check takes it out
/// of rotation: `"status": "storage_fault"` while it stops on a storage error, `"nospace"`
/// while the free-space alarm refuses writes (both with a `"reason"`), `"draining"` once drained.
async fn health(State(fe): State<FeNodeHandle>) -> Response {
    let info = fe.node_info();
    let (code, status, reason) = if let Some(f) = fe.storage_fault() {
        (StatusCode::SERVICE_UNAVAILABLE, "storage_fault", Some(f))
    } else if let Some(m) = fe.nospace() {
        (StatusCode::SERVICE_UNAVAILABLE, "nospace", Some(m))
    } else if fe.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining", None)
    } else {
        (StatusCode::OK, "ok", None)
    };
    let body = axum::Json(json!({
        "status": status,
        "reason": reason,
        "node_id": fe.id().0,
        "leader": fe.leader().map(|(id, _)| id),
        "applied_index": info.last_applied_index,
    }));
    (code, body).into_response()
}

async fn view(
    State(fe): State<FeNodeHandle>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(view): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(sql) = statement(&view) else {
        return error(StatusCode::NOT_FOUND, format!("no view /api/{view}"));
    };
    let Some((user, password)) = basic_auth(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "log in with HTTP Basic authentication (a Roster user)".into(),
        );
    };
    if let Err(e) = auth::login(&fe, peer.ip(), &user, !password.is_empty(), |stored| {
        auth::verify_password(stored, &password)
    })
    .await
    {
        return match e {
            ApiError::AccessDenied(m) => error(StatusCode::UNAUTHORIZED, m),
            ApiError::Throttled(m) => error(StatusCode::TOO_MANY_REQUESTS, m),
            other => api_error(other),
        };
    }
    let mut session = Session::new(user);
    match execute_sql(&fe, &mut session, sql).await {
        Ok(r) => axum::Json(to_json(&r)).into_response(),
        Err(e) => api_error(e),
    }
}

/// Prometheus text format, open like `/api/health` (and like etcd's `/metrics`): counters of
/// this FE process. For now only the durable (fsynced) redb commits per file, which
/// `roster bench quorum` reads from the leader for fsyncs per operation; issue 17 will grow it.
async fn metrics() -> Response {
    let c = roster_raft_store::stats::durable_commits();
    let body = format!(
        "# HELP roster_disk_durable_commits_total Durable (fsynced) redb commits by this process, per file.\n\
         # TYPE roster_disk_durable_commits_total counter\n\
         roster_disk_durable_commits_total{{file=\"log.redb\"}} {}\n\
         roster_disk_durable_commits_total{{file=\"sm.redb\"}} {}\n",
        c.log, c.state_machine
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub fn router(fe: FeNodeHandle) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/{*view}", get(view))
        .with_state(fe)
}

/// The HTTP listener with the shared accept backoff (axum's own sleeps a second per error and
/// logs each one).
struct Listener {
    inner: tokio::net::TcpListener,
    backoff: AcceptBackoff,
}

impl axum::serve::Listener for Listener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        roster_transport::accept::accept(&self.inner, &self.backoff).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The client's address, for the login throttle (axum's `ConnectInfo` of our `Listener`).
#[derive(Clone, Copy, Debug)]
struct Peer(std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// HTTPS (secure mode): a task accepts and runs each TLS handshake in its own task, with a
/// deadline, so a slow or silent client never holds up the others; finished ones queue here.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

type TlsStream<S> = tokio_rustls::server::TlsStream<S>;

impl TlsListener {
    fn new(
        inner: tokio::net::TcpListener,
        config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = inner.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            let backoff = AcceptBackoff::new("http");
            loop {
                let (stream, peer) = roster_transport::accept::accept(&inner, &backoff).await;
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let hs = acceptor.accept(stream);
                    match tokio::time::timeout(roster_transport::tls::HANDSHAKE_TIMEOUT, hs).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "https handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "https handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serve the HTTP port: plain, or HTTPS with `tls` (secure mode).
pub async fn serve(
    fe: FeNodeHandle,
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let result = match tls {
        None => {
            let listener = Listener {
                inner: listener,
                backoff: AcceptBackoff::new("http"),
            };
            axum::serve(
                listener,
                router(fe).into_make_service_with_connect_info::<Peer>(),
            )
            .await
        }
        Some(config) => match TlsListener::new(listener, config) {
            Ok(l) => axum::serve(l, router(fe).into_make_service_with_connect_info::<Peer>()).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::error!("http server stopped: {e}");
    }
}
