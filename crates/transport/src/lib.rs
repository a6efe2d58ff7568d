//! How Roster's processes meet on the network: TLS transport and peer roles from certificates,
//! the insecure mode's cluster token, the accept loop every port uses, and what a failed call
//! says about whether the peer saw it.

pub mod accept;
pub mod cluster_token;
pub mod ratelog;
pub mod tls;

/// True when tonic failed before the request could have reached the peer (a refused or failed
/// connection, or a drained FE's refusal), so sending it elsewhere cannot apply it twice.
pub fn never_sent(status: &tonic::Status) -> bool {
    roster_proto::status::is_draining_refusal(status)
        || (status.code() == tonic::Code::Unavailable && {
            let m = status.message().to_ascii_lowercase();
            m.contains("connect") || m.contains("refused")
        })
}
