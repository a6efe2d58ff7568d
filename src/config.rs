//! FE configuration: TOML file < `ROSTER_*` environment variables < command-line flags.
//! Every key is documented in `config/fe1.toml`; unknown keys are an error, not ignored.

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use roster_membership::{FrontendId, model};
use roster_node::limits::{ClientLimits, MAX_PACKET_CAP};
use roster_node::login_throttle::ThrottleConfig;
use roster_node::raft_guard::RaftLimits;
use roster_node::{FeConfig, RaftTiming};
use roster_raft_store::FeNode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot and purge the log after this many applied entries.
    pub snapshot_logs_since_last: u64,
    /// Log entries kept behind the latest snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// A peer's Raft message whose term is more than this above this FE's term is refused.
    pub max_term_jump: u64,
    /// An incoming snapshot larger than this is refused.
    pub max_snapshot_bytes: u64,
}

impl Default for RaftSection {
    fn default() -> Self {
        let t = RaftTiming::default();
        RaftSection {
            heartbeat_interval_ms: t.heartbeat_interval_ms,
            election_timeout_min_ms: t.election_timeout_min_ms,
            election_timeout_max_ms: t.election_timeout_max_ms,
            snapshot_logs_since_last: 5_000,
            max_in_snapshot_log_to_keep: 1_000,
            max_term_jump: RaftLimits::default().max_term_jump,
            max_snapshot_bytes: RaftLimits::default().max_snapshot_bytes,
        }
    }
}

/// `[login]`: throttling of failed logins (see `roster_node::login_throttle`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSection {
    pub free_failures: u32,
    pub delay_base_ms: u64,
    pub delay_max_ms: u64,
    pub max_wait_ms: u64,
    pub user_free_failures: u32,
    pub user_delay_max_ms: u64,
    pub failure_window_sec: u64,
}

impl Default for LoginSection {
    fn default() -> Self {
        let t = ThrottleConfig::default();
        LoginSection {
            free_failures: t.free_failures,
            delay_base_ms: t.base_delay.as_millis() as u64,
            delay_max_ms: t.max_delay.as_millis() as u64,
            max_wait_ms: t.max_wait.as_millis() as u64,
            user_free_failures: t.user_free_failures,
            user_delay_max_ms: t.user_max_delay.as_millis() as u64,
            failure_window_sec: t.window.as_secs(),
        }
    }
}

