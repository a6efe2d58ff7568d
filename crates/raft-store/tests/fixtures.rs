//! Data written by an earlier build is read by this one, forever (the upgrade rule in
//! `src/version.rs`).
//!
//! `fixtures/data-v2/` is fe1's `data_dir/raft` of a real playground run by the build of
//! 2026-12-06 (data version 2, before the data-version row existed), after, through a real
//! mysql client: CREATE USER alice + GRANT NODE_PRIV, BLACKLIST; ADMIN SET FRONTEND CONFIG
//! tablet_repair_delay_second = 77; ADD BACKEND 127.0.9.1:9050 (10005, tag g9; every FE then
//! blacklisted it AUTO); ADD BACKEND BLACKLIST 10001 (on fe1); MODIFY BACKEND 10002
//! disable_query; CREATE TABLE t2 BUCKETS 2 + DROP TABLE t2 (recycle bin); DECOMMISSION
//! BACKEND 10004 (its replicas moved by real clones, then dropped by the master); ADD + DROPP
//! BACKEND 127.0.9.2:9050 (10006); `roster node drain 10003`; then a restart of every node
//! with `raft.snapshot_logs_since_last = 20`, so `sm.redb` holds a snapshot.
//!
//! `fixtures/data-v3/` is fe1's `data_dir/raft` of a playground run by the build 97926f1
//! (data version 3: the entries in `wal/` segments without zeros ahead, the committed id in
//! `committed`), started with `ROSTER_RAFT__SNAPSHOT_LOGS_SINCE_LAST=20`, after, through a real
//! mysql client on fe1: CREATE USER bob + GRANT NODE_PRIV; ADMIN SET FRONTEND CONFIG
//! tablet_repair_delay_second = 33; ADD BACKEND 127.0.9.3:9050 (10005, tag g3, never alive);
//! MODIFY BACKEND 10002 disable_query; ADD BACKEND BLACKLIST 10001; CREATE TABLE t3 BUCKETS 3
//! replication_num 2; DECOMMISSION BACKEND 10004 (its replicas moved by real clones, then
//! dropped by the master); then a clean stop (Ctrl-C).
//!
//! Never regenerate these files: they stand for every data dir of that version in the field.
//! A later data version adds a directory of its own beside these.

