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
        Some((&v, _)) if v > FORMAT_V2 && v != SEALED => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob format {v} is newer than this build reads (formats up to {FORMAT_V2}): \
                 written by a newer Roster"
            ),
        )),
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

/// The first byte of a sealed blob: `SEALED`, the CRC-32 of (context, blob) in 4 little-endian
/// bytes, then the blob (which starts with its own format byte). Chosen at bit distance 3 and 5
/// from formats 1 and 2, so one flipped bit cannot make a sealed row look like an old one.
pub const SEALED: u8 = 0xC5;
const SEAL_HEADER: usize = 5;

/// What a seal covers besides the blob: the file's table and the row's key, so a value moved to
/// another key (a flipped key byte) fails its check too.
pub fn seal_context(table: &str, key: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(table.len() + 1 + key.len());
    c.extend_from_slice(table.as_bytes());
    c.push(0);
    c.extend_from_slice(key);
    c
}

fn crc(context: &[u8], blob: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(context);
    h.update(blob);
    h.finalize()
}

/// Wrap `blob` (an `encode`d value) with its checksum over `context` and the blob.
pub fn seal(context: &[u8], blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_HEADER + blob.len());
    out.push(SEALED);
    out.extend_from_slice(&crc(context, blob).to_le_bytes());
    out.extend_from_slice(blob);
    out
}

/// What `unseal` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed<'a> {
    /// A sealed blob whose checksum matched: the inner blob.
    Verified(&'a [u8]),
    /// A blob written before seals existed (format 1 or 2, no checksum): nothing to verify.
    Legacy(&'a [u8]),
}

impl<'a> Unsealed<'a> {
    pub fn blob(&self) -> &'a [u8] {
        match self {
            Unsealed::Verified(b) | Unsealed::Legacy(b) => b,
        }
    }
}

/// Why a stored blob is not what was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("checksum mismatch (stored crc32 {stored:08x}, computed {computed:08x})")]
    Mismatch { stored: u32, computed: u32 },
    #[error("sealed value is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("empty value")]
    Empty,
    #[error("unknown value format {0}")]
    UnknownFormat(u8),
}

/// Check a stored blob: a sealed one against its checksum, an unsealed one of a known format as
/// legacy (see `Unsealed::Legacy`; callers decide whether legacy is acceptable).
pub fn unseal<'a>(context: &[u8], bytes: &'a [u8]) -> Result<Unsealed<'a>, SealError> {
    match bytes.first() {
        None => Err(SealError::Empty),
        Some(&SEALED) => {
            if bytes.len() < SEAL_HEADER {
                return Err(SealError::Short(bytes.len()));
            }
            let stored = u32::from_le_bytes(bytes[1..SEAL_HEADER].try_into().expect("4 bytes"));
            let blob = &bytes[SEAL_HEADER..];
            let computed = crc(context, blob);
            if stored == computed {
                Ok(Unsealed::Verified(blob))
            } else {
                Err(SealError::Mismatch { stored, computed })
            }
        }
        Some(&FORMAT_V1) | Some(&FORMAT_V2) => Ok(Unsealed::Legacy(bytes)),
        Some(&v) => Err(SealError::UnknownFormat(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings are stored as the text of the values set (the typed values are read from it,
    /// never stored): a map of one key here, as it was before the typed values existed.
    #[test]
    fn settings_encoding_is_pinned() {
        let mut s = roster_membership::Settings::default();
        s.set_all(&[("heartbeat_interval_second".into(), "7".into())])
            .unwrap();
        let hex: String = encode(&s)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "01010000000000000019000000000000006865617274626561745f696e74657276616c5f7365636f6e64010000000000000037"
        );
        let back: roster_membership::Settings = decode(&encode(&s).unwrap()).unwrap();
        assert_eq!(back.values().heartbeat_interval_second, 7);
    }

    /// The sealed encoding is stored forever: pin its bytes.
    #[test]
    fn sealed_encoding_is_pinned() {
        let blob = encode(&42u64).unwrap();
        let sealed = seal(&seal_context("backends", &[0, 0, 0, 0, 0, 0, 0, 7]), &blob);
        assert_eq!(
            sealed,
            vec![
                0xC5, 0x92, 0xca, 0x98, 0x30, // seal byte, crc32 LE (zlib.crc32 agrees)
                1, 42, 0, 0, 0, 0, 0, 0, 0 // format 1, bincode u64
            ],
            "{sealed:02x?}"
        );
        let ctx = seal_context("backends", &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(unseal(&ctx, &sealed), Ok(Unsealed::Verified(&blob[..])));
    }

    #[test]
    fn every_flipped_bit_of_a_sealed_blob_is_caught() {
        let ctx = seal_context("logs", &5u64.to_be_bytes());
        let sealed = seal(&ctx, &encode(&"some value".to_string()).unwrap());
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut b = sealed.clone();
                b[i] ^= 1 << bit;
                assert!(
                    !matches!(unseal(&ctx, &b), Ok(Unsealed::Verified(_))),
                    "flip of bit {bit} of byte {i} passed"
                );
            }
        }
        // The same bytes under another key do not verify.
        let other = seal_context("logs", &6u64.to_be_bytes());
        assert!(unseal(&other, &sealed).is_err());
    }

    #[test]
    fn unsealed_rows_read_as_legacy() {
        let blob = encode(&1u8).unwrap();
        assert_eq!(unseal(b"x", &blob), Ok(Unsealed::Legacy(&blob[..])));
        assert_eq!(unseal(b"x", &[]), Err(SealError::Empty));
        assert_eq!(unseal(b"x", &[9, 1]), Err(SealError::UnknownFormat(9)));
    }
}
