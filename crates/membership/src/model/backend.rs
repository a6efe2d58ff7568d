//! The backend record: address, tags, and the three separate fields of its lifecycle
//! (membership, admin flags, liveness), as CockroachDB learned to keep them apart.

use crate::model::ids::BackendId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// A `host:port` address. IPv6 hosts are stored without brackets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostPort {
            host: host.into(),
            port,
        }
    }

    /// The same address with the host in lower case: how backends are registered and found
    /// (host names are case-insensitive).
    pub fn lowercased(&self) -> HostPort {
        HostPort::new(self.host.to_ascii_lowercase(), self.port)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a string is not a valid `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("expected \"host:port\"")]
    NotHostPort,
    #[error("empty host")]
    EmptyHost,
    #[error("invalid host")]
    BadHost,
    #[error("IPv6 addresses need brackets, e.g. \"[::1]:9050\"")]
    UnbracketedIpv6,
    #[error("invalid port")]
    BadPort,
}

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or(AddrError::NotHostPort)?;
            let port = after.strip_prefix(':').ok_or(AddrError::NotHostPort)?;
            if host.is_empty() {
                return Err(AddrError::EmptyHost);
            }
            host.parse::<Ipv6Addr>().map_err(|_| AddrError::BadHost)?;
            (host, port)
        } else {
            let (host, port) = s.split_once(':').ok_or(AddrError::NotHostPort)?;
            if port.contains(':') {
                return Err(AddrError::UnbracketedIpv6);
            }
            if host.is_empty() {
                return Err(AddrError::EmptyHost);
            }
            let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
            if !host.chars().all(host_char) {
                return Err(AddrError::BadHost);
            }
            (host, port)
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AddrError::BadPort);
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(AddrError::BadPort)?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

/// How a statement names a backend: `"10002"` or `"host:heartbeat_port"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendRef {
    Id(BackendId),
    Addr(HostPort),
}

impl BackendRef {
    /// The same reference with a host name in lower case, as the registry finds backends.
    pub fn lowercased(&self) -> BackendRef {
        match self {
            BackendRef::Id(id) => BackendRef::Id(*id),
            BackendRef::Addr(a) => BackendRef::Addr(a.lowercased()),
        }
    }
}

impl fmt::Display for BackendRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendRef::Id(id) => write!(f, "{id}"),
            BackendRef::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// ACTIVE -> DECOMMISSIONING -> DECOMMISSIONED; CANCEL returns DECOMMISSIONING -> ACTIVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendMembership {
    Active,
    Decommissioning,
    Decommissioned,
}

impl BackendMembership {
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendMembership::Active => "ACTIVE",
            BackendMembership::Decommissioning => "DECOMMISSIONING",
            BackendMembership::Decommissioned => "DECOMMISSIONED",
        }
    }
}

/// One change of MODIFY BACKEND ... SET, as parsed when the statement is planned
/// (`query::backends::parse_modify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendChange {
    Location(String),
    DisableQuery(bool),
    DisableLoad(bool),
    /// `is_draining` (`roster node drain`): both disables at once, remembering the old ones.
    Draining(bool),
}

/// Placement tags (Doris `tag.*` properties).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    pub location: String,
    pub compute_group_name: Option<String>,
    pub public_endpoint: Option<String>,
    pub private_endpoint: Option<String>,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            location: "default".to_string(),
            compute_group_name: None,
            public_endpoint: None,
            private_endpoint: None,
        }
    }
}

impl Tags {
    /// Tag values: 1-128 letters, digits, '_', '-', '.', ':' or '/'.
    pub fn is_valid(value: &str) -> bool {
        !value.is_empty()
            && value.len() <= 128
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
    }

