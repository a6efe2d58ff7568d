//! How Roster's processes meet on the network: TLS transport and peer roles from certificates,
//! the insecure mode's cluster token, the accept loop every port uses, and what a failed call
//! says about whether the peer saw it.

pub mod accept;
pub mod cluster_token;
pub mod http2;
pub mod ratelog;
pub mod tls;

/// True when the call failed before the request could have reached the peer, so sending it
/// elsewhere cannot apply it twice: the connection was never made (`tonic::ConnectError`:
/// refused, timed out, TLS handshake failed), the peer refused the stream before processing it
/// (HTTP/2 REFUSED_STREAM), or a drained FE refused the work. Decided from the error's types,
/// never from its text; anything else may have been applied.
pub fn never_sent(status: &tonic::Status) -> bool {
    if roster_proto::status::is_draining_refusal(status) {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cause {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::never_sent;
    use roster_proto::pb::backend::HeartbeatRequest;
    use roster_proto::pb::backend::backend_agent_client::BackendAgentClient;
    use std::time::Duration;

    async fn call(addr: String) -> tonic::Status {
        let channel = tonic::transport::Endpoint::from_shared(addr)
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        BackendAgentClient::new(channel)
            .heartbeat(HeartbeatRequest::default())
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_refused_connection_was_never_sent() {
        // A port bound and closed again: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(never_sent(&call(format!("http://127.0.0.1:{port}")).await));
    }

    #[tokio::test]
    async fn a_connection_closed_after_the_request_may_have_been_applied() {
        // A peer that accepts, reads what the client sends, then hangs up without answering.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
        });
        let s = call(format!("http://{addr}")).await;
        assert!(!never_sent(&s), "{s:?}");
    }

    #[test]
    fn words_alone_decide_nothing() {
        assert!(!never_sent(&tonic::Status::unavailable(
            "tcp connect error: connection refused"
        )));
        assert!(never_sent(&roster_proto::status::draining_status()));
    }
}
