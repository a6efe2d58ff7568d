//! What one client may send and hold: statement size (`max_allowed_packet`), the handshake's
//! time (`connect_timeout`), open MySQL connections (`max_connections`), and the login throttle.

use crate::error::ApiError;
use crate::login_throttle::ThrottleConfig;
use std::time::Duration;

/// The largest `max_allowed_packet` allowed: one MySQL packet (a longer statement would span
/// several, which we never need to reassemble).
pub const MAX_PACKET_CAP: usize = 0xFF_FFFF - 1;

/// Bytes a gRPC request may carry besides its statement (user, password, framing).
pub const GRPC_ENVELOPE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// Longest statement (bytes) on any port; longer ones are refused before they are parsed,
    /// buffered whole, or proposed.
    pub max_allowed_packet: usize,
    /// How long a MySQL client has from connecting to being logged in.
    pub connect_timeout: Duration,
    /// Open MySQL connections; one more is answered with error 1040 and closed.
    pub max_connections: usize,
    pub login: ThrottleConfig,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_allowed_packet: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_connections: 1024,
            login: ThrottleConfig::default(),
        }
    }
}

impl ClientLimits {
    /// The largest gRPC request the client service decodes.
    pub fn grpc_max_request_bytes(&self) -> usize {
        self.max_allowed_packet + GRPC_ENVELOPE_BYTES
    }

    /// Refuse a statement of `len` bytes over the limit, before anything else looks at it.
    pub fn check_statement(&self, len: usize) -> Result<(), ApiError> {
        if len > self.max_allowed_packet {
            Err(too_large(len, self.max_allowed_packet))
        } else {
            Ok(())
        }
    }
}

/// MySQL's words for it (ER_NET_PACKET_TOO_LARGE), with the sizes.
pub fn too_large(len: usize, limit: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "Got a packet bigger than 'max_allowed_packet' bytes: the statement has {len} bytes, the limit is {limit} (FE config max_allowed_packet)"
    ))
}
