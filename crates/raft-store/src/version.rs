//! The data version of what this build stores (`log.redb`, `sm.redb`, snapshots), and the
//! refusal of data written by a newer build.
//!
//! Each file carries a `data_version` row in its `meta` table, written when this build opens
//! it; a snapshot's version is its blob format (`codec::FORMAT_V2` today). Versions:
//!
//! - 1: the first wave: format-1 values, no checksums (files without a `data_version` row and
//!   without the `sealed` mark).
//! - 2: every value sealed with a CRC-32 (`codec::seal`); backends (drain) and tombstones (kept
//!   decommission) and the snapshot in format 2. Files written before the `data_version` row
//!   existed are version 1 or 2 and are read as such (`legacy`).
//! - 3: the Raft log's entries in `raft/wal/` (append-only segments, `wal`) instead of the
//!   `logs` table of `log.redb`, which keeps the vote and the purged id; the committed id in
//!   `raft/committed`. A version-2 `log.redb`'s entries move to the wal at open.
//! - 4: wal segments are zero-filled ahead of their records (`wal`: the records end at an
//!   all-zero header with only zeros after it). A version-3 build would read those zeros in a
//!   segment that is not the last as damage; this build reads version-3 segments unchanged.
//!   `fixtures/data-v3/` is a data dir of the version-3 build (97926f1).
//!
//! The upgrade rule. Data is read by every later build, forever: `fixtures/data-v2/` holds
//! files written by the build before this rule, `fixtures/data-v3/` those of version 3, and
//! `tests/fixtures.rs` decodes them. So a stored shape grows only by a new `Cmd` variant at
//! the end, or by a new blob format whose reader takes the old shape through `legacy` (as
//! format 2 did); a new field of an existing shape is such a new format, with the old shape's
//! value mapping to `None` or a default.
//! Any change of what is stored raises `DATA_VERSION` and adds a fixture of the old version.
//! A build refuses, clearly, a file whose version is above its own (`NewerData`): it cannot
//! know what the newer rows mean, and guessing would diverge from the FEs that do.

use crate::codec;
use crate::integrity::Corruption;
use std::io;
use std::path::{Path, PathBuf};

/// What this build writes and the newest it reads.
pub const DATA_VERSION: u32 = 4;

/// The `meta` row of `log.redb` and `sm.redb` that holds the file's data version.
pub const KEY_DATA_VERSION: &str = "data_version";

/// A file written by a newer build than this one.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{}: written by a newer Roster (data version {found}; this build reads data versions up to \
     {DATA_VERSION}). Start this FE with the build that wrote it, or a newer one. To run this \
     build instead, remove this FE's data_dir and start it again: it rejoins and receives a \
     snapshot from the leader (which must then run a build that writes version {DATA_VERSION} \
     or lower)",
    file.display()
)]
pub struct NewerData {
    pub file: PathBuf,
    pub found: u32,
}

impl From<NewerData> for io::Error {
    fn from(e: NewerData) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The value of a `data_version` row (the inner blob, after its seal was checked).
pub(crate) fn encode() -> io::Result<Vec<u8>> {
    codec::encode(&DATA_VERSION)
}

/// The data version stored in `file`'s `data_version` row (`raw` as stored, sealed), or `None`
/// without one. Refuses a version newer than this build's, and a row that fails its check.
pub(crate) fn stored(file: &Path, raw: Option<&[u8]>) -> io::Result<Option<u32>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let bad = |e: &dyn std::fmt::Display| -> io::Error {
        Corruption::new(file, "meta", format!("{KEY_DATA_VERSION:?}"), e).into()
    };
    let ctx = codec::seal_context("meta", KEY_DATA_VERSION.as_bytes());
    let blob = match codec::unseal(&ctx, raw).map_err(|e| bad(&e))? {
        codec::Unsealed::Verified(b) => b,
        codec::Unsealed::Legacy(_) => return Err(bad(&"the data version has no checksum")),
    };
    let found: u32 = codec::decode(blob).map_err(|e| bad(&e))?;
    if found > DATA_VERSION {
        return Err(NewerData {
            file: file.to_path_buf(),
            found,
        }
        .into());
    }
    Ok(Some(found))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `data_version` row as a build of `version` would store it.
    pub(crate) fn row(version: u32) -> Vec<u8> {
        let ctx = codec::seal_context("meta", KEY_DATA_VERSION.as_bytes());
        codec::seal(&ctx, &codec::encode(&version).unwrap())
    }

    #[test]
    fn versions_up_to_this_builds_are_read_and_newer_ones_refused() {
        let f = Path::new("/d/sm.redb");
        assert_eq!(stored(f, None).unwrap(), None);
        assert_eq!(stored(f, Some(&row(1))).unwrap(), Some(1));
        assert_eq!(stored(f, Some(&row(2))).unwrap(), Some(2));
        assert_eq!(stored(f, Some(&row(3))).unwrap(), Some(3));
        assert_eq!(stored(f, Some(&row(DATA_VERSION))).unwrap(), Some(4));
        let msg = stored(f, Some(&row(DATA_VERSION + 1)))
            .unwrap_err()
            .to_string();
        for part in [
            "/d/sm.redb",
            "newer Roster",
            "data version 5",
            "up to 4",
            "remove this FE's data_dir",
        ] {
            assert!(msg.contains(part), "{msg:?} lacks {part:?}");
        }
        let mut flipped = row(1);
        *flipped.last_mut().unwrap() ^= 4;
        let msg = stored(f, Some(&flipped)).unwrap_err().to_string();
        assert!(msg.contains("checksum mismatch"), "{msg}");
    }
}
