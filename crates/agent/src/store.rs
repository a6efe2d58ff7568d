//! Replica files on disk. Each replica is a directory `tablets/<tablet_id>/` holding `data` and
//! `meta` (table id, size, CRC-32 of the data). A replica is written under `tmp/` and renamed
//! into place after an fsync, so after a crash a replica is either whole or absent; `tmp/` is
//! emptied at start. Blocking I/O: call from `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Size of the blocks the agent writes, reads and streams.
pub const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaMeta {
    pub tablet_id: u64,
    pub table_id: u64,
    pub bytes: u64,
    /// CRC-32 (IEEE) of the data.
    pub checksum: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("replica of tablet {0} is not on this backend")]
    NotFound(u64),
    #[error("replica of tablet {tablet_id} is damaged: {reason}")]
    Damaged { tablet_id: u64, reason: String },
    #[error("disk error at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The bytes the fill hook writes for a tablet: a xorshift stream seeded by the tablet id, so
/// every replica of a tablet is identical without any coordination.
pub struct FillStream {
    state: u64,
}

impl FillStream {
    pub fn new(tablet_id: u64) -> Self {
        FillStream {
            state: tablet_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

pub struct ReplicaStore {
    root: PathBuf,
    index: Mutex<BTreeMap<u64, ReplicaMeta>>,
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

fn parse_meta(tablet_id: u64, text: &str) -> Option<ReplicaMeta> {
    let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    let (table_id, bytes, checksum) = (it.next()??, it.next()??, it.next()??);
    Some(ReplicaMeta {
        tablet_id,
        table_id,
        bytes,
        checksum: u32::try_from(checksum).ok()?,
    })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(at(dir))
}

impl ReplicaStore {
    /// Open (or create) the store under `root`, loading every whole replica.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let tablets = root.join("tablets");
        let tmp = root.join("tmp");
        fs::create_dir_all(&tablets).map_err(at(&tablets))?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(at(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(at(&tmp))?;
        let mut index = BTreeMap::new();
        for entry in fs::read_dir(&tablets).map_err(at(&tablets))? {
            let entry = entry.map_err(at(&tablets))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                tracing::warn!(path = %entry.path().display(), "ignoring a stray entry");
                continue;
            };
            let meta_path = entry.path().join("meta");
            match fs::read_to_string(&meta_path)
                .ok()
                .and_then(|t| parse_meta(id, &t))
            {
                Some(m) => {
                    index.insert(id, m);
                }
                None => {
                    tracing::warn!(path = %meta_path.display(), "ignoring a replica without readable meta")
                }
            }
        }
        Ok(ReplicaStore {
            root: root.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    fn dir_of(&self, tablet_id: u64) -> PathBuf {
        self.root.join("tablets").join(tablet_id.to_string())
    }

    pub fn get(&self, tablet_id: u64) -> Option<ReplicaMeta> {
        self.index
            .lock()
            .expect("index lock")
            .get(&tablet_id)
            .copied()
    }

    pub fn list(&self) -> Vec<ReplicaMeta> {
        self.index
            .lock()
            .expect("index lock")
            .values()
            .copied()
            .collect()
    }

    /// Create a replica holding `fill_bytes` of the tablet's fill stream. Idempotent: an
    /// existing replica is returned as it is.
    pub fn create(
        &self,
        tablet_id: u64,
        table_id: u64,
        fill_bytes: u64,
    ) -> Result<ReplicaMeta, StoreError> {
        if let Some(m) = self.get(tablet_id) {
            return Ok(m);
        }
        let mut stream = FillStream::new(tablet_id);
        let mut left = fill_bytes;
        let mut buf = vec![0u8; CHUNK_BYTES];
        self.install(tablet_id, table_id, |out| {
            while left > 0 {
                let n = (left as usize).min(CHUNK_BYTES);
                stream.fill(&mut buf[..n]);
                out.write_all(&buf[..n])?;
                left -= n as u64;
            }
            Ok(())
        })
    }

    /// Write a replica under `tmp/` with `write`, then move it into place. If another call
    /// installed the same tablet meanwhile, that one wins and is returned.
    pub fn install(
        &self,
        tablet_id: u64,
        table_id: u64,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<ReplicaMeta, StoreError> {
        let mut staging = self.stage(tablet_id, table_id)?;
        let path = staging.dir.join("data");
        write(&mut staging.out).map_err(at(&path))?;
        self.commit(staging)
    }

    /// Start writing a replica under `tmp/`; dropping the `Staging` removes it.
    pub fn stage(&self, tablet_id: u64, table_id: u64) -> Result<Staging, StoreError> {
        let dir = self
            .root
            .join("tmp")
            .join(format!("{tablet_id}.{}", unique_suffix()));
        fs::create_dir_all(&dir).map_err(at(&dir))?;
        let data_path = dir.join("data");
        let file = File::create(&data_path).map_err(at(&data_path))?;
        Ok(Staging {
            tablet_id,
            table_id,
            out: HashingWriter {
                inner: io::BufWriter::with_capacity(CHUNK_BYTES, file),
                hasher: crc32fast::Hasher::new(),
                bytes: 0,
            },
            dir,
            done: false,
        })
    }

    /// Make a staged replica durable and move it into place. If the tablet was installed
    /// meanwhile, that replica wins and is returned.
    pub fn commit(&self, mut staging: Staging) -> Result<ReplicaMeta, StoreError> {
        let data_path = staging.dir.join("data");
        staging.out.inner.flush().map_err(at(&data_path))?;
        staging
            .out
            .inner
            .get_ref()
            .sync_all()
            .map_err(at(&data_path))?;
        let meta = staging.meta();
        let meta_path = staging.dir.join("meta");
        let text = format!("{} {} {}\n", meta.table_id, meta.bytes, meta.checksum);
        File::create(&meta_path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
            .map_err(at(&meta_path))?;
        let mut index = self.index.lock().expect("index lock");
        if let Some(existing) = index.get(&staging.tablet_id) {
            return Ok(*existing);
        }
        let dest = self.dir_of(staging.tablet_id);
        fs::rename(&staging.dir, &dest).map_err(at(&dest))?;
        staging.done = true;
        sync_dir(&self.root.join("tablets"))?;
        index.insert(staging.tablet_id, meta);
        Ok(meta)
    }

    /// Delete a replica's files. Returns whether it existed.
    pub fn drop_replica(&self, tablet_id: u64) -> Result<bool, StoreError> {
        let mut index = self.index.lock().expect("index lock");
        if index.remove(&tablet_id).is_none() {
            return Ok(false);
        }
        let dir = self.dir_of(tablet_id);
        // Rename first so a crash mid-delete never leaves a half replica in `tablets/`.
        let doomed = self
            .root
            .join("tmp")
            .join(format!("drop-{tablet_id}.{}", unique_suffix()));
        fs::rename(&dir, &doomed).map_err(at(&dir))?;
        drop(index);
        fs::remove_dir_all(&doomed).map_err(at(&doomed))?;
        Ok(true)
    }

    /// Open a replica's data for reading, checking its size against its meta.
    pub fn open_data(&self, tablet_id: u64) -> Result<(ReplicaMeta, File), StoreError> {
        let meta = self.get(tablet_id).ok_or(StoreError::NotFound(tablet_id))?;
        let path = self.dir_of(tablet_id).join("data");
        let file = File::open(&path).map_err(at(&path))?;
        let len = file.metadata().map_err(at(&path))?.len();
        if len != meta.bytes {
            return Err(StoreError::Damaged {
                tablet_id,
                reason: format!("data is {len} bytes, meta says {}", meta.bytes),
            });
        }
        Ok((meta, file))
    }

    /// Read a replica whole and check its CRC (used by tests and by verification).
    pub fn verify(&self, tablet_id: u64) -> Result<ReplicaMeta, StoreError> {
        let (meta, mut file) = self.open_data(tablet_id)?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let path = self.dir_of(tablet_id).join("data");
            let n = file.read(&mut buf).map_err(at(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let crc = hasher.finalize();
        if crc != meta.checksum {
            return Err(StoreError::Damaged {
                tablet_id,
                reason: format!("checksum {crc:08x}, meta says {:08x}", meta.checksum),
            });
        }
        Ok(meta)
    }

    /// Bytes of replica data held.
    pub fn used_bytes(&self) -> u64 {
        self.list().iter().map(|m| m.bytes).sum()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// A replica being written under `tmp/`. Removed when dropped uncommitted.
pub struct Staging {
    tablet_id: u64,
    table_id: u64,
    out: HashingWriter<io::BufWriter<File>>,
    dir: PathBuf,
    done: bool,
}

impl Staging {
    pub fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join("data");
        self.out.write_all(buf).map_err(at(&path))
    }

    /// Size and checksum of what was written so far.
    pub fn meta(&self) -> ReplicaMeta {
        ReplicaMeta {
            tablet_id: self.tablet_id,
            table_id: self.table_id,
            bytes: self.out.bytes,
            checksum: self.out.hasher.clone().finalize(),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_survive_reopen_and_match_across_backends() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = ReplicaStore::open(a.path()).unwrap();
        let sb = ReplicaStore::open(b.path()).unwrap();
        let ma = sa
            .create(100002, 100001, 3 * CHUNK_BYTES as u64 + 5)
            .unwrap();
        let mb = sb
            .create(100002, 100001, 3 * CHUNK_BYTES as u64 + 5)
            .unwrap();
        assert_eq!(ma, mb, "replicas of one tablet hold the same bytes");
        assert_eq!(ma.bytes, 3 * CHUNK_BYTES as u64 + 5);
        assert_ne!(sa.create(100003, 100001, 64).unwrap().checksum, ma.checksum);
        // Idempotent.
        assert_eq!(sa.create(100002, 100001, 1).unwrap(), ma);
        drop(sa);
        let sa = ReplicaStore::open(a.path()).unwrap();
        assert_eq!(sa.verify(100002).unwrap(), ma);
        assert_eq!(sa.list().len(), 2);
        assert!(sa.drop_replica(100002).unwrap());
        assert!(!sa.drop_replica(100002).unwrap());
        assert!(!a.path().join("tablets/100002").exists());
        let sa = ReplicaStore::open(a.path()).unwrap();
        assert_eq!(sa.list().len(), 1);
    }

    #[test]
    fn damage_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let s = ReplicaStore::open(d.path()).unwrap();
        s.create(7, 1, 1000).unwrap();
        let data = d.path().join("tablets/7/data");
        let mut bytes = fs::read(&data).unwrap();
        bytes[500] ^= 1;
        fs::write(&data, &bytes).unwrap();
        assert!(matches!(s.verify(7), Err(StoreError::Damaged { .. })));
        fs::write(&data, &bytes[..10]).unwrap();
        assert!(matches!(s.open_data(7), Err(StoreError::Damaged { .. })));
        assert!(matches!(s.open_data(8), Err(StoreError::NotFound(8))));
    }

    #[test]
    fn an_abandoned_staging_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = ReplicaStore::open(d.path()).unwrap();
        let mut st = s.stage(3, 1).unwrap();
        st.write(b"abc").unwrap();
        assert_eq!(st.meta().bytes, 3);
        drop(st);
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        assert!(s.get(3).is_none());
        let mut st = s.stage(3, 1).unwrap();
        st.write(b"abc").unwrap();
        let m = s.commit(st).unwrap();
        assert_eq!(m.checksum, crc32fast::hash(b"abc"));
        assert_eq!(s.verify(3).unwrap(), m);
    }

    #[test]
    fn leftovers_in_tmp_are_cleared_and_strays_ignored() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("tmp/5.half")).unwrap();
        fs::create_dir_all(d.path().join("tablets/junk")).unwrap();
        fs::create_dir_all(d.path().join("tablets/9")).unwrap();
        let s = ReplicaStore::open(d.path()).unwrap();
        assert!(s.list().is_empty());
        assert!(!d.path().join("tmp/5.half").exists());
    }
}
