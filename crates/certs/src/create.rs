//! Making certificates (`roster cert create-ca | create-node | create-client`), with rcgen.
//! Lifetimes follow CockroachDB: the CA 10 years, node and client certificates 5 years.

use crate::{CA_CERT, CA_KEY, CertError, Identity, Role, cluster_of_ca_der, first_cert_der};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 1825;

/// Names that go into a `roster://` URI: letters, digits, `.`, `_`, `-`.
fn check_name(what: &str, s: &str) -> Result<(), CertError> {
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(CertError::Invalid(format!(
            "{what} {s:?}: use letters, digits, '.', '_' and '-' only"
        )));
    }
    Ok(())
}

fn write_new(path: &Path, data: &str, private: bool, overwrite: bool) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(if private { 0o600 } else { 0o644 });
    if overwrite {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::Exists(path.to_path_buf())
        } else {
            io(e)
        }
    })?;
    f.write_all(data.as_bytes()).map_err(io)
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that lag the machine that made the certificate.
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
}

fn uri(s: String) -> Result<SanType, CertError> {
    Ok(SanType::URI(s.try_into()?))
}

/// Make `ca.crt` and `ca.key` in `dir` (created if missing) for cluster `cluster_id`.
pub fn create_ca(dir: &Path, cluster_id: &str, overwrite: bool) -> Result<PathBuf, CertError> {
    check_name("cluster id", cluster_id)?;
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::OrganizationName, "Roster");
    p.distinguished_name
        .push(DnType::CommonName, format!("Roster CA {cluster_id}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.subject_alt_names = vec![uri(format!("roster://{cluster_id}/ca"))?];
    validity(&mut p, CA_DAYS);
    let cert = p.self_signed(&key)?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if !overwrite {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(CertError::Exists(p.clone()));
            }
        }
    }
    write_new(&key_path, &key.serialize_pem(), true, overwrite)?;
    write_new(&cert_path, &cert.pem(), false, overwrite)?;
    Ok(cert_path)
}

/// The CA of `dir`: its cluster and an issuer that signs with its key.
fn load_issuer(dir: &Path) -> Result<(String, Issuer<'static, KeyPair>), CertError> {
    let ca_path = dir.join(CA_CERT);
    let cluster = cluster_of_ca_der(&first_cert_der(&ca_path)?)
        .map_err(|e| CertError::Invalid(format!("{}: not a roster CA: {e}", ca_path.display())))?;
    let key_path = dir.join(CA_KEY);
    let key_pem = String::from_utf8(crate::read(&key_path)?)
        .map_err(|_| CertError::Invalid(format!("{}: not a PEM key", key_path.display())))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| CertError::Invalid(format!("{}: {e}", key_path.display())))?;
    let ca_pem = String::from_utf8(crate::read(&ca_path)?)
        .map_err(|_| CertError::Invalid(format!("{}: not PEM", ca_path.display())))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
    Ok((cluster, issuer))
}

fn sign_leaf(
    dir: &Path,
    role: Role,
    hosts: &[String],
    overwrite: bool,
) -> Result<PathBuf, CertError> {
    let (cluster_id, issuer) = load_issuer(dir)?;
    let id = Identity { cluster_id, role };
    let mut sans = Vec::new();
    for h in hosts {
        sans.push(match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(h.clone().try_into().map_err(|_| {
                CertError::Invalid(format!(
                    "host {h:?} is neither an IP address nor a DNS name"
                ))
            })?),
        });
    }
    sans.push(uri(id.uri())?);
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans;
    p.distinguished_name
        .push(DnType::OrganizationName, "Roster");
    p.distinguished_name.push(
        DnType::CommonName,
        match &id.role {
            Role::Fe => "node".to_string(),
            Role::Backend => "backend".to_string(),
            Role::User(u) => u.clone(),
        },
    );
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Nodes are servers and, towards each other, clients; users are clients only.
    p.extended_key_usages = match id.role {
        Role::User(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    validity(&mut p, LEAF_DAYS);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    let (cert_name, key_name) = id.role.file_names();
    let (cert_path, key_path) = (dir.join(cert_name), dir.join(key_name));
    if !overwrite {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(CertError::Exists(p.clone()));
            }
        }
    }
    write_new(&key_path, &key.serialize_pem(), true, overwrite)?;
    write_new(&cert_path, &cert.pem(), false, overwrite)?;
    Ok(cert_path)
}

/// Make a node certificate (`node.crt`/`node.key` for an FE, `backend.crt`/`backend.key` for
/// an agent) valid for `hosts` (IP addresses or DNS names the peers dial).
pub fn create_node(
    dir: &Path,
    hosts: &[String],
    role: &Role,
    overwrite: bool,
) -> Result<PathBuf, CertError> {
    if hosts.is_empty() {
        return Err(CertError::Invalid(
            "name at least one host (IP address or DNS name) the peers use to reach the node"
                .into(),
        ));
    }
    if matches!(role, Role::User(_)) {
        return Err(CertError::Invalid(
            "a node certificate is for an FE or a backend agent".into(),
        ));
    }
    sign_leaf(dir, role.clone(), hosts, overwrite)
}

/// Make `client.USER.crt`/`client.USER.key`: logs `user` in on the client ports.
pub fn create_client(dir: &Path, user: &str, overwrite: bool) -> Result<PathBuf, CertError> {
    check_name("user", user)?;
    sign_leaf(dir, Role::User(user.to_string()), &[], overwrite)
}
