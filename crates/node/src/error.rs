//! The FE's one error type, and the one place that maps it to each wire: `to_pb` for gRPC
//! (whose `retryable` and `outcome` drive the client library), `mysql_code` and
//! `mysql_message` for MySQL error packets (Doris's text), `http_status` for the HTTP API.

use roster_membership::DomainError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApiError {
    /// The statement does not parse; the text says where.
    #[error("{0}")]
    Parse(String),
    /// The cluster refused the request; nothing changed.
    #[error("{0}")]
    Refused(DomainError),
    /// Login failed, or the user lacks the privilege for the statement.
    #[error("{0}")]
    AccessDenied(String),
    /// The request is well-formed but not valid now (wrong role, unknown frontend, ...).
    #[error("{0}")]
    Invalid(String),
    /// This FE is not the leader (retry there).
    #[error("this frontend is not the leader{}", leader_rpc_addr.as_ref().map(|a| format!("; the leader is at {a}")).unwrap_or_default())]
    NotLeader { leader_rpc_addr: Option<String> },
    /// No leader or no answer in time; the request was not carried out.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The request may or may not have taken effect.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Login refused without a check: too many failed logins from this source (MySQL 1129).
    #[error("{0}")]
    Throttled(String),
    /// The statement is longer than `max_allowed_packet`; refused before parsing (MySQL 1153).
    #[error("{0}")]
    TooLarge(String),
}

impl ApiError {
    /// Safe to send again: the request was certainly not carried out. Exhaustive, so a new
    /// variant must say whether it may be retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::NotLeader { .. } | ApiError::Unavailable(_) => true,
            ApiError::Parse(_)
            | ApiError::Refused(_)
            | ApiError::AccessDenied(_)
            | ApiError::Invalid(_)
            | ApiError::Unknown(_)
            | ApiError::Internal(_)
            | ApiError::Throttled(_)
            | ApiError::TooLarge(_) => false,
        }
    }

    /// The request may have taken effect: never reported as failed, never retried blindly.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ApiError::Unknown(_) => true,
            ApiError::Parse(_)
            | ApiError::Refused(_)
            | ApiError::AccessDenied(_)
            | ApiError::Invalid(_)
            | ApiError::NotLeader { .. }
            | ApiError::Unavailable(_)
            | ApiError::Internal(_)
            | ApiError::Throttled(_)
            | ApiError::TooLarge(_) => false,
        }
    }

    /// The MySQL error number a client sees (1105 for Doris-style errors).
    pub fn mysql_code(&self) -> u16 {
        match self {
            ApiError::Throttled(_) => 1129,
            ApiError::TooLarge(_) => 1153,
            ApiError::Parse(_)
            | ApiError::Refused(_)
            | ApiError::AccessDenied(_)
            | ApiError::Invalid(_)
            | ApiError::NotLeader { .. }
            | ApiError::Unavailable(_)
            | ApiError::Unknown(_)
            | ApiError::Internal(_) => 1105,
        }
    }

    /// Doris's form: `errCode = 2, detailMessage = ...` (sent with MySQL error 1105, HY000).
    pub fn mysql_message(&self) -> String {
        format!("errCode = 2, detailMessage = {self}")
    }

    /// The error as gRPC answers carry it: the MySQL code and text, whether it may be retried,
    /// and whether its outcome is unknown.
    pub fn to_pb(&self) -> roster_proto::pb::v1::Error {
        use roster_proto::pb::v1::Outcome;
        roster_proto::pb::v1::Error {
            code: self.mysql_code().into(),
            message: self.mysql_message(),
            retryable: self.is_retryable(),
            outcome: if self.outcome_unknown() {
                Outcome::Unknown
            } else {
                Outcome::NotApplied
            } as i32,
        }
    }

    /// The HTTP API's status for this error (the login's own 401 is the HTTP door's).
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::AccessDenied(_) => 403,
            ApiError::Unavailable(_) | ApiError::NotLeader { .. } | ApiError::Unknown(_) => 503,
            ApiError::Parse(_)
            | ApiError::Invalid(_)
            | ApiError::Refused(_)
            | ApiError::TooLarge(_) => 400,
            ApiError::Throttled(_) => 429,
            ApiError::Internal(_) => 500,
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::Refused(e)
    }
}
