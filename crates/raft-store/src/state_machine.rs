//! The state machine in `sm.redb`: one table per entity plus a `meta` table (singletons,
//! last-applied log id, last membership, the current snapshot).
//!
//! Reads are served from an in-memory copy of the state behind a lock; every apply batch writes
//! exactly the rows it changed, with last-applied and membership, in one fsynced transaction
//! before any client is answered. Snapshots are built from one consistent view of
//! (state, last-applied, membership), so a snapshot never holds entries past its log id.

use crate::applier;
use crate::cmd::{Reply, Response};
use crate::codec;
use crate::events;
use crate::io_err;
use crate::legacy;
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use roster_membership::backend::{Backend, Tombstone};
use roster_membership::blacklist::BlacklistEntry;
use roster_membership::catalog::{Table, Tablet};
use roster_membership::moves::Move;
use roster_membership::state::Meta;
use roster_membership::tracked::TrackedMap;
use roster_membership::users::User;
use roster_membership::{BackendId, ClusterState, FrontendId, MoveId, TableId, TabletId};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
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
    view: RwLock<View>,
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
    map.take_dirty()
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
            (TABLETS, all_rows(&state.tablets)?),
            (MOVES, all_rows(&state.moves)?),
        ]
    } else {
        vec![
            (BACKENDS, dirty_rows(&mut state.backends)?),
            (TOMBSTONES, dirty_rows(&mut state.tombstones)?),
            (USERS, dirty_rows(&mut state.users)?),
            (BLACKLIST, dirty_rows(&mut state.blacklist)?),
            (TABLES, dirty_rows(&mut state.tables)?),
            (TABLETS, dirty_rows(&mut state.tablets)?),
            (MOVES, dirty_rows(&mut state.moves)?),
        ]
    })
}

fn write_rows(db: &Database, rows: RowWrites) -> io::Result<()> {
    let w = crate::begin_write(db)?;
    {
        let mut meta = w.open_table(META).map_err(io_err)?;
        for (k, v) in &rows.meta {
            meta.insert(*k, v.as_slice()).map_err(io_err)?;
        }
        for (name, table_rows) in &rows.tables {
            let mut t = w.open_table(entity(name)).map_err(io_err)?;
            if rows.replace_all {
                t.retain(|_, _| false).map_err(io_err)?;
            }
            for (k, v) in table_rows {
                match v {
                    Some(v) => t.insert(k.as_slice(), v.as_slice()).map_err(io_err)?,
                    None => t.remove(k.as_slice()).map_err(io_err)?,
                };
            }
        }
    }
    w.commit().map_err(io_err)
}

fn load_map<K: TableKey, V: Row>(
    r: &redb::ReadTransaction,
    name: &str,
) -> io::Result<TrackedMap<K, V>> {
    let t = r.open_table(entity(name)).map_err(io_err)?;
    let mut m = BTreeMap::new();
    for item in t.iter().map_err(io_err)? {
        let (k, v) = item.map_err(io_err)?;
        m.insert(K::decode_key(k.value())?, V::decode_row(v.value())?);
    }
    Ok(TrackedMap::from_clean(m))
}

fn get_meta<T: DeserializeOwned>(r: &redb::ReadTransaction, key: &str) -> io::Result<Option<T>> {
    let t = r.open_table(META).map_err(io_err)?;
    match t.get(key).map_err(io_err)? {
        Some(v) => Ok(Some(codec::decode(v.value())?)),
        None => Ok(None),
    }
}

fn note_membership(state: &mut ClusterState, m: &StoredMembership) {
    state.note_frontends(m.membership().nodes().map(|(id, _)| FrontendId(*id)));
}

