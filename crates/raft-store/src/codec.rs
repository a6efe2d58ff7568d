//! Versioned bincode: every blob stored on disk or sent between FEs starts with a format byte,
//! so a future format can be told apart from this one.

use serde::{Serialize, de::DeserializeOwned};
use std::io;

/// bincode 1.3 with its default options.
pub const FORMAT_V1: u8 = 1;
/// The same bincode, for the values whose shape grew since format 1: tombstone rows and the
/// snapshot of the whole state (a tombstone keeps its decommission, `legacy`). Their readers
/// take format 1 through the old shape; `decode` refuses format 2, so a grown value is never
/// read as an old one.
pub const FORMAT_V2: u8 = 2;

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_V1];
    bincode::serialize_into(&mut out, value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => {
            bincode::deserialize(rest).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Some((v, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown blob format {v}"),
        )),
        None => Err(io::Error::new(io::ErrorKind::InvalidData, "empty blob")),
    }
}

/// Encode a value whose shape grew since format 1 (see `FORMAT_V2`).
pub fn encode_v2<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_V2];
    bincode::serialize_into(&mut out, value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(out)
}

/// Decode a value written by `encode_v2`, or written in format 1 in its old shape `Old`.
pub fn decode_v2<T: DeserializeOwned, Old: DeserializeOwned + Into<T>>(
    bytes: &[u8],
) -> io::Result<T> {
    let bad = |e| io::Error::new(io::ErrorKind::InvalidData, e);
    match bytes.split_first() {
        Some((&FORMAT_V2, rest)) => bincode::deserialize(rest).map_err(bad),
        Some((&FORMAT_V1, rest)) => bincode::deserialize::<Old>(rest)
            .map(Into::into)
            .map_err(bad),
        _ => decode(bytes),
    }
}
