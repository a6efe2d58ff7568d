//! Cluster identity: the certificates `roster cert` makes (a cluster CA, node certificates for
//! FEs and backend agents, client certificates for users) and reading back who a peer is.
//!
//! Who a certificate speaks for is bound into it, not claimed by messages: every certificate
//! the CA signs carries a URI subject-alternative name `roster://CLUSTER/ROLE` (ROLE `fe`,
//! `backend` or `user/NAME`), so a node of another cluster, or a backend agent, or a user, is
//! told apart from an FE of this cluster by the TLS handshake's verified chain alone.

mod create;

pub use create::{create_ca, create_client, create_node};

use std::path::{Path, PathBuf};

/// File names inside a certs directory (CockroachDB's layout, with the roles split).
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// What a certificate lets its holder be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A frontend of the cluster: may speak Raft, forward, command agents.
    Fe,
    /// A backend agent: may pull replicas from other agents, nothing else.
    Backend,
    /// A user logging in on a client port.
    User(String),
}

impl Role {
    fn uri_path(&self) -> String {
        match self {
            Role::Fe => "fe".into(),
            Role::Backend => "backend".into(),
            Role::User(u) => format!("user/{u}"),
        }
    }

    /// Certificate and key file names of this role in a certs directory.
    pub fn file_names(&self) -> (String, String) {
        let stem = match self {
            Role::Fe => "node".to_string(),
            Role::Backend => "backend".to_string(),
            Role::User(u) => format!("client.{u}"),
        };
        (format!("{stem}.crt"), format!("{stem}.key"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Fe => write!(f, "FE"),
            Role::Backend => write!(f, "backend agent"),
            Role::User(u) => write!(f, "user {u}"),
        }
    }
}

/// Who a certificate says its holder is (trust comes from the chain, checked by TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub role: Role,
}

impl Identity {
    fn uri(&self) -> String {
        format!("roster://{}/{}", self.cluster_id, self.role.uri_path())
    }

    fn from_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("roster://")?;
        let (cluster, path) = rest.split_once('/')?;
        if cluster.is_empty() {
            return None;
        }
        let role = match path {
            "fe" => Role::Fe,
            "backend" => Role::Backend,
            "ca" => return None,
            p => Role::User(
                p.strip_prefix("user/")
                    .filter(|u| !u.is_empty())?
                    .to_string(),
            ),
        };
        Some(Identity {
            cluster_id: cluster.to_string(),
            role,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate: {why}")]
    BadPem { path: PathBuf, why: String },
    #[error(
        "certificate carries no roster identity (a roster://CLUSTER/ROLE name); was it made by `roster cert`?"
    )]
    NoIdentity,
    #[error("the certificate does not parse: {0}")]
    Parse(String),
    #[error("{0} already exists: remove it first, or pass --overwrite")]
    Exists(PathBuf),
    #[error("{path} is the CA of cluster {found:?}, not {expected:?}")]
    WrongCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The first of a DER certificate's URI SANs that `pick` accepts.
fn find_uri<T>(der: &[u8], pick: impl Fn(&str) -> Option<T>) -> Result<T, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Parse(e.to_string()))?
        .ok_or(CertError::NoIdentity)?;
    san.value
        .general_names
        .iter()
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => pick(u),
            _ => None,
        })
        .ok_or(CertError::NoIdentity)
}

/// The identity in a DER certificate (a leaf presented by a peer, or our own).
pub fn identity_of_der(der: &[u8]) -> Result<Identity, CertError> {
    find_uri(der, Identity::from_uri)
}

/// The cluster a CA certificate belongs to (its `roster://CLUSTER/ca` name).
pub fn cluster_of_ca_der(der: &[u8]) -> Result<String, CertError> {
    find_uri(der, |u| {
        u.strip_prefix("roster://")
            .and_then(|r| r.strip_suffix("/ca"))
            .filter(|c| !c.is_empty() && !c.contains('/'))
            .map(str::to_string)
    })
}

