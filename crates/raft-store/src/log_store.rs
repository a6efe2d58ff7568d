//! The Raft log in `log.redb`: entries keyed by index, and a `meta` table for the vote, the last
//! purged log id and the committed log id.
//!
//! One dedicated writer thread owns every redb write transaction (redb allows one writer, and
//! `begin_write` blocks). It drains all queued operations into one `Immediate` (fsynced) commit,
//! which is group commit, and only then acknowledges them, in submission order: `append` is
//! readable and durable when its callback fires, `save_vote` is durable when it returns.

use crate::codec;
use crate::io_err;
use crate::types::{Entry, LogId, MAX_TERM, TypeConfig, Vote};
use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
const KEY_COMMITTED: &str = "committed";

/// One queued write; `done` fires after the commit that contains it.
enum Op {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        done: oneshot::Sender<io::Result<()>>,
        flushed: IOFlushed<TypeConfig>,
    },
    PutMeta {
        key: &'static str,
        value: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Delete log entries with index >= from.
    TruncateFrom {
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

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    tx: mpsc::Sender<Op>,
}

impl LogStore {
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(path)
            .map_err(io_err)?;
        {
            let w = crate::begin_write(&db)?;
            w.open_table(LOGS).map_err(io_err)?;
            w.open_table(META).map_err(io_err)?;
            w.commit().map_err(io_err)?;
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(wdb, rx))?;
        Ok(LogStore { db, tx })
    }

    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Op,
    ) -> io::Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(make(done))
            .map_err(|_| io_err("log writer thread is gone"))?;
        rx.await.map_err(|_| io_err("log writer thread is gone"))?
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let r = self.db.begin_read().map_err(io_err)?;
        let t = r.open_table(META).map_err(io_err)?;
        match t.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(codec::decode(v.value())?)),
            None => Ok(None),
        }
    }
}

fn writer_loop(db: Arc<Database>, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let res = write_batch(&db, &batch);
        fail::fail_point!("raft-log-after-append", |_| crate::failpoints::crash(
            "raft-log-after-append"
        ));
        for op in batch {
            let r = res
                .as_ref()
                .map(|_| ())
                .map_err(|e| io::Error::new(e.kind(), e.to_string()));
            match op {
                Op::Append { done, flushed, .. } => {
                    let r2 = r
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| io::Error::new(e.kind(), e.to_string()));
                    let _ = done.send(r);
                    flushed.io_completed(r2);
                }
                Op::PutMeta { done, .. }
                | Op::TruncateFrom { done, .. }
                | Op::Purge { done, .. } => {
                    let _ = done.send(r);
                }
            }
        }
        if let Err(e) = res {
            // redb answers PreviousIo after an IO error; openraft stops on the error we returned.
            tracing::error!("raft log write failed: {e}");
        }
    }
}

fn write_batch(db: &Database, batch: &[Op]) -> io::Result<()> {
    fail::fail_point!("raft-log-before-append", |_| crate::failpoints::crash(
        "raft-log-before-append"
    ));
    let w = crate::begin_write(db)?;
    {
        let mut logs = w.open_table(LOGS).map_err(io_err)?;
        let mut meta = w.open_table(META).map_err(io_err)?;
        for op in batch {
            match op {
                Op::Append { entries, .. } => {
                    for (idx, bytes) in entries {
                        logs.insert(*idx, bytes.as_slice()).map_err(io_err)?;
                    }
                }
                Op::PutMeta { key, value, .. } => {
                    meta.insert(*key, value.as_slice()).map_err(io_err)?;
                }
                Op::TruncateFrom { from, .. } => {
                    logs.retain_in(*from.., |_, _| false).map_err(io_err)?;
                }
                Op::Purge { purged, upto, .. } => {
                    meta.insert(KEY_PURGED, purged.as_slice()).map_err(io_err)?;
                    logs.retain_in(..=*upto, |_, _| false).map_err(io_err)?;
                }
            }
        }
    }
    w.commit().map_err(io_err)
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
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(io_err)?;
            let t = r.open_table(LOGS).map_err(io_err)?;
            let mut out = Vec::new();
            for item in t
                .range::<u64>((Bound::Included(start), end))
                .map_err(io_err)?
            {
                let (_, v) = item.map_err(io_err)?;
                out.push(codec::decode::<Entry>(v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(io_err)?
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
        let last = {
            let r = self.db.begin_read().map_err(io_err)?;
            let t = r.open_table(LOGS).map_err(io_err)?;
            match t.last().map_err(io_err)? {
                Some((_, v)) => Some(codec::decode::<Entry>(v.value())?.log_id()),
                None => None,
            }
        };
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
        let value = codec::encode(vote)?;
        self.submit(|done| Op::PutMeta {
            key: KEY_VOTE,
            value,
            done,
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let value = codec::encode(&committed)?;
        self.submit(|done| Op::PutMeta {
            key: KEY_COMMITTED,
            value,
            done,
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
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
        for e in entries {
            encoded.push((e.index(), codec::encode(&e)?));
        }
        // Returns once the batch is committed, so the entries are readable; the callback has
        // fired by then too.
        self.submit(|done| Op::Append {
            entries: encoded,
            done,
            flushed: callback,
        })
        .await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        self.submit(|done| Op::TruncateFrom { from, done }).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let purged = codec::encode(&log_id)?;
        let upto = log_id.index();
        self.submit(|done| Op::Purge { purged, upto, done }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(term: u64) -> Vote {
        Vote::new(term, 1)
    }

    #[tokio::test]
    async fn a_term_that_cannot_be_incremented_is_never_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(&dir.path().join("log.redb")).unwrap();
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
        let mut log = LogStore::open(&path).unwrap();
        let e = log.read_vote().await.unwrap_err();
        assert!(e.to_string().contains("A poisoned term"), "{e}");
    }
}