use openraft::EntryPayload;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use redb::{ReadableDatabase, TableDefinition};
use roster_membership::model::backend::BackendMembership;
use roster_membership::model::blacklist::BlacklistKind;
use roster_membership::model::catalog::{ReplicaState, TableState};
use roster_membership::{BackendId, FrontendId, Privilege};
use roster_raft_store::{Cmd, codec, version};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `meta` table of both files.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A copy of a fixture directory (opening a data dir stamps it, and the fixture must stay as
/// the old build wrote it).
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn data_version_2_state_reads_as_written() {
    let dir = copy_of("data-v2");
    let (_log, sm) = roster_raft_store::open(dir.path()).expect("the fixture opens");
    sm.read(|s, applied| {
        let ids: Vec<u64> = s.backends.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [10001, 10002, 10003, 10005]);
        let b = |id| s.backends.get(&BackendId(id)).unwrap();
        assert!(b(10002).disable_query && !b(10002).disable_load);
        assert!(b(10003).draining.is_some(), "10003 is drained");
        assert!(b(10003).disable_query && b(10003).disable_load);
        assert_eq!(b(10001).membership, BackendMembership::Active);
        assert_eq!(b(10005).tags.location, "g9");

        let decommissioned = s.tombstones.get(&BackendId(10004)).unwrap();
        let d = decommissioned
            .decommission
            .as_ref()
            .expect("kept its decommission");
        // Six replicas of 2 MiB (demo's on 10004) moved by real clones.
        assert_eq!(
            (d.drain.tablets_moved, d.drain.tablets_total),
            (6, 6),
            "{d:?}"
        );
        assert_eq!(d.drain.bytes_moved, 6 * (2 << 20), "{d:?}");
        assert!(d.started_ms.is_some());
        let dropped = s.tombstones.get(&BackendId(10006)).unwrap();
        assert_eq!(dropped.addr.to_string(), "127.0.9.2:9050");
        assert!(
            dropped.decommission.is_none(),
            "DROPP keeps no decommission"
        );
        assert_eq!(s.meta.next_backend_id, 10007);

        let alice = s.users.get(&"alice".to_string()).unwrap();
        assert_eq!(
            alice.privileges,
            BTreeSet::from([Privilege::NodePriv, Privilege::Blacklist])
        );
        assert!(alice.password.is_some());
        assert!(s.users.get(&"root".to_string()).is_some());
        assert_eq!(s.meta.settings.values().tablet_repair_delay_second, 77);
        assert_eq!(
            s.meta.frontends_ever,
            BTreeSet::from([FrontendId(1), FrontendId(2), FrontendId(3)])
        );

        let entries = |kind| -> Vec<(u64, u64)> {
            s.blacklist
                .iter()
                .filter(|(_, e)| e.kind == kind)
                .map(|(_, e)| (e.frontend.0, e.backend.0))
                .collect()
        };
        assert_eq!(entries(BlacklistKind::Manual), [(1, 10001)]);
        assert_eq!(
            entries(BlacklistKind::Auto),
            [(1, 10005), (2, 10005), (3, 10005)]
        );

        let tables: Vec<_> = s
            .tables
            .iter()
            .map(|(_, t)| {
                (
                    t.name.as_str(),
                    matches!(t.state, TableState::Recycled { .. }),
                )
            })
            .collect();
        assert_eq!(tables, [("demo", false), ("t2", true)]);
        let demo = s.tables.iter().find(|(_, t)| t.name == "demo").unwrap().1;
        assert_eq!(demo.tablets.len(), 8);
        for id in &demo.tablets {
            let t = s.tablets.get(id).unwrap();
            let normal: Vec<_> = t
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Normal)
                .collect();
            assert_eq!(normal.len(), 3, "tablet {id:?}: {t:?}");
            assert!(normal.iter().all(|r| r.backend != BackendId(10004)));
            assert!(
                normal
                    .iter()
                    .all(|r| r.bytes == 2 << 20 && r.checksum.is_some())
            );
        }
        assert!(s.moves.is_empty(), "every move finished");
        assert!(applied.last_applied.unwrap().index >= 120);
        assert_eq!(applied.membership.membership().voter_ids().count(), 3);
    });
}

#[tokio::test]
async fn data_version_2_log_and_snapshot_read_as_written() {
    let dir = copy_of("data-v2");
    let (mut log, mut sm) = roster_raft_store::open(dir.path()).expect("the fixture opens");
    let (_, last, entries) = every_entry(&mut log).await;
    let mut seen = BTreeSet::new();
    for e in &entries {
        if let EntryPayload::Normal(req) = &e.payload {
            seen.insert(kind_of(&req.cmd));
            if let Cmd::CreateUser { name, password } = &req.cmd {
                assert_eq!(name, "alice");
                assert!(password.is_some());
                assert_eq!(req.user.as_deref(), Some("root"));
            }
        }
    }
    for kind in [
        "EnsureRoot",
        "AddBackends",
        "CreateUser",
        "Grant",
        "SetConfig",
        "AddBlacklist",
        "ModifyBackends",
        "CreateTable",
        "DropTable",
        "DecommissionBackends",
        "StartMoves",
        "FinishMove",
        "FinishDecommissions",
        "DroppBackends",
        "RecordLiveness",
        "RecordReplicas",
        "RecordConnectFailures",
    ] {
        assert!(seen.contains(kind), "no {kind} entry decoded; saw {seen:?}");
    }

    let snap = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("the fixture holds a snapshot");
    let at = snap.meta.last_log_id.unwrap().index;
    assert!(at >= 20 && at <= last, "snapshot at {at}, log to {last}");
    let s = roster_raft_store::state_machine::decode_snapshot(&snap.meta, &snap.snapshot)
        .expect("the snapshot decodes");
    assert_eq!(s.users.len(), 2);
    assert!(s.tables.iter().any(|(_, t)| t.name == "demo"));
}

