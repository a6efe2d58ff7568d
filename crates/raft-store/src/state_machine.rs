//! The state machine in `sm.redb`: one table per entity plus a `meta` table (singletons,
//! last-applied log id, last membership, the current snapshot).
//!
//! Reads are served from an in-memory copy of the state behind a lock. An apply batch changes
//! that copy only (its maps mark the rows it changed), and clients are answered at once: the log
//! already holds the entries on a quorum. At most once per `DURABLE_EVERY`, and with every
//! snapshot, the rows changed since the last time are written with last-applied and membership
//! in one durable commit, once the log is durable up to that applied index. After a crash the
//! file is at its last durable commit, rows and last-applied together, and openraft re-applies
//! the committed entries past it from the log at start (`get_initial_state`; the log store
//! writes the committed log id at once, so a killed process keeps it). A clean stop persists
//! (`persist_now`), so it re-applies nothing. Snapshots and
//! their installs are always durable, so the log is never purged past what this file holds.
//! Snapshots are built from one consistent view of (state, last-applied, membership), so a
//! snapshot never holds entries past its log id.
//!
//! Every row is sealed (`codec::seal` over the table, the key and the value) and checked when
//! it is read: all of them at open, and again before a snapshot is built (a scrub of the file).
//! Snapshot data is sealed with its last log index and checked before it is installed. A file
//! written before seals existed is read unverified once at open, rewritten sealed and marked
//! (`KEY_SEALED`); in a marked file an unsealed row is damage. Storage failures are reported
//! to the `Fault`, which stops the FE.

use crate::cmd::{Reply, Response};
use crate::codec::{self, Unsealed};
use crate::integrity::{Corruption, Fault, at_file, guarded};
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::version::{self, DATA_VERSION, KEY_DATA_VERSION};
use crate::{applier, events, io_err, legacy};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use roster_membership::model::backend::{Backend, Tombstone};
use roster_membership::model::blacklist::BlacklistEntry;
use roster_membership::model::catalog::{Table, Tablet};
use roster_membership::model::moves::Move;
use roster_membership::model::state::Meta;
use roster_membership::model::tracked::TrackedMap;
use roster_membership::model::users::User;
use roster_membership::{BackendId, ClusterState, FrontendId, MoveId, TableId, TabletId, Term};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// One table per entity, keyed by `TableKey` bytes.
const BACKENDS: &str = "backends";
const TOMBSTONES: &str = "tombstones";
const USERS: &str = "users";
const BLACKLIST: &str = "blacklist";
const TABLES: &str = "tables";
const TABLETS: &str = "tablets";
const MOVES: &str = "moves";
const ENTITY_TABLES: [&str; 7] = [
    BACKENDS, TOMBSTONES, USERS, BLACKLIST, TABLES, TABLETS, MOVES,
];
const KEY_META: &str = "meta";
const KEY_APPLIED: &str = "last_applied";
const KEY_MEMBERSHIP: &str = "last_membership";
const KEY_SNAPSHOT: &str = "snapshot";
/// Present once every row in the file is sealed: an unsealed row after that is damage.
const KEY_SEALED: &str = "sealed";
const META_KEYS: [&str; 6] = [
    KEY_META,
    KEY_APPLIED,
    KEY_MEMBERSHIP,
    KEY_SNAPSHOT,
    KEY_SEALED,
    KEY_DATA_VERSION,
];

