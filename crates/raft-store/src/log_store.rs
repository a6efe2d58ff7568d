//! The Raft log: its entries in the `wal` beside this file (`raft/wal/`, append-only segments),
//! and in `log.redb` a `meta` table for the vote and the last purged log id. The committed log
//! id goes to the `committed` file. Entries of a file written before the wal (data version 2)
//! move there at open.
//!
//! One dedicated writer thread owns every write: it drains all queued operations into one
//! write of the segment and one fdatasync (group commit), with a durable redb commit first only
//! when the batch holds a vote or a purge, and then reports them, in submission order. `append`
//! does not wait for that: its entries go into the in-memory `Tail`, readable at once, and
//! openraft hears they are durable through the `IOFlushed` callback, so a leader replicates
//! while its own fsync runs (one fsync per batch on the critical path, as etcd overlaps its WAL
//! write with replication). `save_vote`, `truncate_after` and `purge` still wait for theirs.
//! The committed log id is not written here but to the `committed` file (see `committed`): one
//! `pwrite` per commit step, once this log is durable up to it. A restart that finds an older
//! one (a power failure) re-applies less and catches up from the leader (openraft's
//! `save_committed` contract).
//!
//! Every entry is sealed (`codec::seal`) inside its CRC-checked wal record, and every meta
//! value is sealed; all are checked at open and on every read. A file written before seals
//! existed is rewritten sealed once at open and then marked (`KEY_SEALED`); in a marked file an
//! unsealed value is damage. Any storage error, or a failed check, is also reported to the
//! `Fault`, which stops the FE.

use crate::codec::{self, Unsealed};
use crate::committed::{CommittedFile, Found};
use crate::integrity::{Corruption, Fault, at_file, guarded};
use crate::io_err;
use crate::types::{Entry, LogId, MAX_TERM, TypeConfig, Vote};
use crate::version::{self, DATA_VERSION, KEY_DATA_VERSION};
use crate::wal::Wal;
use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{oneshot, watch};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
/// Where builds before the `committed` file kept the committed log id (read at open only).
const KEY_COMMITTED: &str = "committed";
/// Present once every value in the file is sealed: an unsealed value after that is damage.
const KEY_SEALED: &str = "sealed";