impl LoginSection {
    fn throttle(&self) -> ThrottleConfig {
        ThrottleConfig {
            free_failures: self.free_failures,
            base_delay: Duration::from_millis(self.delay_base_ms),
            max_delay: Duration::from_millis(self.delay_max_ms),
            max_wait: Duration::from_millis(self.max_wait_ms),
            user_free_failures: self.user_free_failures,
            user_max_delay: Duration::from_millis(self.user_delay_max_ms),
            window: Duration::from_secs(self.failure_window_sec),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    pub node_id: u64,
    pub host: String,
    pub edit_log_port: u16,
    pub rpc_port: u16,
    pub query_port: u16,
    pub http_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: u64,
    pub name: Option<String>,
    pub cluster_id: String,
    pub host: String,
    pub data_dir: PathBuf,
    pub edit_log_port: u16,
    pub rpc_port: u16,
    pub query_port: u16,
    pub http_port: u16,
    pub read_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub log_format: String,
    /// Password of `root`, used once: when this FE, as the first leader, creates root.
    pub root_password: String,
    /// No TLS and no peer authentication on any port, and root's password may be empty
    /// (loopback playgrounds only). Exactly one of `insecure` and `certs_dir` must be set.
    pub insecure: bool,
    /// Insecure mode: the secret sent on every call to an agent (insecure agents obey only
    /// holders of it). Proves cluster membership, not the FE role.
    pub cluster_token: Option<String>,
    /// Secure mode: `ca.crt`, `node.crt`, `node.key` made by `roster cert`. Mutual TLS between
    /// FEs and towards agents, TLS on the client gRPC, HTTP and MySQL ports.
    pub certs_dir: Option<PathBuf>,
    /// Refuse MySQL connections that do not switch to TLS (MySQL's variable of that name).
    /// Unset: on in secure mode, off otherwise.
    pub require_secure_transport: Option<bool>,
    /// PEM certificate chain and private key for MySQL clients' TLS (default in secure mode:
    /// the certs_dir's node certificate).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Local IP address of this FE's connection checks to backends (see the blacklist in the
    /// README); unset: chosen by the kernel.
    pub backend_source_ip: Option<std::net::IpAddr>,
    /// Longest statement in bytes, on every port (MySQL's name; our default is 1 MiB).
    pub max_allowed_packet: usize,
    /// Seconds a MySQL client has from connecting to being logged in.
    pub connect_timeout_sec: u64,
    /// Open MySQL connections at most; the next is refused with error 1040.
    pub max_connections: usize,
    pub login: LoginSection,
    /// The free-space alarm's threshold (bytes free under data_dir); 0: off.
    pub min_free_disk_bytes: u64,
    pub raft: RaftSection,
    pub initial_members: Vec<MemberSection>,
}

impl Default for FileConfig {
    fn default() -> Self {
        let limits = ClientLimits::default();
        FileConfig {
            node_id: 0,
            name: None,
            cluster_id: "roster".into(),
            host: "127.0.0.1".into(),
            data_dir: PathBuf::from("data"),
            edit_log_port: 9010,
            rpc_port: 9020,
            query_port: 9030,
            http_port: 8030,
            read_timeout_ms: 5_000,
            write_timeout_ms: 15_000,
            log_format: "text".into(),
            root_password: String::new(),
            insecure: false,
            cluster_token: None,
            certs_dir: None,
            require_secure_transport: None,
            tls_cert_file: None,
            tls_key_file: None,
            backend_source_ip: None,
            max_allowed_packet: limits.max_allowed_packet,
            connect_timeout_sec: limits.connect_timeout.as_secs(),
            max_connections: limits.max_connections,
            login: LoginSection::default(),
            min_free_disk_bytes: 128 << 20,
            raft: RaftSection::default(),
            initial_members: Vec::new(),
        }
    }
}

/// Top-level keys of the file, for filtering `ROSTER_*` variables.
const CONFIG_KEYS: &[&str] = &[
    "node_id",
    "name",
    "cluster_id",
    "host",
    "data_dir",
    "edit_log_port",
    "rpc_port",
    "query_port",
    "http_port",
    "read_timeout_ms",
    "write_timeout_ms",
    "log_format",
    "root_password",
    "insecure",
    "cluster_token",
    "certs_dir",
    "require_secure_transport",
    "tls_cert_file",
    "tls_key_file",
    "backend_source_ip",
    "max_allowed_packet",
    "connect_timeout_sec",
    "max_connections",
    "login",
    "min_free_disk_bytes",
    "raft",
    "initial_members",
];

/// Whether an environment key (after `ROSTER_` and with `__` turned into `.`, still in the
/// case the shell has it: `RAFT.HEARTBEAT_INTERVAL_MS`) starts with a config key. figment
/// lower-cases keys only after the filter, so the comparison ignores case.
fn names_config_key(env_key: &str) -> bool {
    let top = env_key.split('.').next().unwrap_or_default();
    CONFIG_KEYS.iter().any(|c| c.eq_ignore_ascii_case(top))
}

/// Flags that override the file and the environment (only those given).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certs_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

pub fn load(path: &Path, overrides: &Overrides) -> anyhow::Result<FileConfig> {
    if !path.exists() {
        bail!("config file {} does not exist", path.display());
    }
    let cfg: FileConfig = Figment::from(Serialized::defaults(FileConfig::default()))
        .merge(Toml::file_exact(path))
        // Only variables that name a config key: other subcommands use ROSTER_ENDPOINTS and
        // ROSTER_PASSWORD, which must not break `roster start` run from the same shell.
        .merge(
            Env::prefixed("ROSTER_")
                .split("__")
                .filter(|k| names_config_key(k.as_str())),
        )
        .merge(Serialized::defaults(overrides))
        .extract()
        .with_context(|| {
            format!(
                "invalid configuration in {} (or ROSTER_* environment)",
                path.display()
            )
        })?;
    validate(&cfg)?;
    Ok(cfg)
}

fn validate(c: &FileConfig) -> anyhow::Result<()> {
    if c.node_id == 0 {
        bail!("node_id must be set to a positive integer, unique in the cluster and never reused");
    }
    if c.cluster_id.trim().is_empty() {
        bail!("cluster_id must not be empty");
    }
    let ports = [c.edit_log_port, c.rpc_port, c.query_port, c.http_port];
    if ports.contains(&0) {
        bail!("edit_log_port, rpc_port, query_port and http_port must all be set");
    }
    let mut sorted = ports.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != ports.len() {
        bail!("edit_log_port, rpc_port, query_port and http_port must be distinct");
    }
    if !["text", "json"].contains(&c.log_format.as_str()) {
        bail!(
            "log_format must be \"text\" or \"json\", not \"{}\"",
            c.log_format
        );
    }
    timing(c).validate().map_err(anyhow::Error::msg)?;
    let mut ids = std::collections::BTreeSet::new();
    for m in &c.initial_members {
        if !ids.insert(m.node_id) {
            bail!("initial_members lists node_id {} twice", m.node_id);
        }
    }
    if let Some(me) = c.initial_members.iter().find(|m| m.node_id == c.node_id) {
        let mine = (
            c.host.as_str(),
            c.edit_log_port,
            c.rpc_port,
            c.query_port,
            c.http_port,
        );
        let listed = (
            me.host.as_str(),
            me.edit_log_port,
            me.rpc_port,
            me.query_port,
            me.http_port,
        );
        if mine != listed {
            bail!(
                "initial_members entry for node_id {} does not match this node's host and ports",
                c.node_id
            );
        }
    } else if !c.initial_members.is_empty() {
        bail!(
            "initial_members does not include this node (node_id {}); an FE that joins later must have no initial_members",
            c.node_id
        );
    }
    match (&c.certs_dir, c.insecure) {
        (Some(_), true) => bail!(
            "certs_dir and insecure exclude each other: a secure cluster uses certificates, an insecure one none"
        ),
        (None, false) => bail!(
            "choose how this FE is secured: certs_dir (or --certs-dir DIR) with the certificates \
             `roster cert` makes, or insecure = true (or --insecure) for a throwaway loopback cluster"
        ),
        _ => {}
    }
    c.cluster_token()?;
    if c.tls_cert_file.is_some() != c.tls_key_file.is_some() {
        bail!("tls_cert_file and tls_key_file go together: set both or neither");
    }
    if c.raft.snapshot_logs_since_last == 0 {
        bail!("raft.snapshot_logs_since_last must be positive");
    }
    if c.raft.max_term_jump == 0 || c.raft.max_snapshot_bytes == 0 {
        bail!("raft.max_term_jump and raft.max_snapshot_bytes must be positive");
    }
    if c.read_timeout_ms == 0 || c.write_timeout_ms == 0 {
        bail!("read_timeout_ms and write_timeout_ms must be positive");
    }
    if !(4096..=MAX_PACKET_CAP).contains(&c.max_allowed_packet) {
        bail!(
            "max_allowed_packet must be from 4096 to {MAX_PACKET_CAP} bytes (one MySQL packet), not {}",
            c.max_allowed_packet
        );
    }
    if c.connect_timeout_sec == 0 || c.max_connections == 0 {
        bail!("connect_timeout_sec and max_connections must be positive");
    }
    let l = &c.login;
    if l.delay_base_ms == 0 || l.delay_max_ms < l.delay_base_ms {
        bail!("login.delay_base_ms must be positive and at most login.delay_max_ms");
    }
    if l.max_wait_ms + l.user_delay_max_ms >= c.connect_timeout_sec * 1000 {
        bail!(
            "login.max_wait_ms + login.user_delay_max_ms must be less than connect_timeout_sec (a held login must fit in the handshake's time)"
        );
    }
    if l.failure_window_sec * 1000 < l.delay_max_ms {
        bail!("login.failure_window_sec must be at least login.delay_max_ms");
    }
    Ok(())
}

fn timing(c: &FileConfig) -> RaftTiming {
    RaftTiming {
        heartbeat_interval_ms: c.raft.heartbeat_interval_ms,
        election_timeout_min_ms: c.raft.election_timeout_min_ms,
        election_timeout_max_ms: c.raft.election_timeout_max_ms,
    }
}

impl FileConfig {
    /// root's password hash if this FE has one to offer: a password, or the empty password
    /// when `insecure = true`.
    pub fn root_password_hash(&self) -> Option<model::users::PasswordHash> {
        if !self.root_password.is_empty() {
            Some(roster_node::auth::hash_password(&self.root_password))
        } else if self.insecure {
            Some(None)
        } else {
            None
        }
    }

    /// An FE that may create the cluster (an initial member with no data yet) needs root's
    /// password: from the config, from ROSTER_ROOT_PASSWORD, or typed at a prompt.
    pub fn require_root_password(&mut self) -> anyhow::Result<()> {
        let first_start = !self.data_dir.join("raft").join("sm.redb").exists();
        let bootstraps = self
            .initial_members
            .iter()
            .any(|m| m.node_id == self.node_id);
        if !first_start || !bootstraps || self.root_password_hash().is_some() {
            return Ok(());
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            let p = rpassword::prompt_password("Password for the new cluster's root user: ")?;
            let again = rpassword::prompt_password("Again: ")?;
            if p != again {
                bail!("the two passwords differ");
            }
            if p.is_empty() {
                bail!(
                    "root's password must not be empty (set insecure = true for a throwaway cluster)"
                );
            }
            self.root_password = p;
            return Ok(());
        }
        bail!(
            "this FE creates a new cluster and needs root's password: set root_password in the config or \
             ROSTER_ROOT_PASSWORD (or insecure = true for an empty one)"
        )
    }

    pub fn node(&self) -> FeNode {
        FeNode {
            host: self.host.clone(),
            edit_log_port: self.edit_log_port,
            rpc_port: self.rpc_port,
            query_port: self.query_port,
            http_port: self.http_port,
        }
    }

    pub fn to_fe_config(&self) -> FeConfig {
        let initial_members: BTreeMap<FrontendId, FeNode> = self
            .initial_members
            .iter()
            .map(|m| {
                (
                    FrontendId(m.node_id),
                    FeNode {
                        host: m.host.clone(),
                        edit_log_port: m.edit_log_port,
                        rpc_port: m.rpc_port,
                        query_port: m.query_port,
                        http_port: m.http_port,
                    },
                )
            })
            .collect();
        FeConfig {
            id: FrontendId(self.node_id),
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("fe{}", self.node_id)),
            cluster_id: self.cluster_id.clone(),
            node: self.node(),
            data_dir: self.data_dir.clone(),
            initial_members,
            raft: timing(self),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            snapshot_logs_since_last: self.raft.snapshot_logs_since_last,
            max_in_snapshot_log_to_keep: self.raft.max_in_snapshot_log_to_keep,
            root_password: self.root_password_hash(),
            backend_source_ip: self.backend_source_ip,
            limits: ClientLimits {
                max_allowed_packet: self.max_allowed_packet,
                connect_timeout: Duration::from_secs(self.connect_timeout_sec),
                max_connections: self.max_connections,
                login: self.login.throttle(),
            },
            transport: roster_transport::tls::Transport::Insecure,
            cluster_token: None,
            raft_limits: RaftLimits {
                max_term_jump: self.raft.max_term_jump,
                max_snapshot_bytes: self.raft.max_snapshot_bytes,
            },
            min_free_disk_bytes: self.min_free_disk_bytes,
        }
    }

    /// The transport this FE uses: its certificates (checked: an FE certificate of this
    /// cluster's CA), or plaintext when insecure.
    pub fn transport(&self) -> anyhow::Result<roster_transport::tls::Transport> {
        let Some(dir) = &self.certs_dir else {
            return Ok(roster_transport::tls::Transport::Insecure);
        };
        let m = roster_certs::Material::load(dir, &roster_certs::Role::Fe)
            .with_context(|| format!("certs_dir {}", dir.display()))?;
        if m.identity.cluster_id != self.cluster_id {
            bail!(
                "certs_dir {}: the certificates are for cluster {:?}, this FE's cluster_id is {:?}",
                dir.display(),
                m.identity.cluster_id,
                self.cluster_id
            );
        }
        Ok(roster_transport::tls::Transport::secure(m))
    }

    /// The cluster token this FE sends to agents, checked.
    pub fn cluster_token(
        &self,
    ) -> anyhow::Result<Option<roster_transport::cluster_token::ClusterToken>> {
        self.cluster_token
            .as_deref()
            .map(roster_transport::cluster_token::ClusterToken::new)
            .transpose()
            .context("cluster_token")
    }

    /// Whether MySQL connections must use TLS.
    pub fn mysql_requires_tls(&self) -> bool {
        self.require_secure_transport
            .unwrap_or(self.certs_dir.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    /// Every shipped config loads and agrees with its peers on the initial members.
    #[test]
    fn shipped_configs_load() {
        let mut sets: BTreeMap<String, Vec<MemberSection>> = BTreeMap::new();
        let mut n = 0;
        for dir in [config_dir(), config_dir().join("five-node")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if !name.starts_with("fe") || !name.ends_with(".toml") {
                    continue;
                }
                let insecure = Overrides {
                    insecure: Some(true),
                    ..Overrides::default()
                };
                let c = load(&p, &insecure).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                n += 1;
                if !c.initial_members.is_empty() {
                    sets.entry(dir.display().to_string()).or_default();
                    let s = sets.get_mut(&dir.display().to_string()).unwrap();
                    if s.is_empty() {
                        *s = c.initial_members.clone();
                    }
                    assert_eq!(
                        s,
                        &c.initial_members,
                        "{} disagrees on initial_members",
                        p.display()
                    );
                }
            }
        }
        assert!(
            n >= 10,
            "expected fe1..fe5 and five-node/fe1..fe5, found {n}"
        );
    }

    #[test]
    fn every_file_key_is_known_to_the_env_filter() {
        let v = serde_json::to_value(FileConfig::default()).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), CONFIG_KEYS.len());
        for k in keys {
            assert!(
                CONFIG_KEYS.contains(&k.as_str()),
                "{k} missing from CONFIG_KEYS"
            );
        }
    }

    #[test]
    fn env_keys_match_config_keys_in_any_case() {
        assert!(names_config_key("ROOT_PASSWORD"));
        assert!(names_config_key("RAFT.HEARTBEAT_INTERVAL_MS"));
        assert!(names_config_key("query_port"));
        // Read by other subcommands from the same shell.
        assert!(!names_config_key("PASSWORD"));
        assert!(!names_config_key("ENDPOINTS"));
        assert!(!names_config_key("RAFTY.X"));
    }

    #[test]
    fn unknown_keys_and_bad_timing_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, "node_id = 1\ncluster_id = \"c\"\ncolour = \"red\"\n").unwrap();
        let e = format!("{:#}", load(&p, &Overrides::default()).unwrap_err());
        assert!(e.contains("colour"), "{e}");
        std::fs::write(&p, "node_id = 1\n[raft]\nheartbeat_interval_ms = 500\nelection_timeout_min_ms = 900\nelection_timeout_max_ms = 2000\n").unwrap();
        let e = format!("{:#}", load(&p, &Overrides::default()).unwrap_err());
        assert!(e.contains("more than twice"), "{e}");
    }
}
