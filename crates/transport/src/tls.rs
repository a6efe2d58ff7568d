//! Transport security of the gRPC ports (Raft between FEs, FEs to agents, agents to agents,
//! clients to FEs): TLS configs made from a certs directory, and the check of who a calling
//! peer is. Authority comes from the peer's verified certificate (see `roster_certs`), never
//! from anything a message says.

use roster_certs::{Identity, Material, Role};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, ServerTlsConfig};
use tonic::{Request, Status};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which kind of caller a port or call admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Fe,
    Backend,
    User,
}

impl Caller {
    fn admits(self, role: &Role) -> bool {
        matches!(
            (self, role),
            (Caller::Fe, Role::Fe)
                | (Caller::Backend, Role::Backend)
                | (Caller::User, Role::User(_))
        )
    }
}

/// Plaintext (`insecure`) or mutual TLS with this node's certificate.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// No TLS, no peer authentication: loopback playgrounds and tests only.
    #[default]
    Insecure,
    Secure(Arc<Material>),
}

impl Transport {
    pub fn secure(m: Material) -> Transport {
        Transport::Secure(Arc::new(m))
    }

    pub fn is_secure(&self) -> bool {
        matches!(self, Transport::Secure(_))
    }

    /// The cluster this node's certificate belongs to (secure mode).
    pub fn cluster_id(&self) -> Option<&str> {
        match self {
            Transport::Insecure => None,
            Transport::Secure(m) => Some(&m.identity.cluster_id),
        }
    }

    /// The server side of a port: `None` in insecure mode. With `require_client_cert` the
    /// handshake itself refuses a caller without a certificate of this cluster's CA.
    pub fn server_tls(&self, require_client_cert: bool) -> Option<ServerTlsConfig> {
        match self {
            Transport::Insecure => None,
            Transport::Secure(m) => Some(
                ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(
                        &m.cert_pem,
                        &m.key_pem,
                    ))
                    .client_ca_root(Certificate::from_pem(&m.ca_pem))
                    .client_auth_optional(!require_client_cert)
                    .timeout(HANDSHAKE_TIMEOUT),
            ),
        }
    }

    /// An endpoint to `addr` (`host:port`): https with this node's certificate as the client
    /// certificate, verifying the server against the cluster CA and its host name.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        match self {
            Transport::Insecure => Endpoint::from_shared(format!("http://{addr}")),
            Transport::Secure(m) => Endpoint::from_shared(format!("https://{addr}"))?.tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&m.ca_pem))
                    .identity(tonic::transport::Identity::from_pem(
                        &m.cert_pem,
                        &m.key_pem,
                    )),
            ),
        }
    }

    /// Who called, if the call came over TLS with a certificate of this cluster.
    pub fn caller_identity<T>(&self, req: &Request<T>) -> Option<Identity> {
        let Transport::Secure(m) = self else {
            return None;
        };
        let certs = req.peer_certs()?;
        let id = roster_certs::identity_of_der(certs.first()?.as_ref()).ok()?;
        (id.cluster_id == m.identity.cluster_id).then_some(id)
    }

    /// Refuse a call unless its caller's certificate is of this cluster and one of `allowed`.
    /// Insecure mode admits everyone (that is what insecure means; it is refused outside
    /// playgrounds by the start-up checks).
    pub fn authorize<T>(&self, req: &Request<T>, allowed: &[Caller]) -> Result<(), Status> {
        let Transport::Secure(m) = self else {
            return Ok(());
        };
        let Some(certs) = req.peer_certs() else {
            return Err(Status::unauthenticated(
                "this port needs a client certificate of the cluster's CA (mutual TLS)",
            ));
        };
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let id = roster_certs::identity_of_der(leaf.as_ref())
            .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
        if id.cluster_id != m.identity.cluster_id {
            return Err(Status::permission_denied(format!(
                "client certificate is of cluster {:?}, this is {:?}",
                id.cluster_id, m.identity.cluster_id
            )));
        }
        if !allowed.iter().any(|c| c.admits(&id.role)) {
            return Err(Status::permission_denied(format!(
                "a {} may not make this call",
                id.role
            )));
        }
        Ok(())
    }
}

/// TLS of the client library: the cluster CA to verify FEs with, and optionally a client
/// certificate (`roster cert create-client USER`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// From a certs directory: `ca.crt`, and `client.USER.crt`/`.key` when present.
    pub fn from_dir(dir: &std::path::Path, user: &str) -> Result<ClientTls, String> {
        let (ca_pem, _) = Material::load_ca(dir).map_err(|e| e.to_string())?;
        let role = Role::User(user.to_string());
        let (crt, _) = role.file_names();
        let identity = if dir.join(&crt).exists() {
            let m = Material::load(dir, &role).map_err(|e| e.to_string())?;
            Some((m.cert_pem, m.key_pem))
        } else {
            None
        };
        Ok(ClientTls { ca_pem, identity })
    }

    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((c, k)) = &self.identity {
            cfg = cfg.identity(tonic::transport::Identity::from_pem(c, k));
        }
        Endpoint::from_shared(format!("https://{addr}"))?.tls_config(cfg)
    }
}