/// One queued write; reported after the commit that contains it.
enum Op {
    Append {
        /// Tells the `Tail` which of its entries this commit made durable.
        seq: u64,
        entries: Vec<(u64, Vec<u8>)>,
        flushed: IOFlushed<TypeConfig>,
    },
    PutMeta {
        key: &'static str,
        value: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Delete log entries with index >= from.
    TruncateFrom {
        seq: u64,
        from: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Record the last purged id, then delete entries with index <= upto.
    Purge {
        purged: Vec<u8>,
        upto: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// What `append` handed over but the writer has not yet committed: entries readable before
/// they are durable (openraft's `append` contract), and a truncation not yet committed; and
/// the last `RECENT` entries committed, so replication (which reads the entry before what it
/// sends, for its log id) and a follower a little behind read memory, not the segment file on
/// the blocking pool. Readers copy from here first and read the wal second, and the writer
/// commits first and forgets here second, so an entry is always in one of the two for a reader.
#[derive(Default)]
struct Tail {
    /// index -> (the `seq` of the append that brought it, the entry). Seqs grow with the
    /// index: a truncation drops every entry at or above where it cuts.
    entries: BTreeMap<u64, (u64, Entry)>,
    /// (seq, from): wal entries at or above `from` are truncated, their delete not committed.
    cut: Option<(u64, u64)>,
    next_seq: u64,
    /// Every op up to this seq is written to the wal.
    written: u64,
}

/// Committed entries kept in the tail (see `Tail`).
const RECENT: usize = 256;

impl Tail {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// What a reader of `[start, end)` takes from here, and where the wal's entries stop counting.
    fn read(&self, start: u64, end: Bound<u64>) -> (Vec<Entry>, Option<u64>) {
        let entries = self
            .entries
            .range((Bound::Included(start), end))
            .map(|(_, (_, e))| e.clone())
            .collect();
        (entries, self.cut.map(|(_, from)| from))
    }
}

/// Segment size of the entries' log (`wal`).
const SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The entries (`raft/wal/`); `log.redb` keeps the vote and the purged id.
    wal: Arc<Mutex<Wal>>,
    wal_dir: Arc<PathBuf>,
    tx: mpsc::Sender<Op>,
    tail: Arc<Mutex<Tail>>,
    path: Arc<PathBuf>,
    fault: Arc<Fault>,
    /// Durable commits of this file (`stats`).
    durable: Arc<AtomicU64>,
    /// The last index whose entry is on disk here (see `durable_index`).
    durable_index: Arc<watch::Sender<u64>>,
    committed: Arc<Mutex<Committed>>,
    /// Tests hold it to keep the writer from committing.
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
}

/// The committed log id: the latest saved, and the `committed` file it goes to.
struct Committed {
    /// What `read_committed` answers: the latest saved, or what the files held at open.
    latest: Option<LogId>,
    /// Saved but not yet written: the log is not yet durable up to it. The writer thread
    /// writes it after the durable commit that covers it.
    pending: Option<Option<LogId>>,
    file: CommittedFile,
}

impl Committed {
    /// Write `c` to the file now (the caller holds the lock: writes stay in order).
    fn write(&mut self, c: Option<LogId>, fault: &Fault) -> io::Result<()> {
        self.pending = None;
        let r = self.file.write(c);
        if let Err(e) = &r {
            fault.report("committed", e);
        }
        r
    }
}

/// A log entry's seal context: its index, big-endian.
fn entry_context(index: u64) -> Vec<u8> {
    codec::seal_context("logs", &index.to_be_bytes())
}

fn meta_context(key: &str) -> Vec<u8> {
    codec::seal_context("meta", key.as_bytes())
}

/// Check a stored value of `table`/`key`: sealed and matching, or legacy in a file not yet
/// marked sealed.
fn checked<'a>(
    path: &Path,
    table: &str,
    key: &dyn Fn() -> String,
    context: &[u8],
    bytes: &'a [u8],
    sealed_file: bool,
) -> io::Result<&'a [u8]> {
    match codec::unseal(context, bytes) {
        Ok(Unsealed::Verified(b)) => Ok(b),
        Ok(Unsealed::Legacy(b)) if !sealed_file => Ok(b),
        Ok(Unsealed::Legacy(_)) => Err(Corruption::new(
            path,
            table,
            key(),
            "value has no checksum in a file whose values are all sealed",
        )
        .into()),
        Err(e) => Err(Corruption::new(path, table, key(), e).into()),
    }
}

/// Decode a checked value, a failure naming the place.
fn decode_at<T: serde::de::DeserializeOwned>(
    path: &Path,
    table: &str,
    key: &dyn Fn() -> String,
    blob: &[u8],
) -> io::Result<T> {
    codec::decode(blob).map_err(|e| Corruption::new(path, table, key(), e).into())
}

impl LogStore {
    /// Open (or create) `path`, check every value in it, and seal a file written before seals.
    pub fn open(path: &Path, fault: Arc<Fault>) -> io::Result<Self> {
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(path)
            .map_err(|e| at_file(path, e))?;
        let (sealed, data_version) = {
            let w = crate::begin_write(&db).map_err(|e| at_file(path, e))?;
            w.open_table(LOGS).map_err(|e| at_file(path, e))?;
            let (sealed, data_version) = {
                let meta = w.open_table(META).map_err(|e| at_file(path, e))?;
                let sealed = meta
                    .get(KEY_SEALED)
                    .map_err(|e| at_file(path, e))?
                    .is_some();
                let raw = meta.get(KEY_DATA_VERSION).map_err(|e| at_file(path, e))?;
                // First of all: a newer build's entries may not mean what this build thinks.
                let v = version::stored(path, raw.as_ref().map(|v| v.value()))?;
                (sealed, v)
            };
            w.commit().map_err(|e| at_file(path, e))?;
            (sealed, data_version)
        };
        let (file, found) = CommittedFile::open(&path.with_file_name("committed"))?;
        let wal_dir = path.with_file_name("wal");
        let (wal, recovered) = Wal::open(&wal_dir, SEGMENT_BYTES)
            .map_err(|e| match e.kind() {
                // Damage: said the way every damaged file is, with the way out.
                io::ErrorKind::InvalidData => {
                    Corruption::new(&wal_dir, "logs", "segment", e).into()
                }
                _ => e,
            })
            .inspect_err(|e| fault.report("wal", e))?;
        if recovered.torn_bytes > 0 {
            tracing::warn!(
                "{}: cut {} bytes of a write that never completed",
                wal_dir.display(),
                recovered.torn_bytes
            );
        }
        let store = LogStore {
            db: Arc::new(db),
            wal: Arc::new(Mutex::new(wal)),
            wal_dir: Arc::new(wal_dir),
            tx: mpsc::channel().0,
            tail: Arc::default(),
            path: Arc::new(path.to_path_buf()),
            fault,
            durable: Arc::default(),
            durable_index: Arc::new(watch::Sender::new(0)),
            committed: Arc::new(Mutex::new(Committed {
                latest: None,
                pending: None,
                file,
            })),
            #[cfg(test)]
            gate: Arc::default(),
        };
        store.verify_all(sealed)?;
        if !sealed {
            store.seal_file()?;
        }
        if data_version != Some(DATA_VERSION) {
            store.stamp_data_version()?;
        }
        store.migrate_entries()?;
        if let Some(purged) = store.read_meta::<LogId>(KEY_PURGED)? {
            // Segments not yet deleted may hold purged entries: never read them.
            store
                .wal
                .lock()
                .expect("wal lock poisoned")
                .purge_upto(purged.index())?;
        }
        store.verify_wal()?;
        let on_disk = store
            .last_entry()?
            .or(store.read_meta::<LogId>(KEY_PURGED)?)
            .map_or(0, |l| l.index());
        store.durable_index.send_replace(on_disk);
        let latest = store.committed_at_open(found, on_disk)?;
        store
            .committed
            .lock()
            .expect("committed lock poisoned")
            .latest = latest;
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: store.db.clone(),
            path: store.path.clone(),
            tail: store.tail.clone(),
            fault: store.fault.clone(),
            durable: store.durable.clone(),
            durable_index: store.durable_index.clone(),
            committed: store.committed.clone(),
            wal: store.wal.clone(),
            #[cfg(test)]
            gate: store.gate.clone(),
        };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(LogStore { tx, ..store })
    }

    /// The committed log id to start from: the newer of the `committed` file's and the one
    /// earlier builds kept in `meta`, never past the log's last entry on disk (`on_disk`).
    fn committed_at_open(&self, found: Found, on_disk: u64) -> io::Result<Option<LogId>> {
        let file = (self.committed.lock().expect("committed lock poisoned"))
            .file
            .path()
            .display()
            .to_string();
        let in_file = match found {
            Found::Nothing => None,
            Found::Valid(c) => c,
            Found::Torn(why) => {
                tracing::warn!("{file}: {why}; starting from the committed id in the log");
                None
            }
        };
        let in_meta = self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten();
        let within = |c: Option<LogId>, from: &str| {
            c.filter(|l| {
                let ok = l.index <= on_disk;
                if !ok {
                    tracing::warn!(
                        "the committed id in {from} ({}) is past the log's last entry ({on_disk}); not used",
                        l.index
                    );
                }
                ok
            })
        };
        Ok(within(in_file, &file).max(within(in_meta, "log.redb")))
    }