#[tokio::test]
async fn data_version_3_state_reads_as_written() {
    let dir = copy_of("data-v3");
    let (_log, sm) = roster_raft_store::open(dir.path()).expect("the fixture opens");
    sm.read(|s, applied| {
        let ids: Vec<u64> = s.backends.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [10001, 10002, 10003, 10005]);
        let b = |id| s.backends.get(&BackendId(id)).unwrap();
        assert!(b(10002).disable_query && !b(10002).disable_load);
        assert_eq!(b(10005).tags.location, "g3");
        assert_eq!(b(10005).addr.to_string(), "127.0.9.3:9050");
        let gone = s.tombstones.get(&BackendId(10004)).unwrap();
        let d = gone.decommission.as_ref().expect("kept its decommission");
        assert!(d.drain.tablets_total > 0, "{d:?}");
        assert_eq!(d.drain.tablets_moved, d.drain.tablets_total, "{d:?}");
        assert_eq!(s.meta.next_backend_id, 10006);

        let bob = s.users.get(&"bob".to_string()).unwrap();
        assert_eq!(bob.privileges, BTreeSet::from([Privilege::NodePriv]));
        assert_eq!(s.meta.settings.values().tablet_repair_delay_second, 33);
        let manual: Vec<_> = s
            .blacklist
            .iter()
            .filter(|(_, e)| e.kind == BlacklistKind::Manual)
            .map(|(_, e)| (e.frontend.0, e.backend.0))
            .collect();
        assert_eq!(manual, [(1, 10001)]);

        let mut tables: Vec<_> = s.tables.iter().map(|(_, t)| t.name.as_str()).collect();
        tables.sort();
        assert_eq!(tables, ["demo", "t3"]);
        let t3 = s.tables.iter().find(|(_, t)| t.name == "t3").unwrap().1;
        assert_eq!(t3.tablets.len(), 3);
        for id in &t3.tablets {
            let t = s.tablets.get(id).unwrap();
            let normal: Vec<_> = t
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Normal)
                .collect();
            assert_eq!(normal.len(), 2, "tablet {id:?}: {t:?}");
            assert!(normal.iter().all(|r| r.backend != BackendId(10004)));
        }
        assert!(s.moves.is_empty(), "every move finished");
        assert_eq!(applied.membership.membership().voter_ids().count(), 3);
    });
}

/// The entries come out of version-3 segments (records up to the end of the file, no zeros
/// after them), the committed id out of `committed`, and the snapshot decodes.
#[tokio::test]
async fn data_version_3_log_and_snapshot_read_as_written() {
    let dir = copy_of("data-v3");
    let (mut log, mut sm) = roster_raft_store::open(dir.path()).expect("the fixture opens");
    let (first, last, entries) = every_entry(&mut log).await;
    let mut seen = BTreeSet::new();
    for e in &entries {
        if let EntryPayload::Normal(req) = &e.payload {
            seen.insert(kind_of(req.cmd.unfenced()));
        }
    }
    for kind in [
        "EnsureRoot",
        "CreateUser",
        "Grant",
        "SetConfig",
        "AddTaggedBackends",
        "ChangeBackends",
        "AddBlacklist",
        "CreateTableSpec",
        "DecommissionBackends",
        "StartMoves",
        "FinishMove",
        "RecordLiveness",
    ] {
        assert!(seen.contains(kind), "no {kind} entry decoded; saw {seen:?}");
    }
    let committed = log.read_committed().await.unwrap().expect("a committed id");
    assert!(committed.index <= last && committed.index >= first);

    let snap = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("the fixture holds a snapshot");
    let at = snap.meta.last_log_id.unwrap().index;
    assert!(at >= 20 && at <= last, "snapshot at {at}, log to {last}");
    let s = roster_raft_store::state_machine::decode_snapshot(&snap.meta, &snap.snapshot)
        .expect("the snapshot decodes");
    assert!(s.users.get(&"bob".to_string()).is_some());
}

