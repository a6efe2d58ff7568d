//! The cluster token of insecure mode: a shared secret every FE sends on each call to an agent
//! (and an agent on its calls to other agents, for clones), as gRPC metadata
//! `x-roster-cluster-token`. An insecure agent obeys only callers that send it.
//!
//! Without TLS the token proves membership of the cluster, not the caller's role: whoever holds
//! it (an FE or an agent) may make any call an FE may. In secure mode the certificates decide
//! who may call (see `tls`), and agents ignore the token.

use roster_proto::pb::backend::backend_agent_client::BackendAgentClient;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The gRPC metadata key the token travels under.
pub const METADATA_KEY: &str = "x-roster-cluster-token";
/// Shortest token accepted: short enough to type, too long to guess.
pub const MIN_LEN: usize = 16;

/// A token that failed validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the cluster token is {len} characters long; it needs at least {MIN_LEN}")]
    TooShort { len: usize },
    #[error(
        "the cluster token may hold only printable ASCII without spaces (character {at} is not)"
    )]
    BadChar { at: usize },
}

/// The shared secret of an insecure cluster. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct ClusterToken(Arc<str>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(<hidden>)")
    }
}

impl ClusterToken {
    /// A token as given in a config or on a command line (sent as an ASCII metadata value).
    pub fn new(s: &str) -> Result<ClusterToken, TokenError> {
        if let Some(at) = s.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(TokenError::BadChar { at: at + 1 });
        }
        if s.len() < MIN_LEN {
            return Err(TokenError::TooShort { len: s.len() });
        }
        Ok(ClusterToken(s.into()))
    }

    /// A fresh random token (32 hex digits): for playgrounds and tests.
    pub fn random() -> ClusterToken {
        let bytes: [u8; 16] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ClusterToken(hex.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Put the token on an outgoing call.
    pub fn attach<T>(&self, req: &mut Request<T>) {
        let v = self.0.parse().expect("validated: printable ASCII");
        req.metadata_mut().insert(METADATA_KEY, v);
    }

    /// Admit a call only if it carries this token. The comparison takes the same time wherever
    /// the first wrong byte is (only the length may show), so the token cannot be found byte by
    /// byte from the answers' timing.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(got) = req.metadata().get(METADATA_KEY) else {
            return Err(Status::unauthenticated(format!(
                "this agent runs insecure and obeys only holders of the cluster token: send it as \
                 gRPC metadata {METADATA_KEY} (an FE: cluster_token in its config; an agent: \
                 --cluster-token)"
            )));
        };
        if bool::from(got.as_bytes().ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(Status::unauthenticated(format!(
                "wrong cluster token in {METADATA_KEY}: the caller is not of this agent's cluster"
            )))
        }
    }
}

/// Adds the token (if any) to every call of a client.
#[derive(Debug, Clone, Default)]
pub struct AttachToken(Option<ClusterToken>);

impl Interceptor for AttachToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            t.attach(&mut req);
        }
        Ok(req)
    }
}

/// A client of an agent that sends the cluster token on every call.
pub type AgentClient = BackendAgentClient<InterceptedService<Channel, AttachToken>>;

pub fn agent_client(channel: Channel, token: Option<&ClusterToken>) -> AgentClient {
    BackendAgentClient::with_interceptor(channel, AttachToken(token.cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_hides() {
        assert_eq!(
            ClusterToken::new("short").unwrap_err(),
            TokenError::TooShort { len: 5 }
        );
        assert_eq!(
            ClusterToken::new("0123456789 abcdef").unwrap_err(),
            TokenError::BadChar { at: 11 }
        );
        let t = ClusterToken::new("0123456789abcdef").unwrap();
        assert!(!format!("{t:?}").contains("0123"));
        assert_eq!(ClusterToken::random().as_str().len(), 32);
    }

    #[test]
    fn checks_the_metadata() {
        let t = ClusterToken::new("0123456789abcdef").unwrap();
        let mut ok = Request::new(());
        t.attach(&mut ok);
        assert!(t.check(&ok).is_ok());
        let none = Request::new(());
        let e = t.check(&none).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains(METADATA_KEY), "{}", e.message());
        let mut wrong = Request::new(());
        ClusterToken::new("0123456789abcdeX")
            .unwrap()
            .attach(&mut wrong);
        let e = t.check(&wrong).unwrap_err();
        assert!(
            e.message().contains("wrong cluster token"),
            "{}",
            e.message()
        );
    }
}
