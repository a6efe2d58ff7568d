//! Cluster-wide settings (SPEC section 6), replicated through Raft. Every key has a type and a
//! default; setting an unknown key or a bad value is refused and changes nothing.

use crate::model::error::DomainError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The type of a setting's value, used to validate `ADMIN SET FRONTEND CONFIG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// A non-negative integer.
    U64,
    /// A non-negative finite number.
    F64,
}

/// Every setting: name, kind, default (as text), one-line description.
pub const SETTINGS: &[(&str, Kind, &str, &str)] = &[
    (
        "drop_backend_after_decommission",
        Kind::Bool,
        "true",
        "drop a backend once it is DECOMMISSIONED",
    ),
    (
        "max_clone_task_timeout_sec",
        Kind::U64,
        "7200",
        "upper bound of a clone's timeout",
    ),
    (
        "min_clone_task_timeout_sec",
        Kind::U64,
        "180",
        "lower bound of a clone's timeout",
    ),
    (
        "black_host_history_sec",
        Kind::U64,
        "120",
        "window of connection failures kept for AUTO blacklist entries",
    ),
    (
        "black_host_connect_failures_within_time",
        Kind::U64,
        "5",
        "failures in the window that keep an AUTO entry",
    ),
    (
        "disable_backend_black_list",
        Kind::Bool,
        "false",
        "stop AUTO blacklisting on every FE (MANUAL entries still apply)",
    ),
    (
        "heartbeat_interval_second",
        Kind::U64,
        "5",
        "how often the master heartbeats each backend",
    ),
    (
        "max_backend_heartbeat_failure_tolerance_count",
        Kind::U64,
        "1",
        "consecutive failures before a backend is dead",
    ),
    (
        "tablet_repair_delay_second",
        Kind::U64,
        "60",
        "how long a replica on a dead backend waits before repair",
    ),
    (
        "clone_send_slots_per_backend",
        Kind::U64,
        "1",
        "concurrent clones a backend sends",
    ),
    (
        "clone_recv_slots_per_backend",
        Kind::U64,
        "1",
        "concurrent clones a backend receives",
    ),
    (
        "clone_rate_limit_bytes_per_sec",
        Kind::U64,
        "0",
        "per-stream clone rate limit, 0 = unlimited",
    ),
    (
        "disable_balance",
        Kind::Bool,
        "false",
        "stop balancing replicas",
    ),
    (
        "disable_tablet_scheduler",
        Kind::Bool,
        "false",
        "stop the whole tablet scheduler: new moves and decommission completion",
    ),
    (
        "balance_load_score_threshold",
        Kind::F64,
        "0.1",
        "allowed spread of replica counts within a tag",
    ),
    (
        "catalog_trash_expire_second",
        Kind::U64,
        "86400",
        "how long dropped tables stay in the recycle bin",
    ),
];

/// Current values; absent keys take their default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    overrides: BTreeMap<String, String>,
}

fn spec(key: &str) -> Option<&'static (&'static str, Kind, &'static str, &'static str)> {
    SETTINGS.iter().find(|s| s.0.eq_ignore_ascii_case(key))
}

fn normalize(kind: Kind, key: &str, value: &str) -> Result<String, DomainError> {
    let bad = |reason: &str| DomainError::InvalidSetting {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let v = value.trim();
    match kind {
        Kind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err(bad("expected true or false")),
        },
        Kind::U64 => v
            .parse::<u64>()
            .map(|n| n.to_string())
            .map_err(|_| bad("expected a non-negative integer")),
        Kind::F64 => match v.parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => Ok(f.to_string()),
            _ => Err(bad("expected a non-negative number")),
        },
    }
}

impl Settings {
    /// Validate without changing anything; returns the canonical key and value.
    pub fn validate(key: &str, value: &str) -> Result<(String, String), DomainError> {
        let (name, kind, _, _) =
            spec(key).ok_or_else(|| DomainError::UnknownSetting(key.to_string()))?;
        Ok((name.to_string(), normalize(*kind, name, value)?))
    }

    /// Set several keys atomically: all valid, or nothing changes.
    pub fn set_all(&mut self, pairs: &[(String, String)]) -> Result<(), DomainError> {
        let mut next = self.clone();
        for (k, v) in pairs {
            let (k, v) = Self::validate(k, v)?;
            next.overrides.insert(k, v);
        }
        let min = next.u64("min_clone_task_timeout_sec");
        let max = next.u64("max_clone_task_timeout_sec");
        if min > max {
            return Err(DomainError::InvalidSetting {
                key: "min_clone_task_timeout_sec".into(),
                value: min.to_string(),
                reason: format!("must not exceed max_clone_task_timeout_sec ({max})"),
            });
        }
        *self = next;
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let (name, _, default, _) = spec(key)?;
        Some(
            self.overrides
                .get(*name)
                .cloned()
                .unwrap_or_else(|| default.to_string()),
        )
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn bool(&self, key: &str) -> bool {
        self.get(key).as_deref() == Some("true")
    }

    /// (name, value, default, description) for every setting, in declaration order.
    pub fn list(&self) -> Vec<(&'static str, String, &'static str, &'static str)> {
        SETTINGS
            .iter()
            .map(|(n, _, d, desc)| (*n, self.get(n).unwrap_or_default(), *d, *desc))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let mut s = Settings::default();
        assert_eq!(s.u64("max_clone_task_timeout_sec"), 7200);
        assert!(s.bool("drop_backend_after_decommission"));
        let before = s.clone();
        let err = s.set_all(&[
            ("disable_balance".into(), "true".into()),
            ("nope".into(), "1".into()),
        ]);
        assert!(matches!(err, Err(DomainError::UnknownSetting(_))));
        assert_eq!(s, before, "a refused batch changes nothing");
        assert!(
            s.set_all(&[("heartbeat_interval_second".into(), "-1".into())])
                .is_err()
        );
        assert!(
            s.set_all(&[("min_clone_task_timeout_sec".into(), "9000".into())])
                .is_err()
        );
        s.set_all(&[("DISABLE_BALANCE".into(), "TRUE".into())])
            .unwrap();
        assert!(s.bool("disable_balance"));
    }
}