/// The variant's name: what an entry decoded as.
fn kind_of(cmd: &Cmd) -> String {
    let name = format!("{cmd:?}");
    name.split([' ', '(']).next().unwrap().to_string()
}

/// The log's entries after the purged ones, all of them there: (first index, last, entries).
async fn every_entry(
    log: &mut roster_raft_store::LogStore,
) -> (u64, u64, Vec<roster_raft_store::types::Entry>) {
    let state = log.get_log_state().await.unwrap();
    let last = state.last_log_id.unwrap().index;
    let first = state.last_purged_log_id.map(|l| l.index + 1).unwrap_or(1);
    let entries = log.try_get_log_entries(first..=last).await.unwrap();
    assert_eq!(entries.len() as u64, last - first + 1);
    (first, last, entries)
}

/// Opening stamps this build's version; a version above it is refused with what to do.
#[tokio::test]
async fn a_data_dir_of_a_newer_version_is_refused_clearly() {
    let dir = copy_of("data-v2");
    drop(roster_raft_store::open(dir.path()).expect("the fixture opens"));
    for file in ["sm.redb", "log.redb"] {
        let path = dir.path().join(file);
        assert_eq!(
            stamped(&path),
            Some(version::DATA_VERSION),
            "{file} stamped"
        );
        stamp(&path, version::DATA_VERSION + 1);
        released(dir.path());
        let msg = roster_raft_store::open(dir.path())
            .err()
            .unwrap_or_else(|| panic!("{file} of a newer version opened"))
            .to_string();
        for part in [
            path.to_str().unwrap(),
            "written by a newer Roster",
            &format!("data version {}", version::DATA_VERSION + 1),
            "remove this FE's data_dir",
        ] {
            assert!(msg.contains(part), "{msg:?} lacks {part:?}");
        }
        stamp(&path, version::DATA_VERSION);
    }
    released(dir.path());
    roster_raft_store::open(dir.path()).expect("opens again at this build's version");
}

/// Open a file raw, once a dropped store's writer thread has let it go.
fn open_raw(path: &Path) -> redb::Database {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match redb::Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            r => return r.unwrap(),
        }
    }
}

/// Wait until a dropped store's log writer thread has let both files go (the next open would
/// otherwise find `log.redb` still open).
fn released(dir: &Path) {
    for f in ["log.redb", "sm.redb"] {
        drop(open_raw(&dir.join(f)));
    }
}

fn version_context() -> Vec<u8> {
    codec::seal_context("meta", version::KEY_DATA_VERSION.as_bytes())
}

/// The data version a file is stamped with.
fn stamped(path: &Path) -> Option<u32> {
    let db = open_raw(path);
    let r = db.begin_read().unwrap();
    let t = r.open_table(META).unwrap();
    let raw = t.get(version::KEY_DATA_VERSION).unwrap()?.value().to_vec();
    let blob = codec::unseal(&version_context(), &raw).unwrap();
    Some(codec::decode(blob.blob()).unwrap())
}

/// Stamp a file as a build of data version `v` would.
fn stamp(path: &Path, v: u32) {
    let db = open_raw(path);
    let w = db.begin_write().unwrap();
    let row = codec::seal(&version_context(), &codec::encode(&v).unwrap());
    w.open_table(META)
        .unwrap()
        .insert(version::KEY_DATA_VERSION, row.as_slice())
        .unwrap();
    w.commit().unwrap();
}