impl StateMachineStore {
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(path)
            .map_err(io_err)?;
        {
            let w = crate::begin_write(&db)?;
            w.open_table(META).map_err(io_err)?;
            for name in ENTITY_TABLES {
                w.open_table(entity(name)).map_err(io_err)?;
            }
            w.commit().map_err(io_err)?;
        }
        let view = {
            let r = db.begin_read().map_err(io_err)?;
            let state = ClusterState {
                backends: load_map(&r, BACKENDS)?,
                tombstones: load_map(&r, TOMBSTONES)?,
                users: load_map(&r, USERS)?,
                blacklist: load_map(&r, BLACKLIST)?,
                tables: load_map(&r, TABLES)?,
                tablets: load_map(&r, TABLETS)?,
                moves: load_map(&r, MOVES)?,
                meta: get_meta::<Meta>(&r, KEY_META)?.unwrap_or_default(),
            };
            let applied = AppliedState {
                last_applied: get_meta::<Option<LogId>>(&r, KEY_APPLIED)?.flatten(),
                membership: get_meta(&r, KEY_MEMBERSHIP)?.unwrap_or_default(),
            };
            View { state, applied }
        };
        Ok(StateMachineStore {
            inner: Arc::new(Shared {
                db,
                view: RwLock::new(view),
            }),
        })
    }

    /// Read the applied state. Callers that need linearizability wait for the read index first.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState, &AppliedState) -> R) -> R {
        let v = self.inner.view.read().expect("state lock poisoned");
        f(&v.state, &v.applied)
    }

    async fn commit(&self, rows: RowWrites) -> io::Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || write_rows(&inner.db, rows))
            .await
            .map_err(io_err)?
    }

    fn snapshot_of(&self) -> io::Result<(SnapshotMeta, Vec<u8>)> {
        let v = self.inner.view.read().expect("state lock poisoned");
        let data = codec::encode_v2(&v.state)?;
        let meta = SnapshotMeta {
            last_log_id: v.applied.last_applied,
            last_membership: v.applied.membership.clone(),
        };
        Ok((meta, data))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = self.snapshot_of()?;
        let blob = codec::encode(&(&meta, &data))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let w = crate::begin_write(&inner.db)?;
            w.open_table(META)
                .map_err(io_err)?
                .insert(KEY_SNAPSHOT, blob.as_slice())
                .map_err(io_err)?;
            w.commit().map_err(io_err)
        })
        .await
        .map_err(io_err)??;
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
        // Logged once durable, so a crash before the commit does not log what it undoes.
        let mut events = Vec::new();
        let rows = {
            let mut v = self.inner.view.write().expect("state lock poisoned");
            let View { state, applied } = &mut *v;
            for (entry, responder) in batch {
                applied.last_applied = Some(entry.log_id);
                let index = entry.log_id.index;
                let resp = match &entry.payload {
                    EntryPayload::Blank => Response::Ok(Reply::Done),
                    EntryPayload::Normal(req) => {
                        let before = events::before(state, &req.cmd);
                        let resp = applier::apply(state, req);
                        if let Some(b) = before {
                            let happened = events::after(b, state, &req.cmd, &resp);
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
            RowWrites {
                meta: vec![
                    (KEY_META, codec::encode(&state.meta)?),
                    (KEY_APPLIED, codec::encode(&applied.last_applied)?),
                    (KEY_MEMBERSHIP, codec::encode(&applied.membership)?),
                ],
                tables: entity_rows(state, false)?,
                replace_all: false,
            }
        };
        fail::fail_point!("raft-sm-before-apply", |_| crate::failpoints::crash(
            "raft-sm-before-apply"
        ));
        // Durable before anyone is answered.
        self.commit(rows).await?;
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
        let mut state: ClusterState =
            codec::decode_v2::<ClusterState, legacy::ClusterStateV1>(&snapshot)?;
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
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut v = inner.view.write().expect("state lock poisoned");
            write_rows(&inner.db, rows)?;
            tracing::info!(
                "installed a snapshot up to {:?}",
                applied.last_applied.map(|l| l.index)
            );
            *v = View { state, applied };
            Ok(())
        })
        .await
        .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let r = self.inner.db.begin_read().map_err(io_err)?;
        let snap: Option<(SnapshotMeta, Vec<u8>)> = get_meta(&r, KEY_SNAPSHOT)?;
        Ok(snap.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
