//! Meanings carried in gRPC status metadata, which the server sets and clients read.

/// What a drained FE answers to new client work.
pub const DRAINING_MESSAGE: &str = "this frontend is draining; use another frontend";

/// The gRPC metadata key (value `draining`) of a refusal by a drained FE: the request did
/// nothing, so the client library may send it to another endpoint, writes included.
pub const REFUSED_KEY: &str = "roster-refused";

/// The status a drained FE answers gRPC client calls with.
pub fn draining_status() -> tonic::Status {
    let mut s = tonic::Status::unavailable(DRAINING_MESSAGE);
    s.metadata_mut().insert(
        REFUSED_KEY,
        tonic::metadata::MetadataValue::from_static("draining"),
    );
    s
}

/// Whether `status` is a drained FE's refusal.
pub fn is_draining_refusal(status: &tonic::Status) -> bool {
    status
        .metadata()
        .get(REFUSED_KEY)
        .is_some_and(|v| v == "draining")
}