    /// Entries written by builds before the `wal`: moved there (values as they are, sealed),
    /// made durable, then deleted from `log.redb`. A crash in between finds them in both and
    /// keeps the `wal`'s.
    fn migrate_entries(&self) -> io::Result<()> {
        let path = self.path.as_path();
        let rows: Vec<(u64, Vec<u8>)> = {
            let r = self.db.begin_read().map_err(|e| at_file(path, e))?;
            let t = r.open_table(LOGS).map_err(|e| at_file(path, e))?;
            t.iter()
                .map_err(|e| at_file(path, e))?
                .map(|i| i.map(|(k, v)| (k.value(), v.value().to_vec())))
                .collect::<Result<_, _>>()
                .map_err(|e| at_file(path, e))?
        };
        if rows.is_empty() {
            return Ok(());
        }
        {
            let mut wal = self.wal.lock().expect("wal lock poisoned");
            if wal.last_index().is_none() {
                wal.append(&rows)?;
                wal.sync()?;
            }
        }
        let w = crate::begin_write(&self.db).map_err(|e| at_file(path, e))?;
        w.open_table(LOGS)
            .map_err(|e| at_file(path, e))?
            .retain(|_, _| false)
            .map_err(|e| at_file(path, e))?;
        w.commit().map_err(|e| at_file(path, e))?;
        tracing::info!(
            "moved {} log entries from {} to {}",
            rows.len(),
            path.display(),
            self.wal_dir.display()
        );
        Ok(())
    }

