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

/// A Rust type a setting may have.
trait SettingType: Sized {
    const KIND: Kind;
    fn parse(text: &str) -> Option<Self>;
}

impl SettingType for bool {
    const KIND: Kind = Kind::Bool;
    fn parse(text: &str) -> Option<bool> {
        text.parse().ok()
    }
}

impl SettingType for u64 {
    const KIND: Kind = Kind::U64;
    fn parse(text: &str) -> Option<u64> {
        text.parse().ok()
    }
}

impl SettingType for f64 {
    const KIND: Kind = Kind::F64;
    fn parse(text: &str) -> Option<f64> {
        text.parse().ok()
    }
}

/// Declares every setting once: its name, type, default and description become the table
/// `SETTINGS` (for SHOW and validation) and a field of `Values` (for code, so a misspelt
/// name does not compile).
macro_rules! settings {
    ($( #[doc = $desc:literal] $name:ident : $ty:ty = $default:literal; )*) => {
        /// Every setting: name, kind, default (as text), one-line description.
        pub const SETTINGS: &[(&str, Kind, &str, &str)] = &[
            $( (stringify!($name), <$ty as SettingType>::KIND, $default, $desc.trim_ascii()), )*
        ];

        /// Every setting's current value, typed.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Values {
            $( #[doc = $desc] pub $name: $ty, )*
        }

        impl Values {
            /// Values from stored text. Stored values were validated when set; one that no
            /// longer parses (it cannot) would read as its default.
            fn from_overrides(overrides: &BTreeMap<String, String>) -> Values {
                Values {
                    $( $name: overrides
                        .get(stringify!($name))
                        .and_then(|v| <$ty as SettingType>::parse(v))
                        .or_else(|| <$ty as SettingType>::parse($default))
                        .unwrap_or_default(), )*
                }
            }
        }
    };
}

settings! {
    /// drop a backend once it is DECOMMISSIONED
    drop_backend_after_decommission: bool = "true";
    /// upper bound of a clone's timeout
    max_clone_task_timeout_sec: u64 = "7200";
    /// lower bound of a clone's timeout
    min_clone_task_timeout_sec: u64 = "180";
    /// window of connection failures kept for AUTO blacklist entries
    black_host_history_sec: u64 = "120";
    /// failures in the window that keep an AUTO entry
    black_host_connect_failures_within_time: u64 = "5";
    /// stop AUTO blacklisting on every FE (MANUAL entries still apply)
    disable_backend_black_list: bool = "false";
    /// how often the master heartbeats each backend
    heartbeat_interval_second: u64 = "5";
    /// consecutive failures before a backend is dead
    max_backend_heartbeat_failure_tolerance_count: u64 = "1";
    /// how long a replica on a dead backend waits before repair
    tablet_repair_delay_second: u64 = "60";
    /// concurrent clones a backend sends
    clone_send_slots_per_backend: u64 = "1";
    /// concurrent clones a backend receives
    clone_recv_slots_per_backend: u64 = "1";
    /// per-stream clone rate limit, 0 = unlimited
    clone_rate_limit_bytes_per_sec: u64 = "0";
    /// stop balancing replicas
    disable_balance: bool = "false";
    /// stop the whole tablet scheduler: new moves and decommission completion
    disable_tablet_scheduler: bool = "false";
    /// allowed spread of replica counts within a tag
    balance_load_score_threshold: f64 = "0.1";
    /// how long dropped tables stay in the recycle bin
    catalog_trash_expire_second: u64 = "86400";
}

/// What is stored and replicated: the values set, as canonical text; absent keys take their
/// default. A new setting needs no change of format.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    overrides: BTreeMap<String, String>,
}

/// Current values: the stored text, and the typed values read from it once per change (the
/// planner asks for them per backend and tablet).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct Settings {
    overrides: BTreeMap<String, String>,
    values: Values,
}

impl From<Stored> for Settings {
    fn from(s: Stored) -> Settings {
        Settings {
            values: Values::from_overrides(&s.overrides),
            overrides: s.overrides,
        }
    }
}

impl From<Settings> for Stored {
    fn from(s: Settings) -> Stored {
        Stored {
            overrides: s.overrides,
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from(Stored::default())
    }
}

/// Equal when the same values are set (the typed values follow from them).
impl PartialEq for Settings {
    fn eq(&self, other: &Settings) -> bool {
        self.overrides == other.overrides
    }
}

impl Eq for Settings {}

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
    /// Every setting's current value, typed.
    pub fn values(&self) -> &Values {
        &self.values
    }

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
        next.values = Values::from_overrides(&next.overrides);
        let v = next.values();
        let (min, max) = (v.min_clone_task_timeout_sec, v.max_clone_task_timeout_sec);
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
        assert_eq!(s.values().max_clone_task_timeout_sec, 7200);
        assert!(s.values().drop_backend_after_decommission);
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
        assert!(s.values().disable_balance);
    }

    #[test]
    fn every_default_and_every_accepted_value_reads_as_its_type() {
        for (name, kind, default, _) in SETTINGS {
            let (_, canonical) = Settings::validate(name, default).unwrap();
            assert_eq!(&canonical, default, "{name}: the default is canonical");
            let readable = match kind {
                Kind::Bool => bool::parse(default).is_some(),
                Kind::U64 => u64::parse(default).is_some(),
                Kind::F64 => f64::parse(default).is_some(),
            };
            assert!(readable, "{name}");
        }
        let mut s = Settings::default();
        s.set_all(&[
            ("heartbeat_interval_second".into(), " 7 ".into()),
            ("balance_load_score_threshold".into(), "0.25".into()),
        ])
        .unwrap();
        let v = s.values();
        assert_eq!(v.heartbeat_interval_second, 7);
        assert_eq!(v.balance_load_score_threshold, 0.25);
        assert_eq!(s.get("heartbeat_interval_second").as_deref(), Some("7"));
    }
}