    /// The Tag column of SHOW BACKENDS, in Doris's JSON shape.
    pub fn to_json(&self) -> String {
        let mut parts = vec![format!("\"location\" : \"{}\"", self.location)];
        if let Some(v) = &self.compute_group_name {
            parts.push(format!("\"compute_group_name\" : \"{v}\""));
        }
        if let Some(v) = &self.public_endpoint {
            parts.push(format!("\"public_endpoint\" : \"{v}\""));
        }
        if let Some(v) = &self.private_endpoint {
            parts.push(format!("\"private_endpoint\" : \"{v}\""));
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// What the master last learned from heartbeats. Only changes go through Raft.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub alive: bool,
    pub last_heartbeat_ms: Option<u64>,
    pub last_start_time_ms: Option<u64>,
    pub heartbeat_failure_counter: u64,
    pub err_msg: String,
    pub version: String,
    pub be_port: Option<u16>,
    pub http_port: Option<u16>,
    pub brpc_port: Option<u16>,
    pub total_capacity_bytes: u64,
    pub avail_capacity_bytes: u64,
    pub data_used_capacity_bytes: u64,
    /// Leader-stamped time the backend was recorded dead (repair waits from here).
    pub dead_since_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub id: BackendId,
    pub addr: HostPort,
    pub tags: Tags,
    pub membership: BackendMembership,
    pub disable_query: bool,
    pub disable_load: bool,
    /// Leader-stamped time of ADD BACKEND.
    pub added_at_ms: u64,
    /// Leader-stamped time of the current decommission, if any.
    pub decommission_started_ms: Option<u64>,
    /// What the current decommission has to move and has moved (SHOW DECOMMISSION).
    pub drain: DrainProgress,
    pub liveness: Liveness,
    /// Set while the backend is drained (`roster node drain`); see `node_drain`.
    pub draining: Option<Draining>,
}

impl Backend {
    /// Where other agents pull this backend's replicas from: `host:be_port` as its heartbeats
    /// report it, or the heartbeat port before the first one (the agent serves both).
    pub fn data_addr(&self) -> HostPort {
        HostPort::new(
            self.addr.host.clone(),
            self.liveness.be_port.unwrap_or(self.addr.port),
        )
    }
}

/// Which admin flags a drain turned on, so that undrain turns off only those: a flag the
/// operator had set before the drain, or set during it, stays as the operator left it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draining {
    pub set_disable_query: bool,
    pub set_disable_load: bool,
}

/// A decommission's totals, fixed when it starts, and what finished moves have carried off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainProgress {
    pub tablets_total: u64,
    pub bytes_total: u64,
    pub tablets_moved: u64,
    pub bytes_moved: u64,
}

/// What remains of a dropped backend: its id is never reused and statements naming it say so.
/// A backend the master dropped after draining it keeps its decommission, so that re-running
/// DECOMMISSION succeeds and `roster node status` still lists it (the CockroachDB runbook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub id: BackendId,
    pub addr: HostPort,
    pub dropped_at_ms: u64,
    /// `None`: removed by DROPP BACKEND, its data abandoned.
    pub decommission: Option<FinishedDecommission>,
}

/// A decommission the master finished: when it started and what it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedDecommission {
    pub started_ms: Option<u64>,
    pub drain: DrainProgress,
}

#[cfg(test)]
mod addr_tests {
    use super::*;

    fn hp(s: &str) -> Result<HostPort, AddrError> {
        s.parse()
    }

    #[test]
    fn accepts_names_ipv4_and_bracketed_ipv6() {
        let ok = |host: &str, port| {
            Ok(HostPort {
                host: host.to_string(),
                port,
            })
        };
        assert_eq!(hp("be-1.example_x:9050"), ok("be-1.example_x", 9050));
        assert_eq!(hp("10.0.0.1:65535"), ok("10.0.0.1", 65535));
        assert_eq!(hp("[::1]:1"), ok("::1", 1));
        assert_eq!(hp("h:09050"), ok("h", 9050));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(hp("abc"), Err(AddrError::NotHostPort));
        assert_eq!(hp(""), Err(AddrError::NotHostPort));
        assert_eq!(hp("[::1]"), Err(AddrError::NotHostPort));
        assert_eq!(hp(":1"), Err(AddrError::EmptyHost));
        assert_eq!(hp("[]:1"), Err(AddrError::EmptyHost));
        assert_eq!(hp("[zz]:1"), Err(AddrError::BadHost));
        assert_eq!(hp("a b:1"), Err(AddrError::BadHost));
        assert_eq!(hp("::1:9050"), Err(AddrError::UnbracketedIpv6));
        assert_eq!(hp("h:"), Err(AddrError::BadPort));
        assert_eq!(hp("h:0"), Err(AddrError::BadPort));
        assert_eq!(hp("h:65536"), Err(AddrError::BadPort));
        assert_eq!(hp("h:+1"), Err(AddrError::BadPort));
    }

    #[test]
    fn display_brackets_ipv6_only() {
        assert_eq!(hp("[fe80::1]:9010").unwrap().to_string(), "[fe80::1]:9010");
        assert_eq!(hp("h:9010").unwrap().to_string(), "h:9010");
    }
}
