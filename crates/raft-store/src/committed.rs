//! The committed log id in a small file of its own next to `log.redb` (`committed`), rewritten
//! in place with one `pwrite` at every commit step and never fsynced.
//!
//! Why not a row of `log.redb`: a redb transaction per commit step cost about as much CPU as
//! the append it follows, and a non-durable redb commit is lost when the process is killed
//! (redb reopens at its last durable commit). A `pwrite` is in the page cache at once, so a
//! killed FE restarts knowing every commit it had seen and re-applies up to it; a power
//! failure may leave an older record or a torn one (its checksum fails). Either is safe: a
//! lower committed id only means re-applying less at start, and the rest comes from the
//! leader. The log store writes an id here only once its own log is durable up to it, and
//! ignores a record past its last entry at open, so this file never names an entry the log
//! does not hold.
//!
//! Record: a little-endian `u16` length, then the sealed (`codec::seal`) encoding of
//! `Option<LogId>`.

use crate::codec::{self, Unsealed};
use crate::types::LogId;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The seal context of the record.
const CONTEXT: &[u8] = b"committed\0";

pub struct CommittedFile {
    file: File,
    path: PathBuf,
}

/// What `open` found in the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No file yet, or an empty one (a data dir from before this file existed).
    Nothing,
    /// A record whose checksum matched.
    Valid(Option<LogId>),
    /// A torn or damaged record (a power failure mid-write): ignored.
    Torn(String),
}

impl CommittedFile {
    /// Open (or create) the file at `path` and read the record it holds.
    pub fn open(path: &Path) -> io::Result<(Self, Found)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let bytes = std::fs::read(path)?;
        let found = read_record(&bytes);
        Ok((
            CommittedFile {
                file,
                path: path.to_path_buf(),
            },
            found,
        ))
    }

    /// Replace the record. The caller serializes writes, so the record only moves forward.
    pub fn write(&self, committed: Option<LogId>) -> io::Result<()> {
        let sealed = codec::seal(CONTEXT, &codec::encode(&committed)?);
        let len = u16::try_from(sealed.len()).map_err(crate::io_err)?;
        let mut buf = Vec::with_capacity(2 + sealed.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&sealed);
        self.file
            .write_all_at(&buf, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_record(bytes: &[u8]) -> Found {
    let Some((len, rest)) = bytes.split_first_chunk::<2>() else {
        return if bytes.is_empty() {
            Found::Nothing
        } else {
            Found::Torn("shorter than its length".into())
        };
    };
    let Some(record) = rest.get(..usize::from(u16::from_le_bytes(*len))) else {
        return Found::Torn("shorter than its length says".into());
    };
    match codec::unseal(CONTEXT, record) {
        Ok(Unsealed::Verified(blob)) => match codec::decode(blob) {
            Ok(c) => Found::Valid(c),
            Err(e) => Found::Torn(e.to_string()),
        },
        Ok(Unsealed::Legacy(_)) => Found::Torn("not sealed".into()),
        Err(e) => Found::Torn(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::blank_ent;

    fn id(index: u64) -> Option<LogId> {
        Some(blank_ent::<crate::TypeConfig>(2, 1, index).log_id)
    }

    #[test]
    fn a_record_reads_back_and_a_damaged_one_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("committed");
        let (f, found) = CommittedFile::open(&path).unwrap();
        assert_eq!(found, Found::Nothing);
        f.write(id(1_000_000)).unwrap();
        // A shorter record over a longer one: the length says where it ends.
        f.write(None).unwrap();
        f.write(id(7)).unwrap();
        drop(f);
        assert_eq!(CommittedFile::open(&path).unwrap().1, Found::Valid(id(7)));

        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x41;
            std::fs::write(&path, &bad).unwrap();
            let found = CommittedFile::open(&path).unwrap().1;
            assert!(
                matches!(found, Found::Torn(_)),
                "a flip at byte {at} read as {found:?}"
            );
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(
            CommittedFile::open(&path).unwrap().1,
            Found::Torn(_)
        ));
    }
}