fn entity(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// How an entity's key is stored: big-endian integers so tables iterate in key order.
pub trait TableKey: Ord + Clone {
    fn encode_key(&self) -> Vec<u8>;
    fn decode_key(b: &[u8]) -> io::Result<Self>;
}

/// Ids that are one u64: 8 big-endian bytes.
macro_rules! u64_key {
    ($($t:ident),*) => {$(
        impl TableKey for $t {
            fn encode_key(&self) -> Vec<u8> {
                self.0.to_be_bytes().to_vec()
            }
            fn decode_key(b: &[u8]) -> io::Result<Self> {
                let a: [u8; 8] = b
                    .try_into()
                    .map_err(|_| io_err(concat!(stringify!($t), " key is not 8 bytes")))?;
                Ok($t(u64::from_be_bytes(a)))
            }
        }
    )*};
}

u64_key!(BackendId, TableId, TabletId, MoveId);

/// (frontend, backend): 16 bytes, frontend first, so one FE's entries are contiguous.
impl TableKey for (FrontendId, BackendId) {
    fn encode_key(&self) -> Vec<u8> {
        let mut k = self.0.0.to_be_bytes().to_vec();
        k.extend_from_slice(&self.1.0.to_be_bytes());
        k
    }
    fn decode_key(b: &[u8]) -> io::Result<Self> {
        let a: [u8; 16] = b
            .try_into()
            .map_err(|_| io_err("blacklist key is not 16 bytes"))?;
        let (f, be) = a.split_at(8);
        Ok((
            FrontendId(u64::from_be_bytes(f.try_into().expect("8 bytes"))),
            BackendId(u64::from_be_bytes(be.try_into().expect("8 bytes"))),
        ))
    }
}

impl TableKey for String {
    fn encode_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode_key(b: &[u8]) -> io::Result<Self> {
        String::from_utf8(b.to_vec()).map_err(io_err)
    }
}

/// How far this state machine has applied the log, and the membership it last applied.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

struct View {
    state: ClusterState,
    applied: AppliedState,
}

struct Shared {
    db: Database,
    path: PathBuf,
    fault: Arc<Fault>,
    view: RwLock<View>,
    /// When applied rows were last committed durably (see `DURABLE_EVERY`).
    last_durable: std::sync::Mutex<std::time::Instant>,
    /// Durable commits of this file (`stats`).
    durable: std::sync::atomic::AtomicU64,
    /// The log's durable index (`LogStore::durable_index`): no durable commit of rows applied
    /// past it. Unset for a state machine used without a log (storage tests).
    log_durable: std::sync::OnceLock<tokio::sync::watch::Receiver<u64>>,
}

/// How long a snapshot waits for the log to be durable up to what it persists.
const LOG_DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Shared {
    /// Whether the log holds entries up to `index` on disk (always, without a log).
    fn log_covers(&self, index: u64) -> bool {
        self.log_durable
            .get()
            .is_none_or(|rx| *rx.borrow() >= index)
    }

    /// The applied index of the in-memory view: at least that of every committed row.
    fn applied_index(&self) -> u64 {
        let v = self.view.read().expect("state lock poisoned");
        v.applied.last_applied.map_or(0, |l| l.index)
    }

    /// Under the `last_durable` lock: take the rows changed since the last persist, with
    /// last-applied, membership and `extra` meta rows, from the view and commit them durably,
    /// unless the log is not yet durable up to that applied index (then nothing is taken and
    /// false is returned: the rows stay marked dirty for the next try).
    fn persist(
        &self,
        last: &mut std::time::Instant,
        extra: Vec<(&'static str, Vec<u8>)>,
    ) -> io::Result<bool> {
        let rows = {
            let mut v = self.view.write().expect("state lock poisoned");
            let View { state, applied } = &mut *v;
            if !self.log_covers(applied.last_applied.map_or(0, |l| l.index)) {
                return Ok(false);
            }
            let mut meta = vec![
                (KEY_META, codec::encode(&state.meta)?),
                (KEY_APPLIED, codec::encode(&applied.last_applied)?),
                (KEY_MEMBERSHIP, codec::encode(&applied.membership)?),
            ];
            meta.extend(extra);
            RowWrites {
                meta,
                tables: entity_rows(state, false)?,
                replace_all: false,
            }
        };
        self.write(rows)?;
        *last = std::time::Instant::now();
        Ok(true)
    }

    /// `write_rows` to this file, counted as a durable commit.
    fn write(&self, rows: RowWrites) -> io::Result<()> {
        write_rows(&self.db, &self.path, rows)?;
        crate::stats::durable_commit(crate::stats::File::StateMachine, &self.durable);
        Ok(())
    }
}

/// Cheap to clone; all clones share one database and one view.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Shared>,
}

type Rows = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Rows to write for one batch, already encoded, so the commit can run off the async threads.
#[derive(Default)]
struct RowWrites {
    meta: Vec<(&'static str, Vec<u8>)>,
    tables: Vec<(&'static str, Rows)>,
    /// Replace whole tables (snapshot install) instead of writing single rows.
    replace_all: bool,
}

/// How an entity table's values are stored: format 1, or format 2 for the shapes that grew
/// (reading their format-1 rows through `legacy`).
trait Row: Serialize + DeserializeOwned {
    fn encode_row(&self) -> io::Result<Vec<u8>> {
        codec::encode(self)
    }
    fn decode_row(b: &[u8]) -> io::Result<Self> {
        codec::decode(b)
    }
}

impl Row for Backend {
    fn encode_row(&self) -> io::Result<Vec<u8>> {
        codec::encode_v2(self)
    }
    fn decode_row(b: &[u8]) -> io::Result<Self> {
        codec::decode_v2::<Backend, legacy::BackendV1>(b)
    }
}
impl Row for User {}
impl Row for BlacklistEntry {}
impl Row for Table {}
impl Row for Tablet {}
impl Row for Move {}
impl Row for Tombstone {
    fn encode_row(&self) -> io::Result<Vec<u8>> {
        codec::encode_v2(self)
    }
    fn decode_row(b: &[u8]) -> io::Result<Self> {
        codec::decode_v2::<Tombstone, legacy::TombstoneV1>(b)
    }
}

fn dirty_rows<K: TableKey, V: Row>(map: &mut TrackedMap<K, V>) -> io::Result<Rows> {
    changed_rows(map.take_dirty())
}

/// The rows of `take_dirty`'s answer (`None`: deleted).
fn changed_rows<K: TableKey, V: Row>(changed: Vec<(K, Option<&V>)>) -> io::Result<Rows> {
    changed
        .into_iter()
        .map(|(k, v)| Ok((k.encode_key(), v.map(V::encode_row).transpose()?)))
        .collect()
}

fn all_rows<K: TableKey, V: Row>(map: &TrackedMap<K, V>) -> io::Result<Rows> {
    map.iter()
        .map(|(k, v)| Ok((k.encode_key(), Some(v.encode_row()?))))
        .collect()
}

/// Every entity table's rows: the changed ones, or all of them.
fn entity_rows(state: &mut ClusterState, all: bool) -> io::Result<Vec<(&'static str, Rows)>> {
    Ok(if all {
        vec![
            (BACKENDS, all_rows(&state.backends)?),
            (TOMBSTONES, all_rows(&state.tombstones)?),
            (USERS, all_rows(&state.users)?),
            (BLACKLIST, all_rows(&state.blacklist)?),
            (TABLES, all_rows(&state.tables)?),
            (TABLETS, all_rows(state.tablets.tracked())?),
            (MOVES, all_rows(&state.moves)?),
        ]
    } else {
        vec![
            (BACKENDS, dirty_rows(&mut state.backends)?),
            (TOMBSTONES, dirty_rows(&mut state.tombstones)?),
            (USERS, dirty_rows(&mut state.users)?),
            (BLACKLIST, dirty_rows(&mut state.blacklist)?),
            (TABLES, dirty_rows(&mut state.tables)?),
            (TABLETS, changed_rows(state.tablets.take_dirty())?),
            (MOVES, dirty_rows(&mut state.moves)?),
        ]
    })
}

/// At most this long between durable commits of applied rows: bounds what a restart re-applies
/// from the log and how long redb keeps pages it cannot free before a durable commit.
const DURABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Write `rows` in one commit, each value sealed with its table and key.
fn write_rows(db: &Database, path: &Path, rows: RowWrites) -> io::Result<()> {
    let at = |e: redb::Error| at_file(path, e);
    let w = crate::begin_write(db).map_err(|e| at_file(path, e))?;
    {
        let mut meta = w.open_table(META).map_err(|e| at(e.into()))?;
        for (k, v) in &rows.meta {
            let sealed = codec::seal(&codec::seal_context("meta", k.as_bytes()), v);
            meta.insert(*k, sealed.as_slice())
                .map_err(|e| at(e.into()))?;
        }
        for (name, table_rows) in &rows.tables {
            let mut t = w.open_table(entity(name)).map_err(|e| at(e.into()))?;
            if rows.replace_all {
                t.retain(|_, _| false).map_err(|e| at(e.into()))?;
            }
            for (k, v) in table_rows {
                match v {
                    Some(v) => {
                        let sealed = codec::seal(&codec::seal_context(name, k), v);
                        t.insert(k.as_slice(), sealed.as_slice())
                            .map_err(|e| at(e.into()))?
                    }
                    None => t.remove(k.as_slice()).map_err(|e| at(e.into()))?,
                };
            }
        }
    }
    w.commit().map_err(|e| at(e.into()))
}

/// How a key is shown in a corruption report: text if it is, else hex.
fn show_key(k: &[u8]) -> String {
    match std::str::from_utf8(k) {
        Ok(t) if t.chars().all(|c| !c.is_control()) => format!("{t:?}"),
        _ => format!(
            "0x{}",
            k.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// Check one stored value of `table`/`key` and hand back the blob inside.
fn checked<'a>(
    path: &Path,
    table: &str,
    key: &[u8],
    bytes: &'a [u8],
    sealed_file: bool,
) -> io::Result<&'a [u8]> {
    match codec::unseal(&codec::seal_context(table, key), bytes) {
        Ok(Unsealed::Verified(b)) => Ok(b),
        Ok(Unsealed::Legacy(b)) if !sealed_file => Ok(b),
        Ok(Unsealed::Legacy(_)) => Err(Corruption::new(
            path,
            table,
            show_key(key),
            "row has no checksum in a file whose rows are all sealed",
        )
        .into()),
        Err(e) => Err(Corruption::new(path, table, show_key(key), e).into()),
    }
}

/// How the rows are read: which file (for reports) and whether it is marked sealed.
#[derive(Clone, Copy)]
struct Reader<'a> {
    path: &'a Path,
    sealed_file: bool,
}

impl Reader<'_> {
    fn bad(&self, table: &str, key: &[u8], e: impl ToString) -> io::Error {
        Corruption::new(self.path, table, show_key(key), e).into()
    }

    fn load_map<K: TableKey, V: Row>(
        &self,
        r: &redb::ReadTransaction,
        name: &str,
    ) -> io::Result<TrackedMap<K, V>> {
        let at = |e: redb::Error| at_file(self.path, e);
        let t = r.open_table(entity(name)).map_err(|e| at(e.into()))?;
        let mut m = BTreeMap::new();
        for item in t.iter().map_err(|e| at(e.into()))? {
            let (k, v) = item.map_err(|e| at(e.into()))?;
            let blob = checked(self.path, name, k.value(), v.value(), self.sealed_file)?;
            let key = K::decode_key(k.value()).map_err(|e| self.bad(name, k.value(), e))?;
            let row = V::decode_row(blob).map_err(|e| self.bad(name, k.value(), e))?;
            m.insert(key, row);
        }
        Ok(TrackedMap::from_clean(m))
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        r: &redb::ReadTransaction,
        key: &str,
    ) -> io::Result<Option<T>> {
        let at = |e: redb::Error| at_file(self.path, e);
        let t = r.open_table(META).map_err(|e| at(e.into()))?;
        match t.get(key).map_err(|e| at(e.into()))? {
            Some(v) => {
                let blob = checked(
                    self.path,
                    "meta",
                    key.as_bytes(),
                    v.value(),
                    self.sealed_file,
                )?;
                let value = codec::decode(blob).map_err(|e| self.bad("meta", key.as_bytes(), e))?;
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }

    /// Every row of the file, checked: the state, the applied state, and the stored snapshot
    /// with its data. Unknown meta keys are damage too.
    fn load(&self, r: &redb::ReadTransaction) -> io::Result<View> {
        let state = ClusterState {
            backends: self.load_map(r, BACKENDS)?,
            tombstones: self.load_map(r, TOMBSTONES)?,
            users: self.load_map(r, USERS)?,
            blacklist: self.load_map(r, BLACKLIST)?,
            tables: self.load_map(r, TABLES)?,
            tablets: self.load_map(r, TABLETS)?.into(),
            moves: self.load_map(r, MOVES)?,
            meta: self.get_meta::<Meta>(r, KEY_META)?.unwrap_or_default(),
        };
        let applied = AppliedState {
            last_applied: self.get_meta::<Option<LogId>>(r, KEY_APPLIED)?.flatten(),
            membership: self.get_meta(r, KEY_MEMBERSHIP)?.unwrap_or_default(),
        };
        self.get_meta::<u32>(r, KEY_DATA_VERSION)?;
        if let Some((meta, data)) = self.get_meta::<(SnapshotMeta, Vec<u8>)>(r, KEY_SNAPSHOT)? {
            decode_snapshot(&meta, &data)
                .map_err(|e| self.bad("meta", KEY_SNAPSHOT.as_bytes(), e))?;
        }
        let t = r.open_table(META).map_err(|e| at_file(self.path, e))?;
        for item in t.iter().map_err(|e| at_file(self.path, e))? {
            let (k, _) = item.map_err(|e| at_file(self.path, e))?;
            if !META_KEYS.contains(&k.value()) {
                return Err(self.bad("meta", k.value().as_bytes(), "unknown key"));
            }
        }
        Ok(View { state, applied })
    }
}

/// The seal context of snapshot data: its last log index, so data cannot pass for another
/// snapshot's.
fn snapshot_context(meta: &SnapshotMeta) -> Vec<u8> {
    let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
    codec::seal_context("snapshot", &index.to_be_bytes())
}

/// Check snapshot data against its seal (data from before seals is taken as it is) and decode
/// the state in it.
pub fn decode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> io::Result<ClusterState> {
    let blob = codec::unseal(&snapshot_context(meta), data)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot data: {e}")))?;
    codec::decode_v2::<ClusterState, legacy::ClusterStateV1>(blob.blob())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot data: {e}")))
}

/// The meta rows of the applied state (written by every apply batch).
fn applied_rows(v: &View) -> io::Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        (KEY_META, codec::encode(&v.state.meta)?),
        (KEY_APPLIED, codec::encode(&v.applied.last_applied)?),
        (KEY_MEMBERSHIP, codec::encode(&v.applied.membership)?),
    ])
}

fn note_membership(state: &mut ClusterState, m: &StoredMembership) {
    state.note_frontends(m.membership().nodes().map(|(id, _)| FrontendId(*id)));
}

impl StateMachineStore {
    /// Open (or create) `path`, check every row in it, seal a file written before seals, and
    /// stamp it with this build's data version (refusing a file of a newer one).
    pub fn open(path: &Path, fault: Arc<Fault>) -> io::Result<Self> {
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(path)
            .map_err(|e| at_file(path, e))?;
        let at = |e: redb::Error| at_file(path, e);
        let (sealed_file, data_version) = {
            let w = crate::begin_write(&db).map_err(|e| at_file(path, e))?;
            let (sealed, data_version) = {
                let meta = w.open_table(META).map_err(|e| at(e.into()))?;
                let sealed = meta.get(KEY_SEALED).map_err(|e| at(e.into()))?.is_some();
                let raw = meta.get(KEY_DATA_VERSION).map_err(|e| at(e.into()))?;
                // First of all: a newer build's rows may not mean what this build thinks.
                let v = version::stored(path, raw.as_ref().map(|v| v.value()))?;
                (sealed, v)
            };
            for name in ENTITY_TABLES {
                w.open_table(entity(name)).map_err(|e| at(e.into()))?;
            }
            w.commit().map_err(|e| at(e.into()))?;
            (sealed, data_version)
        };
        let reader = Reader { path, sealed_file };
        let mut view = {
            let r = db.begin_read().map_err(|e| at(e.into()))?;
            reader.load(&r)?
        };
        if !sealed_file {
            // Read unverified (there was no checksum to verify against); sealed from now on.
            let snapshot: Option<(SnapshotMeta, Vec<u8>)> = {
                let r = db.begin_read().map_err(|e| at(e.into()))?;
                reader.get_meta(&r, KEY_SNAPSHOT)?
            };
            let mut meta = applied_rows(&view)?;
            if let Some(snap) = snapshot {
                meta.push((KEY_SNAPSHOT, codec::encode(&snap)?));
            }
            meta.push((KEY_SEALED, codec::encode(&1u8)?));
            meta.push((KEY_DATA_VERSION, version::encode()?));
            let rows = RowWrites {
                meta,
                tables: entity_rows(&mut view.state, true)?,
                replace_all: true,
            };
            write_rows(&db, path, rows)?;
        } else if data_version != Some(DATA_VERSION) {
            let rows = RowWrites {
                meta: vec![(KEY_DATA_VERSION, version::encode()?)],
                tables: vec![],
                replace_all: false,
            };
            write_rows(&db, path, rows)?;
        }
        Ok(StateMachineStore {
            inner: Arc::new(Shared {
                db,
                path: path.to_path_buf(),
                fault,
                view: RwLock::new(view),
                last_durable: std::sync::Mutex::new(std::time::Instant::now()),
                durable: Default::default(),
                log_durable: Default::default(),
            }),
        })
    }

    /// Commit applied rows durably only once the log holds them on disk (`crate::open` wires
    /// this; see `LogStore::durable_index`).
    pub fn gate_on(&self, log_durable: tokio::sync::watch::Receiver<u64>) {
        let _ = self.inner.log_durable.set(log_durable);
    }

    /// Durable (fsynced) commits of this file since it was opened.
    pub fn durable_commits(&self) -> u64 {
        self.inner
            .durable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where this FE's storage failures go (the FE stops on the first).
    pub fn fault(&self) -> &Arc<Fault> {
        &self.inner.fault
    }

    /// Report a failed storage operation to the fault, and pass it on.
    fn fatal<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            self.inner.fault.report("sm.redb", e);
        }
        r
    }

    /// Re-read every row of `sm.redb` and check it (before a snapshot is built).
    pub fn scrub(&self) -> io::Result<()> {
        let path = self.inner.path.as_path();
        guarded(path, || {
            let r = self.inner.db.begin_read().map_err(|e| at_file(path, e))?;
            Reader {
                path,
                sealed_file: true,
            }
            .load(&r)
            .map(drop)
        })
    }

    /// The applied index and the SHA-1 of the whole replicated state, read together: FEs at
    /// one index must agree (the Status call with_digest: tests and the Jepsen checker).
    pub fn digest(&self) -> (u64, String) {
        self.read(|state, applied| {
            use sha1::Digest;
            let bytes = bincode::serialize(state).unwrap_or_default();
            let hex: String = sha1::Sha1::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (applied.last_applied.map(|l| l.index).unwrap_or(0), hex)
        })
    }

    /// Read the applied state. Callers that need linearizability wait for the read index first.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState, &AppliedState) -> R) -> R {
        let v = self.inner.view.read().expect("state lock poisoned");
        f(&v.state, &v.applied)
    }

    /// Persist what applies changed, at most once per `DURABLE_EVERY` (see `Shared::persist`);
    /// in between an apply touches no file at all.
    async fn maybe_persist(&self) -> io::Result<()> {
        self.persist_if(false).await
    }

    /// Persist what applies changed now, if the log is durable that far (a clean stop: the
    /// next start then re-applies nothing). Otherwise the next start re-applies from the log.
    pub async fn persist_now(&self) -> io::Result<()> {
        self.persist_if(true).await
    }

    async fn persist_if(&self, now: bool) -> io::Result<()> {
        // Called from Raft's apply: never wait here for the lock, which a persist, a snapshot
        // or an install holds across an fsync. Busy means one of them is writing the rows
        // anyway; a skipped persist only leaves the rows to the next (the log covers them).
        let due = |inner: &Shared| {
            now || match inner.last_durable.try_lock() {
                Ok(last) => last.elapsed() >= DURABLE_EVERY,
                Err(std::sync::TryLockError::WouldBlock) => false,
                Err(std::sync::TryLockError::Poisoned(_)) => panic!("sm flush lock poisoned"),
            }
        };
        if !due(&self.inner) || !self.inner.log_covers(self.inner.applied_index()) {
            return Ok(());
        }
        let inner = self.inner.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut last = inner.last_durable.lock().expect("sm flush lock poisoned");
            if !now && last.elapsed() < DURABLE_EVERY {
                return Ok(()); // a snapshot just did
            }
            guarded(&inner.path, || inner.persist(&mut last, Vec::new())).map(drop)
        })
        .await
        .map_err(io_err)?;
        self.fatal(r)
    }

    fn snapshot_of(&self) -> io::Result<(SnapshotMeta, Vec<u8>)> {
        let v = self.inner.view.read().expect("state lock poisoned");
        let meta = SnapshotMeta {
            last_log_id: v.applied.last_applied,
            last_membership: v.applied.membership.clone(),
        };
        let data = codec::seal(&snapshot_context(&meta), &codec::encode_v2(&v.state)?);
        Ok((meta, data))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = self.snapshot_of()?;
        let blob = codec::encode(&(&meta, &data))?;
        let this = self.clone();
        let runtime = tokio::runtime::Handle::current();
        let r = tokio::task::spawn_blocking(move || -> io::Result<()> {
            // A damaged row found now stops the FE rather than waiting for its next start.
            this.scrub()?;
            // Durable, with every row applied so far: the log may be purged up to it. No
            // apply persists meanwhile, and the log must be durable up to what is persisted
            // (applies go on, so the index to wait for may move on while we wait).
            let mut last = this
                .inner
                .last_durable
                .lock()
                .expect("sm flush lock poisoned");
            let deadline = std::time::Instant::now() + LOG_DURABLE_WAIT;
            loop {
                if let Some(rx) = this.inner.log_durable.get() {
                    let need = this.inner.applied_index();
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let mut rx = rx.clone();
                    runtime
                        .block_on(async {
                            tokio::time::timeout(left, rx.wait_for(|d| *d >= need)).await
                        })
                        .map_err(|_| {
                            io_err(format!(
                                "the log was not durable up to index {need} within {LOG_DURABLE_WAIT:?}"
                            ))
                        })?
                        .map_err(|_| io_err("the log store is gone"))?;
                }
                if this.inner.persist(&mut last, vec![(KEY_SNAPSHOT, blob.clone())])? {
                    return Ok(());
                }
            }
        })
        .await
        .map_err(io_err)?;
        self.fatal(r)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok(self.read(|_, a| (a.last_applied, a.membership.clone())))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        while let Some(item) = entries.try_next().await? {
            batch.push(item);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut answers = Vec::with_capacity(batch.len());
        // Logged once the rows are committed (an entry re-applied after a crash logs again).
        let mut events = Vec::new();
        {
            let mut v = self.inner.view.write().expect("state lock poisoned");
            let View { state, applied } = &mut *v;
            for (entry, responder) in batch {
                applied.last_applied = Some(entry.log_id);
                let index = entry.log_id.index;
                let resp = match &entry.payload {
                    EntryPayload::Blank => Response::Ok(Reply::Done),
                    EntryPayload::Normal(req) => {
                        let entry_term = Term(entry.log_id.leader_id.term);
                        let before = events::before(state, req.cmd.unfenced());
                        let resp = applier::apply(state, req, entry_term);
                        if let Some(b) = before {
                            let happened = events::after(b, state, req.cmd.unfenced(), &resp);
                            events.extend(happened.into_iter().map(|e| (index, e)));
                        }
                        resp
                    }
                    EntryPayload::Membership(m) => {
                        let happened = events::membership(applied.membership.membership(), m);
                        events.extend(happened.into_iter().map(|e| (index, e)));
                        applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        note_membership(state, &applied.membership);
                        Response::Ok(Reply::Done)
                    }
                };
                if let Some(r) = responder {
                    answers.push((r, resp));
                }
            }
        }
        fail::fail_point!("raft-sm-before-apply", |_| crate::failpoints::crash(
            "raft-sm-before-apply"
        ));
        // The changed rows stay marked dirty in memory; durable through the log meanwhile (see
        // the module doc).
        self.maybe_persist().await?;
        fail::fail_point!("raft-sm-after-apply", |_| crate::failpoints::crash(
            "raft-sm-after-apply"
        ));
        for (r, resp) in answers {
            r.send(resp);
        }
        for (index, e) in events {
            e.log(index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        // Checked by the Raft service on arrival too; here it guards every other path.
        let mut state = decode_snapshot(meta, &snapshot)?;
        let applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        note_membership(&mut state, &applied.membership);
        let rows = RowWrites {
            meta: vec![
                (KEY_META, codec::encode(&state.meta)?),
                (KEY_APPLIED, codec::encode(&applied.last_applied)?),
                (KEY_MEMBERSHIP, codec::encode(&applied.membership)?),
                (KEY_SNAPSHOT, codec::encode(&(meta, &snapshot))?),
            ],
            tables: entity_rows(&mut state, true)?,
            replace_all: true,
        };
        fail::fail_point!("raft-sm-before-install", |_| crate::failpoints::crash(
            "raft-sm-before-install"
        ));
        // Hold the view lock across the commit so no reader sees the old state after the new
        // one is durable, nor the new one before.
        let inner = self.inner.clone();
        let r = tokio::task::spawn_blocking(move || -> io::Result<()> {
            // No persist in flight: it could write rows of the old state over the new one.
            let mut last = inner.last_durable.lock().expect("sm flush lock poisoned");
            let mut v = inner.view.write().expect("state lock poisoned");
            inner.write(rows)?;
            *last = std::time::Instant::now();
            tracing::info!(
                "installed a snapshot up to {:?}",
                applied.last_applied.map(|l| l.index)
            );
            *v = View { state, applied };
            Ok(())
        })
        .await
        .map_err(io_err)?;
        self.fatal(r)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let r = guarded(&self.inner.path, || {
            let path = self.inner.path.as_path();
            let r = self.inner.db.begin_read().map_err(|e| at_file(path, e))?;
            let reader = Reader {
                path,
                sealed_file: true,
            };
            let snap: Option<(SnapshotMeta, Vec<u8>)> = reader.get_meta(&r, KEY_SNAPSHOT)?;
            if let Some((meta, data)) = &snap {
                decode_snapshot(meta, data)
                    .map_err(|e| reader.bad("meta", KEY_SNAPSHOT.as_bytes(), e))?;
            }
            Ok(snap.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
        });
        self.fatal(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_membership::User;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            password: None,
            privileges: Default::default(),
            created_ms: 7,
        }
    }

    /// Write rows as a build from before seals did: format-1 values, no checksum, no mark.
    fn write_legacy(path: &Path) {
        let db = Database::create(path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(entity(USERS)).unwrap();
            t.insert(
                "alice".as_bytes(),
                codec::encode(&user("alice")).unwrap().as_slice(),
            )
            .unwrap();
            let mut m = w.open_table(META).unwrap();
            let applied: Option<LogId> = None;
            m.insert(KEY_APPLIED, codec::encode(&applied).unwrap().as_slice())
                .unwrap();
        }
        w.commit().unwrap();
    }

    fn raw_user(path: &Path) -> Vec<u8> {
        let db = Database::create(path).unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table(entity(USERS)).unwrap();
        t.get("alice".as_bytes()).unwrap().unwrap().value().to_vec()
    }

    fn put_raw_user(path: &Path, value: &[u8]) {
        let db = Database::create(path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(entity(USERS))
            .unwrap()
            .insert("alice".as_bytes(), value)
            .unwrap();
        w.commit().unwrap();
    }

    /// A file from before seals opens (its rows read as they are), and is sealed from then on.
    #[test]
    fn a_file_from_before_seals_opens_and_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sm.redb");
        write_legacy(&path);
        let sm = StateMachineStore::open(&path, Fault::new()).expect("legacy file opens");
        assert_eq!(
            sm.read(|s, _| s.users.get(&"alice".to_string()).cloned()),
            Some(user("alice"))
        );
        drop(sm);
        let raw = raw_user(&path);
        assert_eq!(raw[0], codec::SEALED, "rewritten sealed");
        // Opens again, now verified.
        let sm = StateMachineStore::open(&path, Fault::new()).expect("sealed file opens");
        assert_eq!(sm.read(|s, _| s.users.len()), 1);
        sm.scrub().expect("scrub passes");
    }

    /// In a sealed file, a damaged row, or an unsealed one, refuses the open naming file,
    /// table, key and the remedy.
    #[test]
    fn a_damaged_row_refuses_to_open_naming_file_table_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sm.redb");
        write_legacy(&path);
        drop(StateMachineStore::open(&path, Fault::new()).unwrap());
        let good = raw_user(&path);
        for (what, bad) in [
            ("flipped value byte", {
                let mut b = good.clone();
                *b.last_mut().unwrap() ^= 0x10;
                b
            }),
            ("unsealed value", codec::encode(&user("alice")).unwrap()),
        ] {
            put_raw_user(&path, &bad);
            let err = StateMachineStore::open(&path, Fault::new())
                .err()
                .unwrap_or_else(|| panic!("{what}: opened"));
            let msg = err.to_string();
            for part in [
                path.to_str().unwrap(),
                "table users",
                "key \"alice\"",
                "remove its data_dir",
            ] {
                assert!(msg.contains(part), "{what}: {msg:?} lacks {part:?}");
            }
        }
        // The good row back: it opens.
        put_raw_user(&path, &good);
        StateMachineStore::open(&path, Fault::new()).expect("repaired file opens");
    }

    /// A scrub (run before every snapshot build) finds damage done while the FE runs.
    #[test]
    fn scrub_finds_damage_in_a_running_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sm.redb");
        write_legacy(&path);
        let sm = StateMachineStore::open(&path, Fault::new()).unwrap();
        let mut bad = {
            let r = sm.inner.db.begin_read().unwrap();
            let t = r.open_table(entity(USERS)).unwrap();
            t.get("alice".as_bytes()).unwrap().unwrap().value().to_vec()
        };
        bad[6] ^= 1;
        let w = sm.inner.db.begin_write().unwrap();
        w.open_table(entity(USERS))
            .unwrap()
            .insert("alice".as_bytes(), bad.as_slice())
            .unwrap();
        w.commit().unwrap();
        let msg = sm.scrub().unwrap_err().to_string();
        assert!(msg.contains("checksum mismatch"), "{msg}");
    }

    /// A snapshot from a leader running a newer build (a blob format above this build's) is
    /// refused saying so, not taken for damage.
    #[test]
    fn a_snapshot_of_a_newer_format_is_refused_naming_the_newer_build() {
        let meta = SnapshotMeta::default();
        let mut blob = codec::encode_v2(&ClusterState::default()).unwrap();
        blob[0] = codec::FORMAT_V2 + 1;
        let sealed = codec::seal(&snapshot_context(&meta), &blob);
        let msg = decode_snapshot(&meta, &sealed).unwrap_err().to_string();
        assert!(
            msg.contains("blob format 3 is newer") && msg.contains("newer Roster"),
            "{msg}"
        );
    }

    /// Snapshot data carries its own seal, bound to its last log index.
    #[test]
    fn snapshot_data_is_checked_against_its_seal() {
        let meta = SnapshotMeta::default();
        let state = ClusterState::default();
        let sealed = codec::seal(&snapshot_context(&meta), &codec::encode_v2(&state).unwrap());
        decode_snapshot(&meta, &sealed).expect("sealed snapshot decodes");
        // Data from before seals decodes unverified.
        decode_snapshot(&meta, &codec::encode_v2(&state).unwrap()).expect("legacy snapshot");
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 0x40;
            assert!(
                decode_snapshot(&meta, &b).is_err(),
                "flip at byte {i} passed"
            );
        }
    }

    /// An apply writes nothing: a file reopened after applies (a crash) is at its last durable
    /// commit, and openraft re-applies the rest from the log. A snapshot persists every row
    /// applied so far, with last-applied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applied_rows_reach_the_file_with_the_next_persist() {
        use crate::cmd::{Cmd, Request};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sm.redb");
        let create = |i: u64| {
            let blank = openraft::testing::blank_ent::<TypeConfig>(1, 1, i);
            let cmd = Cmd::CreateUser {
                name: format!("u{i}"),
                password: None,
            };
            crate::types::Entry {
                log_id: blank.log_id,
                payload: EntryPayload::Normal(Request {
                    time_ms: 1,
                    user: None,
                    cmd,
                }),
            }
        };
        let users = |sm: &StateMachineStore| sm.read(|s, _| s.users.len());
        let mut sm = StateMachineStore::open(&path, Fault::new()).unwrap();
        let before = users(&sm);
        for i in 1..=3u64 {
            sm.apply(futures::stream::iter([Ok((create(i), None))]))
                .await
                .unwrap();
        }
        assert_eq!(users(&sm), before + 3, "applied in memory");
        drop(sm);
        let mut sm = StateMachineStore::open(&path, Fault::new()).unwrap();
        assert_eq!(
            users(&sm),
            before,
            "nothing persisted within the first second"
        );
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        for i in 1..=3u64 {
            sm.apply(futures::stream::iter([Ok((create(i), None))]))
                .await
                .unwrap();
        }
        sm.build_snapshot().await.unwrap();
        drop(sm);
        let mut sm = StateMachineStore::open(&path, Fault::new()).unwrap();
        assert_eq!(
            users(&sm),
            before + 3,
            "the snapshot persisted every applied row"
        );
        assert_eq!(sm.applied_state().await.unwrap().0.unwrap().index, 3);
    }

    /// An apply never waits for a persist, snapshot or install in flight (they hold the flush
    /// lock across an fsync, which a slow disk can stretch to seconds, and an apply runs in
    /// Raft's own tasks): with the lock held elsewhere, and a persist due, it still returns.
    #[test]
    fn an_apply_does_not_wait_for_the_flush_lock() {
        use openraft::testing::blank_ent;
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachineStore::open(&dir.path().join("sm.redb"), Fault::new()).unwrap();
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let inner = sm.inner.clone();
        let holder = std::thread::spawn(move || {
            let mut last = inner.last_durable.lock().unwrap();
            // Long ago: a persist is due.
            *last = std::time::Instant::now() - 2 * DURABLE_EVERY;
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        held.recv().unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        let mut applier = sm.clone();
        let apply = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(applier.apply(futures::stream::iter([Ok((
                blank_ent::<TypeConfig>(1, 1, 1),
                None,
            ))])));
            done_tx.send(r.is_ok()).unwrap();
        });
        let answered = done.recv_timeout(std::time::Duration::from_secs(10));
        release.send(()).unwrap();
        holder.join().unwrap();
        apply.join().unwrap();
        assert_eq!(
            answered,
            Ok(true),
            "the apply waited for the flush lock held elsewhere"
        );
    }

    /// Applied rows are committed without an fsync of their own: at most one durable commit
    /// per `DURABLE_EVERY`, however many batches are applied; a snapshot is always durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applies_fsync_at_most_once_a_second_and_snapshots_always() {
        use openraft::testing::blank_ent;
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(&dir.path().join("sm.redb"), Fault::new()).unwrap();
        let started = std::time::Instant::now();
        for i in 1..=50u64 {
            let entry = blank_ent::<TypeConfig>(1, 1, i);
            sm.apply(futures::stream::iter([Ok((entry, None))]))
                .await
                .unwrap();
        }
        let most = started.elapsed().as_secs() + 1;
        let fsyncs = sm.durable_commits();
        assert!(
            fsyncs <= most,
            "{fsyncs} durable commits for 50 applies in {:?}",
            started.elapsed()
        );
        assert_eq!(sm.applied_state().await.unwrap().0.unwrap().index, 50);
        sm.build_snapshot().await.unwrap();
        assert_eq!(sm.durable_commits(), fsyncs + 1, "the snapshot is durable");
    }
}