/// Read a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The first certificate of a PEM file, as DER.
pub fn first_cert_der(path: &Path) -> Result<Vec<u8>, CertError> {
    let pem = read(path)?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| CertError::BadPem {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    if p.label != "CERTIFICATE" {
        return Err(CertError::BadPem {
            path: path.to_path_buf(),
            why: format!("first block is {:?}", p.label),
        });
    }
    Ok(p.contents)
}

/// PEM material of one holder, loaded from a certs directory: the cluster CA, its own
/// certificate and key, and the identity the certificate carries.
#[derive(Clone)]
pub struct Material {
    pub dir: PathBuf,
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub identity: Identity,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("dir", &self.dir)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// Load `ca.crt` and the role's certificate and key from `dir`; checks that the
    /// certificate is of that role and of the CA's cluster (the chain itself is verified by
    /// every peer's TLS handshake).
    pub fn load(dir: &Path, role: &Role) -> Result<Material, CertError> {
        let ca_path = dir.join(CA_CERT);
        let ca_der = first_cert_der(&ca_path)?;
        let cluster = cluster_of_ca_der(&ca_der).map_err(|e| {
            CertError::Invalid(format!("{}: not a roster CA: {e}", ca_path.display()))
        })?;
        let (cert_name, key_name) = role.file_names();
        let cert_path = dir.join(&cert_name);
        let identity = identity_of_der(&first_cert_der(&cert_path)?)
            .map_err(|e| CertError::Invalid(format!("{}: {e}", cert_path.display())))?;
        if identity.role != *role {
            return Err(CertError::Invalid(format!(
                "{} is a certificate for {}, not for {role}",
                cert_path.display(),
                identity.role
            )));
        }
        if identity.cluster_id != cluster {
            return Err(CertError::WrongCluster {
                path: ca_path,
                found: cluster,
                expected: identity.cluster_id,
            });
        }
        Ok(Material {
            dir: dir.to_path_buf(),
            ca_pem: read(&ca_path)?,
            cert_pem: read(&cert_path)?,
            key_pem: read(&dir.join(&key_name))?,
            identity,
        })
    }

    /// The CA alone (a client that only verifies the server, with a password login).
    pub fn load_ca(dir: &Path) -> Result<(Vec<u8>, String), CertError> {
        let ca_path = dir.join(CA_CERT);
        let cluster = cluster_of_ca_der(&first_cert_der(&ca_path)?).map_err(|e| {
            CertError::Invalid(format!("{}: not a roster CA: {e}", ca_path.display()))
        })?;
        Ok((read(&ca_path)?, cluster))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_reject_junk() {
        for role in [Role::Fe, Role::Backend, Role::User("alice".into())] {
            let id = Identity {
                cluster_id: "c1".into(),
                role,
            };
            assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        }
        for junk in [
            "roster://c1/ca",
            "roster:///fe",
            "roster://c1/user/",
            "roster://c1/admin",
            "https://c1/fe",
        ] {
            assert_eq!(Identity::from_uri(junk), None, "{junk}");
        }
    }

    #[test]
    fn made_certificates_carry_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), "prod", false).unwrap();
        assert!(matches!(
            create_ca(dir.path(), "prod", false),
            Err(CertError::Exists(_))
        ));
        create_node(
            dir.path(),
            &["127.0.0.1".into(), "localhost".into()],
            &Role::Fe,
            false,
        )
        .unwrap();
        create_node(dir.path(), &["127.0.9.1".into()], &Role::Backend, false).unwrap();
        create_client(dir.path(), "root", false).unwrap();
        let fe = Material::load(dir.path(), &Role::Fe).unwrap();
        assert_eq!(
            fe.identity,
            Identity {
                cluster_id: "prod".into(),
                role: Role::Fe
            }
        );
        let be = Material::load(dir.path(), &Role::Backend).unwrap();
        assert_eq!(be.identity.role, Role::Backend);
        let root = Material::load(dir.path(), &Role::User("root".into())).unwrap();
        assert_eq!(root.identity.role, Role::User("root".into()));
        // A backend certificate is not an FE's.
        std::fs::copy(dir.path().join("backend.crt"), dir.path().join("node.crt")).unwrap();
        let e = Material::load(dir.path(), &Role::Fe)
            .unwrap_err()
            .to_string();
        assert!(e.contains("backend agent, not for FE"), "{e}");
    }

    #[test]
    fn a_certificate_of_another_cluster_is_refused_on_load() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        create_ca(a.path(), "a", false).unwrap();
        create_ca(b.path(), "b", false).unwrap();
        create_node(a.path(), &["127.0.0.1".into()], &Role::Fe, false).unwrap();
        std::fs::copy(b.path().join(CA_CERT), a.path().join(CA_CERT)).unwrap();
        let e = Material::load(a.path(), &Role::Fe).unwrap_err().to_string();
        assert!(e.contains("cluster \"b\", not \"a\""), "{e}");
    }
}