    /// Decode every entry of the `wal` (its records' checksums were checked as it opened).
    fn verify_wal(&self) -> io::Result<()> {
        let wal = self.wal.lock().expect("wal lock poisoned");
        let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) else {
            return Ok(());
        };
        for index in first..=last {
            let e = read_entry(&wal, &self.wal_dir, index)?.ok_or_else(|| {
                io_err(format!("{}: entry {index} missing", self.wal_dir.display()))
            })?;
            if e.index() != index {
                return Err(Corruption::new(
                    &self.wal_dir,
                    "logs",
                    format!("log index {index}"),
                    format!("holds the entry of index {}", e.index()),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Read and check every entry and meta value (at open).
    fn verify_all(&self, sealed_file: bool) -> io::Result<()> {
        let path = self.path.as_path();
        let r = self.db.begin_read().map_err(|e| at_file(path, e))?;
        let t = r.open_table(LOGS).map_err(|e| at_file(path, e))?;
        for item in t.iter().map_err(|e| at_file(path, e))? {
            let (k, v) = item.map_err(|e| at_file(path, e))?;
            let index = k.value();
            let key = || format!("log index {index}");
            let blob = checked(
                path,
                "logs",
                &key,
                &entry_context(index),
                v.value(),
                sealed_file,
            )?;
            let e: Entry = decode_at(path, "logs", &key, blob)?;
            if e.index() != index {
                return Err(Corruption::new(
                    path,
                    "logs",
                    key(),
                    format!("holds the entry of index {}", e.index()),
                )
                .into());
            }
        }
        let m = r.open_table(META).map_err(|e| at_file(path, e))?;
        for item in m.iter().map_err(|e| at_file(path, e))? {
            let (k, v) = item.map_err(|e| at_file(path, e))?;
            let name = k.value().to_string();
            let key = || name.clone();
            let blob = checked(
                path,
                "meta",
                &key,
                &meta_context(&name),
                v.value(),
                sealed_file,
            )?;
            match name.as_str() {
                KEY_VOTE => drop(decode_at::<Vote>(path, "meta", &key, blob)?),
                KEY_PURGED => drop(decode_at::<LogId>(path, "meta", &key, blob)?),
                KEY_COMMITTED => drop(decode_at::<Option<LogId>>(path, "meta", &key, blob)?),
                KEY_SEALED => drop(decode_at::<u8>(path, "meta", &key, blob)?),
                KEY_DATA_VERSION => drop(decode_at::<u32>(path, "meta", &key, blob)?),
                other => {
                    return Err(Corruption::new(
                        path,
                        "meta",
                        other,
                        "unknown key in the log's meta",
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Rewrite every value of a file written before seals, sealed, and mark it; one commit.
    fn seal_file(&self) -> io::Result<()> {
        let path = self.path.as_path();
        let w = crate::begin_write(&self.db).map_err(|e| at_file(path, e))?;
        {
            let mut t = w.open_table(LOGS).map_err(|e| at_file(path, e))?;
            let old: Vec<(u64, Vec<u8>)> = t
                .iter()
                .map_err(|e| at_file(path, e))?
                .map(|i| i.map(|(k, v)| (k.value(), v.value().to_vec())))
                .collect::<Result<_, _>>()
                .map_err(|e| at_file(path, e))?;
            for (k, v) in old {
                if v.first() != Some(&codec::SEALED) {
                    t.insert(k, codec::seal(&entry_context(k), &v).as_slice())
                        .map_err(|e| at_file(path, e))?;
                }
            }
            let mut m = w.open_table(META).map_err(|e| at_file(path, e))?;
            let old: Vec<(String, Vec<u8>)> = m
                .iter()
                .map_err(|e| at_file(path, e))?
                .map(|i| i.map(|(k, v)| (k.value().to_string(), v.value().to_vec())))
                .collect::<Result<_, _>>()
                .map_err(|e| at_file(path, e))?;
            for (k, v) in old {
                if v.first() != Some(&codec::SEALED) {
                    m.insert(k.as_str(), codec::seal(&meta_context(&k), &v).as_slice())
                        .map_err(|e| at_file(path, e))?;
                }
            }
            let mark = codec::seal(&meta_context(KEY_SEALED), &codec::encode(&1u8)?);
            m.insert(KEY_SEALED, mark.as_slice())
                .map_err(|e| at_file(path, e))?;
        }
        w.commit().map_err(|e| at_file(path, e))
    }

    /// Write this build's data version into the file (before the writer thread starts).
    fn stamp_data_version(&self) -> io::Result<()> {
        let path = self.path.as_path();
        let w = crate::begin_write(&self.db).map_err(|e| at_file(path, e))?;
        {
            let mut m = w.open_table(META).map_err(|e| at_file(path, e))?;
            let row = codec::seal(&meta_context(KEY_DATA_VERSION), &version::encode()?);
            m.insert(KEY_DATA_VERSION, row.as_slice())
                .map_err(|e| at_file(path, e))?;
        }
        w.commit().map_err(|e| at_file(path, e))
    }

    /// Report a failed storage operation to the fault (this FE stops), and pass it on.
    fn fatal<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            self.fault.report("log.redb", e);
        }
        r
    }

    /// Queue `op` for the writer thread.
    fn queue(&self, op: Op) -> io::Result<()> {
        self.tx
            .send(op)
            .map_err(|_| io_err("log writer thread is gone"))
    }

    /// Queue the op `make` builds; the receiver answers after the commit that contains it.
    fn queue_answered(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Op,
    ) -> io::Result<oneshot::Receiver<io::Result<()>>> {
        let (done, rx) = oneshot::channel();
        self.queue(make(done))?;
        Ok(rx)
    }

    /// Wait for a queued op's commit (a failure is a fault).
    async fn answer(&self, rx: oneshot::Receiver<io::Result<()>>) -> io::Result<()> {
        let r = rx.await.map_err(|_| io_err("log writer thread is gone"))?;
        self.fatal(r)
    }

    /// Queue the op `make` builds and wait for its commit.
    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Op,
    ) -> io::Result<()> {
        let rx = self.queue_answered(make)?;
        self.answer(rx).await
    }

    /// The last log index whose entry is on disk in this file, as it moves: the state machine
    /// commits durably only what this covers (an entry can be committed by the other voters
    /// and applied here before this FE's own fsync), so a crash never leaves `sm.redb` ahead of
    /// the log.
    pub fn durable_index(&self) -> watch::Receiver<u64> {
        self.durable_index.subscribe()
    }

    /// Durable (fsynced) commits of this log since it was opened.
    pub fn durable_commits(&self) -> u64 {
        self.durable.load(Ordering::Relaxed)
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().expect("log tail lock poisoned")
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let r = guarded(&self.path, || {
            let path = self.path.as_path();
            let r = self.db.begin_read().map_err(|e| at_file(path, e))?;
            let t = r.open_table(META).map_err(|e| at_file(path, e))?;
            match t.get(key).map_err(|e| at_file(path, e))? {
                Some(v) => {
                    let k = || key.to_string();
                    let blob = checked(path, "meta", &k, &meta_context(key), v.value(), true)?;
                    Ok(Some(decode_at(path, "meta", &k, blob)?))
                }
                None => Ok(None),
            }
        });
        self.fatal(r)
    }

    fn last_entry(&self) -> io::Result<Option<LogId>> {
        let (newest, cut) = {
            let tail = self.tail();
            let newest = tail.entries.last_key_value().map(|(_, (_, e))| e.log_id());
            (newest, tail.cut.map(|(_, from)| from))
        };
        if newest.is_some() {
            return Ok(newest);
        }
        let wal = self.wal.lock().expect("wal lock poisoned");
        let last = match (wal.last_index(), cut) {
            (Some(last), Some(from)) if last >= from => from.checked_sub(1),
            (last, _) => last,
        };
        let r = match last.filter(|l| wal.first_index().is_some_and(|f| *l >= f)) {
            Some(index) => read_entry(&wal, &self.wal_dir, index).map(|e| e.map(|e| e.log_id())),
            None => Ok(None),
        };
        drop(wal);
        self.fatal(r)
    }
}

/// The writer thread: owns every write transaction of the file.
struct Writer {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    tail: Arc<Mutex<Tail>>,
    fault: Arc<Fault>,
    durable: Arc<AtomicU64>,
    durable_index: Arc<watch::Sender<u64>>,
    /// To write a committed id saved before the log was durable up to it.
    committed: Arc<Mutex<Committed>>,
    wal: Arc<Mutex<Wal>>,
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            self.commit(batch);
        }
    }

    /// Commit `batch` in one transaction with one fsync, and answer each op.
    fn commit(&self, batch: Vec<Op>) {
        #[cfg(test)]
        let _gate = self.gate.lock().expect("gate lock poisoned");
        let res = guarded(&self.path, || {
            write_batch(&self.db, &self.wal, &self.path, &batch)
        });
        fail::fail_point!("raft-log-after-append", |_| crate::failpoints::crash(
            "raft-log-after-append"
        ));
        if let Err(e) = &res {
            // redb answers PreviousIo after an IO error; the fault stops the FE, and
            // openraft stops on the error each caller gets.
            self.fault.report("log.redb", e);
            tracing::error!("raft log write failed: {e}");
        } else if let Ok(last) = &res {
            crate::stats::durable_commit(crate::stats::File::Log, &self.durable);
            self.forget(&batch, *last);
        }
        let res = res.map(|_| ());
        let copy = |r: &io::Result<()>| {
            r.as_ref()
                .map(|_| ())
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))
        };
        for op in batch {
            match op {
                Op::Append { flushed, .. } => flushed.io_completed(copy(&res)),
                Op::PutMeta { done, .. }
                | Op::TruncateFrom { done, .. }
                | Op::Purge { done, .. } => {
                    let _ = done.send(copy(&res));
                }
            }
        }
    }

    /// After a commit: what it wrote is in the wal now, so the tail keeps only the last `RECENT`
    /// committed entries, the durable index moves to the log's last index (never past a
    /// truncation still pending), and a committed id waiting for it is written.
    fn forget(&self, batch: &[Op], last: Option<u64>) {
        let mut tail = self.tail.lock().expect("log tail lock poisoned");
        for op in batch {
            match op {
                Op::Append { seq, .. } => tail.written = tail.written.max(*seq),
                Op::TruncateFrom { seq, .. } => {
                    if tail.cut.is_some_and(|(s, _)| s == *seq) {
                        tail.cut = None;
                    }
                }
                Op::PutMeta { .. } | Op::Purge { .. } => {}
            }
        }
        // The oldest go first, and only committed ones (seqs grow with the index).
        while tail.entries.len() > RECENT
            && let Some((_, (seq, _))) = tail.entries.first_key_value()
            && *seq <= tail.written
        {
            tail.entries.pop_first();
        }
        if let Some(mut last) = last {
            if let Some((_, from)) = tail.cut {
                last = last.min(from.saturating_sub(1));
            }
            self.durable_index.send_replace(last);
            // After the durable index moved (see `save_committed`).
            let mut committed = self.committed.lock().expect("committed lock poisoned");
            if let Some(c) = committed.pending
                && c.map_or(0, |l| l.index) <= last
            {
                // A failure is reported to the fault, which stops the FE.
                let _ = committed.write(c, &self.fault);
            }
        }
    }
}

/// Returns the log's last index after the batch (the last purged one when no entry is left),
/// `None` when it has neither. The vote and the purged id go to `log.redb` first (one durable
/// commit, only when the batch has them), then the entries to the `wal`, one fdatasync.
fn write_batch(
    db: &Database,
    wal: &Mutex<Wal>,
    path: &Path,
    batch: &[Op],
) -> io::Result<Option<u64>> {
    fail::fail_point!("raft-log-before-append", |_| crate::failpoints::crash(
        "raft-log-before-append"
    ));
    let mut metas: Vec<(&str, &[u8])> = Vec::new();
    for op in batch {
        match op {
            Op::PutMeta { key, value, .. } => metas.push((key, value)),
            Op::Purge { purged, .. } => metas.push((KEY_PURGED, purged)),
            Op::Append { .. } | Op::TruncateFrom { .. } => {}
        }
    }
    if !metas.is_empty() {
        let w = crate::begin_write(db).map_err(|e| at_file(path, e))?;
        {
            let mut meta = w.open_table(META).map_err(|e| at_file(path, e))?;
            for (key, value) in metas {
                meta.insert(key, value).map_err(|e| at_file(path, e))?;
            }
        }
        w.commit().map_err(|e| at_file(path, e))?;
    }
    let mut purged = None;
    let mut appended = false;
    // The fdatasync runs outside the lock, so readers are not held up by it.
    let (active, last) = {
        let mut wal = wal.lock().expect("wal lock poisoned");
        for op in batch {
            match op {
                Op::Append { entries, .. } => {
                    wal.append(entries)?;
                    appended = true;
                }
                Op::TruncateFrom { from, .. } => wal.truncate_from(*from)?,
                Op::Purge { upto, .. } => {
                    wal.purge_upto(*upto)?;
                    purged = Some(*upto);
                }
                Op::PutMeta { .. } => {}
            }
        }
        let active = if appended { wal.active_file() } else { None };
        (active, wal.last_index())
    };
    if let Some(f) = active
        && !crate::skipping_fsync()
    {
        f.sync_data()?;
    }
    Ok(last.or(purged))
}

/// Entry `index` from the `wal`, its seal checked.
fn read_entry(wal: &Wal, dir: &Path, index: u64) -> io::Result<Option<Entry>> {
    let read = wal.read(index).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => {
            Corruption::new(dir, "logs", format!("log index {index}"), e).into()
        }
        _ => e,
    });
    let Some(v) = read? else {
        return Ok(None);
    };
    let key = || format!("log index {index}");
    let blob = checked(dir, "logs", &key, &entry_context(index), &v, true)?;
    Ok(Some(decode_at::<Entry>(dir, "logs", &key, blob)?))
}

/// A vote whose term is above `MAX_TERM` is refused: it is never persisted or used.
fn check_term(vote: &Vote) -> io::Result<()> {
    if vote.leader_id.term > MAX_TERM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "refusing Raft vote {vote}: its term {} is above the largest term Roster accepts ({MAX_TERM})",
                vote.leader_id.term
            ),
        ));
    }
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Bound::Included(*x),
            Bound::Excluded(x) => Bound::Excluded(*x),
            Bound::Unbounded => Bound::Unbounded,
        };
        // The tail first, the wal second (see `Tail`).
        let (newer, cut) = self.tail().read(start, end);
        let consecutive = newer.windows(2).all(|w| w[1].index() == w[0].index() + 1);
        if consecutive && newer.first().is_some_and(|e| e.index() == start) {
            // All of it is in the tail (appends are consecutive), the usual case for a leader
            // replicating what it has just appended.
            return Ok(newer);
        }
        let wal = self.wal.clone();
        let dir = self.wal_dir.clone();
        let r = tokio::task::spawn_blocking(move || {
            let wal = wal.lock().expect("wal lock poisoned");
            let mut out = BTreeMap::new();
            let from = wal.first_index().map_or(start, |f| f.max(start));
            let to = match (wal.last_index(), end) {
                (None, _) => None,
                (Some(l), Bound::Included(e)) => Some(l.min(e)),
                (Some(l), Bound::Excluded(e)) => e.checked_sub(1).map(|e| l.min(e)),
                (Some(l), Bound::Unbounded) => Some(l),
            };
            let to = match (to, cut) {
                (Some(t), Some(c)) => c.checked_sub(1).map(|c| t.min(c)),
                (t, _) => t,
            };
            if let Some(to) = to {
                for index in from..=to {
                    if let Some(e) = read_entry(&wal, &dir, index)? {
                        out.insert(index, e);
                    }
                }
            }
            out.extend(newer.into_iter().map(|e| (e.index(), e)));
            Ok(out.into_values().collect())
        })
        .await
        .map_err(io_err)?;
        self.fatal(r)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let vote: Option<Vote> = self.read_meta(KEY_VOTE)?;
        if let Some(v) = &vote {
            // Written by a build without the term guard: starting would overflow the term at the
            // first election. Refuse to start, with the way out (README: "A poisoned term").
            check_term(v).map_err(|e| {
                io_err(format!(
                    "{e}; this FE's Raft log was poisoned by a forged message before the term \
                     guard existed: see README \"A poisoned term\" for recovery"
                ))
            })?;
        }
        Ok(vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.read_meta(KEY_PURGED)?;
        let last = self.last_entry()?;
        Ok(LogState {
            last_log_id: last.or(last_purged),
            last_purged_log_id: last_purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // The last line of defence: the network layer refuses such terms before openraft sees
        // them, and a term that cannot be incremented must never reach the disk.
        check_term(vote)?;
        let value = codec::seal(&meta_context(KEY_VOTE), &codec::encode(vote)?);
        self.submit(|done| Op::PutMeta {
            key: KEY_VOTE,
            value,
            done,
        })
        .await
    }

    /// Written to the `committed` file at once when this log is durable up to it, else by the
    /// writer after the commit that makes it so; never fsynced (see `committed`). The writer
    /// moves the durable index before it looks at `pending`, and this reads the durable index
    /// under the same lock, so a committed id is never left waiting for a commit already done.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut c = self.committed.lock().expect("committed lock poisoned");
        c.latest = committed;
        if committed.map_or(0, |l| l.index) <= *self.durable_index.borrow() {
            c.write(committed, &self.fault)
        } else {
            c.pending = Some(committed);
            Ok(())
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self
            .committed
            .lock()
            .expect("committed lock poisoned")
            .latest)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let mut encoded = Vec::new();
        let mut kept = Vec::new();
        for e in entries {
            let index = e.index();
            encoded.push((
                index,
                codec::seal(&entry_context(index), &codec::encode(&e)?),
            ));
            kept.push((index, e));
        }
        // Readable from the tail once this returns; durable when the callback fires. The tail
        // is updated and the op queued under one lock, so tail order is queue order.
        let mut tail = self.tail();
        let seq = tail.seq();
        for (index, entry) in kept {
            tail.entries.insert(index, (seq, entry));
        }
        self.queue(Op::Append {
            seq,
            entries: encoded,
            flushed: callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        let rx = {
            let mut tail = self.tail();
            let seq = tail.seq();
            tail.entries.retain(|&i, _| i < from);
            let from = tail.cut.map_or(from, |(_, earlier)| earlier.min(from));
            tail.cut = Some((seq, from));
            // The entries at `from` and after are about to be replaced: not durable ones.
            self.durable_index
                .send_modify(|d| *d = (*d).min(from.saturating_sub(1)));
            self.queue_answered(|done| Op::TruncateFrom { seq, from, done })?
        };
        self.answer(rx).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let purged = codec::seal(&meta_context(KEY_PURGED), &codec::encode(&log_id)?);
        let upto = log_id.index();
        let rx = {
            let mut tail = self.tail();
            tail.entries.retain(|&i, _| i > upto);
            self.queue_answered(|done| Op::Purge { purged, upto, done })?
        };
        self.answer(rx).await
    }
}

#[cfg(test)]
// Tests hold the writer's gate across awaits on purpose.
#[allow(clippy::await_holding_lock)]
mod tests {
    use super::*;
    use openraft::testing::blank_ent;
    use openraft::type_config::TypeConfigExt;

    fn write_legacy(path: &Path) {
        let db = Database::create(path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(LOGS).unwrap();
            for i in 1..=3u64 {
                let e: Entry = blank_ent::<TypeConfig>(1, 1, i);
                t.insert(i, codec::encode(&e).unwrap().as_slice()).unwrap();
            }
            w.open_table(META).unwrap();
        }
        w.commit().unwrap();
    }

    /// Opens the file raw, once the writer thread of a dropped `LogStore` has let it go.
    fn open_raw(path: &Path) -> Database {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Database::create(path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::yield_now()
                }
                r => return r.unwrap(),
            }
        }
    }

    fn put_raw(path: &Path, index: u64, value: &[u8]) {
        let db = open_raw(path);
        let w = db.begin_write().unwrap();
        w.open_table(LOGS).unwrap().insert(index, value).unwrap();
        w.commit().unwrap();
    }

    fn raw_get(path: &Path, index: u64) -> Option<Vec<u8>> {
        let db = open_raw(path);
        let r = db.begin_read().unwrap();
        let t = r.open_table(LOGS).unwrap();
        t.get(index).unwrap().map(|v| v.value().to_vec())
    }

    /// The one segment file of the wal beside `log.redb` in `dir`.
    fn only_segment(dir: &Path) -> PathBuf {
        let segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(segs.len(), 1, "{segs:?}");
        segs[0].clone()
    }

    /// Open `path` again once the last store's writer thread has let go of it.
    fn reopen_log(path: &Path, fault: Arc<Fault>) -> LogStore {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match LogStore::open(path, fault.clone()) {
                Ok(log) => return log,
                Err(e) if e.to_string().contains("already open") => {
                    assert!(std::time::Instant::now() < deadline, "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The error of opening `path`, once the last store's writer thread has let go of it.
    fn reopen_err(path: &Path) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match LogStore::open(path, Fault::new()) {
                Ok(_) => panic!("opened"),
                Err(e) if e.to_string().contains("already open") => {
                    assert!(std::time::Instant::now() < deadline, "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return e.to_string(),
            }
        }
    }

    /// A log from before seals opens, its entries read as they are, and is sealed from then on;
    /// in a sealed log a damaged, unsealed or misplaced entry refuses the open, naming it.
    #[tokio::test]
    async fn legacy_logs_open_and_damaged_entries_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        // A misplaced entry in an old file refuses before anything moves.
        write_legacy(&path);
        let entry = |i| codec::encode(&blank_ent::<TypeConfig>(1, 1, i)).unwrap();
        put_raw(&path, 2, &entry(3));
        let msg = LogStore::open(&path, Fault::new())
            .err()
            .expect("a misplaced entry opened")
            .to_string();
        for part in [path.to_str().unwrap(), "table logs", "log index 2"] {
            assert!(msg.contains(part), "{msg:?} lacks {part:?}");
        }
        put_raw(&path, 2, &entry(2));
        // Opened: the entries move to the wal and leave log.redb.
        {
            let mut log = LogStore::open(&path, Fault::new()).expect("legacy log opens");
            assert_eq!(log.try_get_log_entries(1..4).await.unwrap().len(), 3);
        }
        assert!(raw_get(&path, 2).is_none(), "still in log.redb");
        let seg = only_segment(dir.path());
        let good = std::fs::read(&seg).unwrap();
        // A flipped byte in entry 2 (entry 3 after it): refused, named, with the way out.
        let mut bad = good.clone();
        bad[crate::wal::written_len(&good) / 2] ^= 0x01;
        std::fs::write(&seg, &bad).unwrap();
        let msg = reopen_err(&path);
        for part in ["wal", "checksum mismatch", "remove its data_dir"] {
            assert!(msg.contains(part), "{msg:?} lacks {part:?}");
        }
        std::fs::write(&seg, &good).unwrap();
        let mut log = reopen_log(&path, Fault::new());
        assert_eq!(log.try_get_log_entries(1..4).await.unwrap().len(), 3);
    }

    /// A failed read is reported to the fault, which stops the FE.
    #[tokio::test]
    async fn a_damaged_entry_read_while_running_is_a_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        write_legacy(&path);
        drop(LogStore::open(&path, Fault::new()).unwrap());
        let fault = Fault::new();
        // Opened afresh: the tail is empty, so reads go to the file.
        let mut log = reopen_log(&path, fault.clone());
        let seg = only_segment(dir.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = crate::wal::written_len(&bytes) / 2; // inside entry 2
        bytes[at] ^= 0x80;
        std::fs::write(&seg, &bytes).unwrap();
        assert!(log.try_get_log_entries(1..4).await.is_err());
        let f = fault.get().expect("fault recorded");
        assert!(
            f.contains("log index 2") && f.contains("checksum mismatch"),
            "{f}"
        );
    }

    /// `append` returns while the writer still waits to commit (here: for a write transaction
    /// the test holds), its entries readable at once; the callback fires only after the commit,
    /// which is one fsync; the committed log id adds no commit (it goes to its own file).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn append_returns_before_its_fsync_and_reports_it_through_the_callback() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(&dir.path().join("log.redb"), Fault::new()).unwrap();
        let gate = log.gate.clone();
        // Held across awaits on purpose: the writer waits on it.
        let held = gate.lock().unwrap();
        let (tx, mut flushed) = TypeConfig::oneshot();
        let entries: Vec<Entry> = (1..=3).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
        tokio::time::timeout(
            Duration::from_secs(5),
            log.append(entries, IOFlushed::signal(tx)),
        )
        .await
        .expect("append waited for the commit")
        .unwrap();
        let read = log.try_get_log_entries(1..4).await.unwrap();
        assert_eq!(
            read.iter().map(|e| e.index()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            log.get_log_state()
                .await
                .unwrap()
                .last_log_id
                .unwrap()
                .index(),
            3
        );
        assert!(flushed.try_recv().is_err(), "flushed before the commit");
        assert_eq!(log.durable_commits(), 0);

        drop(held);
        tokio::time::timeout(Duration::from_secs(10), &mut flushed)
            .await
            .expect("no callback after the commit")
            .unwrap()
            .unwrap();
        assert_eq!(log.durable_commits(), 1, "one fsync for the batch");
        assert_eq!(log.tail().written, 1, "the tail knows they are committed");
        assert_eq!(log.try_get_log_entries(2..4).await.unwrap().len(), 2);

        let committed = Some(blank_ent::<TypeConfig>(1, 1, 3).log_id());
        log.save_committed(committed).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), committed);
        // A vote is durable when saved; the writer counts before it answers.
        log.save_vote(&vote(1)).await.unwrap();
        assert_eq!(log.durable_commits(), 2, "the committed id took a commit");
        let in_file = || {
            crate::committed::CommittedFile::open(&dir.path().join("committed"))
                .unwrap()
                .1
        };
        assert_eq!(in_file(), Found::Valid(committed));
    }

    /// The tail keeps the last `RECENT` committed entries (replication reads them from memory);
    /// older ones are read from the wal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tail_keeps_the_recent_committed_entries() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(&dir.path().join("log.redb"), Fault::new()).unwrap();
        let n = RECENT as u64 + 44;
        for i in 1..=n {
            let (tx, flushed) = TypeConfig::oneshot();
            log.append([blank_ent::<TypeConfig>(1, 1, i)], IOFlushed::signal(tx))
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(10), flushed)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        let kept: Vec<u64> = log.tail().entries.keys().copied().collect();
        assert_eq!(kept, (n - RECENT as u64 + 1..=n).collect::<Vec<_>>());
        let all = log.try_get_log_entries(1..=n).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.index()).collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>()
        );
    }

    /// A committed id past the log's durable index waits for the commit that covers it, and a
    /// reopened log starts from the newest one written, never past its last entry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committed_id_is_written_once_the_log_is_durable_up_to_it() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let in_file = || {
            crate::committed::CommittedFile::open(&dir.path().join("committed"))
                .unwrap()
                .1
        };
        let id = |i| Some(blank_ent::<TypeConfig>(1, 1, i).log_id());
        let mut log = LogStore::open(&path, Fault::new()).unwrap();
        let gate = log.gate.clone();
        // Held across awaits on purpose: the writer waits on it.
        let held = gate.lock().unwrap();
        let (tx, flushed) = TypeConfig::oneshot();
        let entries: Vec<Entry> = (1..=2).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        log.save_committed(id(2)).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), id(2));
        assert_eq!(
            in_file(),
            Found::Nothing,
            "written before the log is durable"
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), flushed)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while in_file() != Found::Valid(id(2)) {
            assert!(std::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(log);
        let mut log = reopen_log(&path, Fault::new());
        assert_eq!(log.read_committed().await.unwrap(), id(2));
        // A record past the log's last entry (a log restored from elsewhere) is not used.
        log.committed.lock().unwrap().file.write(id(9)).unwrap();
        drop(log);
        let mut log = reopen_log(&path, Fault::new());
        assert_eq!(log.read_committed().await.unwrap(), None);
    }

    /// A truncation not yet committed hides what it cuts from the wal, and entries appended after
    /// it are read from the tail, before and after the commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_past_a_truncation_read_from_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(&dir.path().join("log.redb"), Fault::new()).unwrap();
        let (tx, rx) = TypeConfig::oneshot();
        let first: Vec<Entry> = (1..=4).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
        log.append(first, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();

        let gate = log.gate.clone();
        // Held across awaits on purpose: the writer waits on it.
        let held = gate.lock().unwrap();
        let mut other = log.clone();
        let truncating = tokio::spawn(async move {
            other
                .truncate_after(Some(blank_ent::<TypeConfig>(1, 1, 2).log_id()))
                .await
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.tail().cut.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "truncation never queued"
            );
            tokio::task::yield_now().await;
        }
        let (tx, flushed) = TypeConfig::oneshot();
        let second = vec![blank_ent::<TypeConfig>(2, 1, 3)];
        log.append(second, IOFlushed::signal(tx)).await.unwrap();
        let ids = |read: Vec<Entry>| -> Vec<(u64, u64)> {
            read.iter()
                .map(|e| (e.log_id().leader_id.term, e.index()))
                .collect()
        };
        let want = [(1, 1), (1, 2), (2, 3)];
        assert_eq!(ids(log.try_get_log_entries(1..10).await.unwrap()), want);
        assert_eq!(
            log.get_log_state()
                .await
                .unwrap()
                .last_log_id
                .unwrap()
                .index(),
            3
        );

        drop(held);
        truncating.await.unwrap().unwrap();
        flushed.await.unwrap().unwrap();
        assert_eq!(ids(log.try_get_log_entries(1..10).await.unwrap()), want);
        assert!(log.tail().cut.is_none());
        // All committed: the tail keeps them as recent entries.
        assert_eq!(log.tail().entries.len(), 3);
        let tail = log.tail();
        assert_eq!(tail.written, tail.next_seq);
    }

    fn vote(term: u64) -> Vote {
        Vote::new(term, 1)
    }

    #[tokio::test]
    async fn a_term_that_cannot_be_incremented_is_never_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(&dir.path().join("log.redb"), Fault::new()).unwrap();
        log.save_vote(&vote(7)).await.unwrap();
        let e = log.save_vote(&vote(u64::MAX)).await.unwrap_err();
        assert!(e.to_string().contains("above the largest term"), "{e}");
        log.save_vote(&vote(MAX_TERM + 1)).await.unwrap_err();
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(vote(7)),
            "the vote is unchanged"
        );
    }

    #[tokio::test]
    async fn a_poisoned_vote_on_disk_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            // As a build without the guard left it.
            let db = Database::create(&path).unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(META)
                .unwrap()
                .insert(KEY_VOTE, codec::encode(&vote(u64::MAX)).unwrap().as_slice())
                .unwrap();
            w.commit().unwrap();
        }
        let mut log = LogStore::open(&path, Fault::new()).unwrap();
        let e = log.read_vote().await.unwrap_err();
        assert!(e.to_string().contains("A poisoned term"), "{e}");
    }
}
