//! Versioned bincode: every blob stored on disk or sent between FEs starts with a format byte,
//! so a future format can be told apart from this one.

use serde::{Serialize, de::DeserializeOwned};
use std::io;

/// The only format so far: bincode 1.3 with its default options.
pub const FORMAT_V1: u8 = 1;

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
