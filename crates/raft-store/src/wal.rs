//! The Raft log's entries: an append-only log in segment files (`raft/wal/`); `log_store`
//! keeps the vote and the purged id in `log.redb`.
//!
//! Why: at one client the three log writer threads were about 40 % of all FE CPU, about 170 µs
//! per append commit per FE, three quarters of it redb's own work (B-tree insert, freeing the
//! pages of earlier commits, table-root updates). etcd's WAL costs a write and an fdatasync per
//! batch; this is the same shape.
//!
//! Layout: `dir/<first index, 20 digits>.seg`, each a run of records
//! `[len u32][crc32 u32][index u64][payload]` (little-endian; the CRC covers the index and the
//! payload). Indexes are consecutive across all segments. A new segment starts once the active
//! one passes `segment_bytes`, at a batch boundary; creating one fsyncs the directory.
//!
//! Durability: `append` writes, `sync` fdatasyncs the active segment; the caller reports a
//! batch durable only after `sync`. At open every record is read and checked. In the last
//! segment, a bad record with nothing valid after it is a torn write (never reported durable):
//! the file is cut there. A bad record anywhere else is damage and `open` refuses, naming the
//! file and the offset.
//!
//! Zeros ahead: a segment is extended with zeros a chunk (`ZERO_AHEAD`) at a time, in the
//! write that first needs the room, so that most fdatasyncs overwrite blocks the file already
//! has and need no journal commit for its size (ext4: an append that grows the file costs about
//! 60 µs of CPU and 170 µs of wall time per fdatasync here, an overwrite about 40 and 115). The
//! records end where a header is all zeros and so is everything after it; a non-zero byte in
//! that tail is read like a torn write.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const HEADER: usize = 16;
/// Largest payload accepted: a bigger `len` in a header is damage, not an allocation.
const MAX_RECORD: u32 = 256 << 20;
/// How far a segment is zero-filled ahead of its records (at most `segment_bytes`).
const ZERO_AHEAD: u64 = 1 << 20;

/// Where an entry's record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    /// The first index of its segment (the segment's key).
    seg: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    /// Shared with the fdatasync that runs outside the log's lock (`active_file`): a clone of
    /// the handle was two syscalls per append (fcntl to dup, close).
    file: Arc<File>,
    path: PathBuf,
    /// Where the records end.
    len: u64,
    /// The file's length: zeros from `len` to here.
    cap: u64,
}

pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// first index -> segment; the last one is active.
    segments: BTreeMap<u64, Segment>,
    /// index -> record.
    locs: BTreeMap<u64, Loc>,
    /// Entries below this are purged, though their segment may still hold them.
    floor: u64,
    /// The test-only `skip-fsync` switch (`crate::skip_fsync`): appends stay in this process's
    /// memory and never reach the file, so killing the process loses them, as a power failure
    /// loses writes never fsynced.
    volatile: Option<BTreeMap<u64, Vec<u8>>>,
}

/// What `open` found besides the entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Bytes cut from the end of the last segment (a torn write).
    pub torn_bytes: u64,
}

fn seg_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn damage(path: &Path, offset: u64, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} at byte {offset}: {what}", path.display()),
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One record parsed from `buf` at `at`: (index, payload range, next offset), or why not.
fn parse(buf: &[u8], at: usize) -> Result<(u64, std::ops::Range<usize>, usize), String> {
    let Some(h) = buf.get(at..at + HEADER) else {
        return Err("a record header cut short".into());
    };
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    let index = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    if len > MAX_RECORD {
        return Err(format!("a record length of {len} bytes"));
    }
    let body = at + HEADER..at + HEADER + len as usize;
    let Some(payload) = buf.get(body.clone()) else {
        return Err("a record cut short".into());
    };
    let computed = crc(index, payload);
    if computed != stored {
        return Err(format!(
            "checksum mismatch (stored crc32 {stored:08x}, computed {computed:08x})"
        ));
    }
    Ok((index, body.clone(), body.end))
}

impl Wal {
    /// Open (or create) the log in `dir`, checking every record.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<(Self, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name.strip_suffix(".seg") {
                let first = first.parse::<u64>().map_err(|_| {
                    damage(&dir.join(&*name), 0, "a segment name that is not an index")
                })?;
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments: BTreeMap::new(),
            locs: BTreeMap::new(),
            floor: 0,
            volatile: crate::skipping_fsync().then(BTreeMap::new),
        };
        let mut recovered = Recovered::default();
        let last_seg = firsts.last().copied();
        for first in firsts {
            let path = dir.join(seg_name(first));
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let buf = std::fs::read(&path)?;
            let mut at = 0usize;
            let mut expect = first;
            while at < buf.len() {
                if all_zero(&buf[at..]) {
                    break; // the records end; the zeros ahead of them follow
                }
                match parse(&buf, at) {
                    Ok((index, _, next)) => {
                        if index != expect {
                            return Err(damage(
                                &path,
                                at as u64,
                                format!("entry {index} where {expect} was due"),
                            ));
                        }
                        wal.locs.insert(
                            index,
                            Loc {
                                seg: first,
                                offset: at as u64,
                                len: (next - at - HEADER) as u32,
                            },
                        );
                        expect += 1;
                        at = next;
                    }
                    Err(why) => {
                        let torn = Some(first) == last_seg && !valid_after(&buf, at);
                        if !torn {
                            return Err(damage(&path, at as u64, why));
                        }
                        recovered.torn_bytes = (written_len(&buf).max(at) - at) as u64;
                        file.set_len(at as u64)?;
                        file.sync_all()?;
                        break;
                    }
                }
            }
            let cap = file.metadata()?.len();
            let len = at as u64;
            wal.segments.insert(
                first,
                Segment {
                    file: Arc::new(file),
                    path,
                    len,
                    cap,
                },
            );
        }
        Ok((wal, recovered))
    }

    pub fn first_index(&self) -> Option<u64> {
        let on_file = self.locs.range(self.floor..).next().map(|(k, _)| *k);
        let in_memory = self
            .volatile
            .as_ref()
            .and_then(|m| m.range(self.floor..).next());
        on_file.or(in_memory.map(|(k, _)| *k))
    }

    pub fn last_index(&self) -> Option<u64> {
        let in_memory = self.volatile.as_ref().and_then(|m| m.keys().next_back());
        in_memory.or(self.locs.keys().next_back()).copied()
    }

    /// Write `entries` (consecutive, following the last one) to the active segment. Not
    /// durable until `sync`.
    pub fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let Some((first, _)) = entries.first() else {
            return Ok(());
        };
        // An empty log (new, or all purged or truncated) takes any first index.
        if let Some(last) = self.last_index()
            && *first != last + 1
        {
            return Err(io::Error::other(format!(
                "appending entry {first} after {last}: entries must be consecutive"
            )));
        }
        if let Some(mem) = &mut self.volatile {
            mem.extend(entries.iter().cloned());
            return Ok(());
        }
        if self.locs.is_empty() {
            // Start afresh at `first`.
            for (_, s) in std::mem::take(&mut self.segments) {
                std::fs::remove_file(&s.path)?;
            }
        }
        let rotate = self
            .segments
            .values()
            .next_back()
            .is_none_or(|s| s.len >= self.segment_bytes);
        if rotate {
            self.new_segment(*first)?;
        }
        let (&seg, active) = self.segments.iter_mut().next_back().expect("a segment");
        let mut buf = Vec::new();
        let mut locs = Vec::with_capacity(entries.len());
        for (i, (index, payload)) in entries.iter().enumerate() {
            if i > 0 && *index != entries[i - 1].0 + 1 {
                return Err(io::Error::other("entries of a batch must be consecutive"));
            }
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| io::Error::other("an entry larger than a record may be"))?;
            let offset = active.len + buf.len() as u64;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
            locs.push((*index, Loc { seg, offset, len }));
        }
        let end = active.len + buf.len() as u64;
        if end > active.cap {
            // Zeros ahead in the same write: later batches overwrite them.
            let chunk = ZERO_AHEAD.min(self.segment_bytes).max(1);
            active.cap = end.div_ceil(chunk) * chunk;
            buf.resize((active.cap - active.len) as usize, 0);
        }
        active.file.write_all_at(&buf, active.len)?;
        active.len = end;
        self.locs.extend(locs);
        Ok(())
    }

    /// Make everything appended so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(s) = self.segments.values().next_back() {
            s.file.sync_data()?;
        }
        Ok(())
    }

    /// A handle on the active segment, to fdatasync it without holding this log (appends
    /// before the call are then durable; a rotation syncs the segment it leaves itself).
    pub fn active_file(&self) -> Option<Arc<File>> {
        self.segments.values().next_back().map(|s| s.file.clone())
    }

    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        // The active segment's last batch must be on disk before a later segment can be.
        self.sync()?;
        let path = self.dir.join(seg_name(first));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.flush()?;
        sync_dir(&self.dir)?;
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                path,
                len: 0,
                cap: 0,
            },
        );
        Ok(())
    }

    /// The payload of entry `index`, checked.
    pub fn read(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        if index < self.floor {
            return Ok(None);
        }
        if let Some(v) = self.volatile.as_ref().and_then(|m| m.get(&index)) {
            return Ok(Some(v.clone()));
        }
        let Some(loc) = self.locs.get(&index) else {
            return Ok(None);
        };
        let seg = &self.segments[&loc.seg];
        let mut buf = vec![0u8; HEADER + loc.len as usize];
        seg.file.read_exact_at(&mut buf, loc.offset)?;
        match parse(&buf, 0) {
            Ok((i, body, _)) if i == index => Ok(Some(buf[body].to_vec())),
            Ok((i, _, _)) => Err(damage(
                &seg.path,
                loc.offset,
                format!("entry {i} where {index} was due"),
            )),
            Err(why) => Err(damage(&seg.path, loc.offset, why)),
        }
    }

    /// Remove entries `from` and after, durably.
    pub fn truncate_from(&mut self, from: u64) -> io::Result<()> {
        if let Some(mem) = &mut self.volatile {
            mem.split_off(&from);
        }
        let Some(loc) = self.locs.get(&from).copied() else {
            return Ok(());
        };
        let later: Vec<u64> = self
            .segments
            .range(loc.seg + 1..)
            .map(|(k, _)| *k)
            .collect();
        for k in later {
            let s = self.segments.remove(&k).expect("listed");
            std::fs::remove_file(&s.path)?;
        }
        let s = self.segments.get_mut(&loc.seg).expect("its segment");
        s.file.set_len(loc.offset)?;
        s.file.sync_all()?;
        s.len = loc.offset;
        s.cap = loc.offset;
        sync_dir(&self.dir)?;
        self.locs.split_off(&from);
        Ok(())
    }

    /// Delete the segments whose entries are all at or below `upto`; the active one stays
    /// unless every entry is at or below `upto` (a snapshot past the log's end).
    pub fn purge_upto(&mut self, upto: u64) -> io::Result<()> {
        self.floor = self.floor.max(upto + 1);
        if let Some(mem) = &mut self.volatile {
            *mem = mem.split_off(&(upto + 1));
        }
        if self.last_index().is_none_or(|last| last <= upto) {
            for (_, s) in std::mem::take(&mut self.segments) {
                std::fs::remove_file(&s.path)?;
            }
            self.locs.clear();
            return sync_dir(&self.dir);
        }
        let keys: Vec<u64> = self.segments.keys().copied().collect();
        let mut removed = false;
        for pair in keys.windows(2) {
            let (this, next) = (pair[0], pair[1]);
            if next - 1 > upto {
                break;
            }
            let s = self.segments.remove(&this).expect("listed");
            std::fs::remove_file(&s.path)?;
            self.locs = self.locs.split_off(&next);
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// How much of a segment's bytes was written: up to its last non-zero byte (the zeros ahead
/// follow).
pub(crate) fn written_len(buf: &[u8]) -> usize {
    buf.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

fn all_zero(buf: &[u8]) -> bool {
    buf.iter().all(|b| *b == 0)
}

/// Whether any valid record starts after the bad one at `at` (then it is damage, not a torn
/// write): every later offset is tried, since the bad record's length cannot be trusted.
fn valid_after(buf: &[u8], at: usize) -> bool {
    (at + 1..buf.len().saturating_sub(HEADER - 1))
        .filter(|&i| buf[i..i + 4] != [0; 4]) // a zero length is no record (the zeros ahead)
        .any(|i| parse(buf, i).is_ok_and(|(_, b, _)| !b.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: u64, n: u64) -> Vec<(u64, Vec<u8>)> {
        (from..from + n)
            .map(|i| (i, format!("entry {i}").repeat(3).into_bytes()))
            .collect()
    }

    fn reopen(dir: &Path) -> (Wal, Recovered) {
        Wal::open(dir, 256).unwrap()
    }

    #[test]
    fn entries_survive_reopen_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = reopen(dir.path());
        for b in 0..10 {
            w.append(&batch(1 + b * 3, 3)).unwrap();
            w.sync().unwrap();
        }
        assert!(w.segments.len() > 2, "small segments rotate");
        drop(w);
        let (w, rec) = reopen(dir.path());
        assert_eq!(rec, Recovered::default());
        assert_eq!((w.first_index(), w.last_index()), (Some(1), Some(30)));
        for (i, payload) in batch(1, 30) {
            assert_eq!(w.read(i).unwrap(), Some(payload));
        }
    }

    #[test]
    fn appends_overwrite_the_zeros_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 1 << 20).unwrap();
        w.append(&batch(1, 1)).unwrap();
        let path = w.segments.values().next().unwrap().path.clone();
        let size = || std::fs::metadata(&path).unwrap().len();
        assert_eq!(size(), 1 << 20);
        w.append(&batch(2, 2)).unwrap();
        w.sync().unwrap();
        assert_eq!(size(), 1 << 20, "the second batch took room the file had");
        // A batch past the zeros extends the file by whole chunks.
        let big = vec![(4u64, vec![9u8; 1 << 20])];
        w.append(&big).unwrap();
        w.sync().unwrap();
        assert_eq!(size(), 2 << 20);
        drop(w);
        let (w, rec) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec, Recovered::default());
        assert_eq!(w.last_index(), Some(4));
        assert_eq!(w.read(4).unwrap(), Some(big[0].1.clone()));
        assert_eq!(w.read(2).unwrap(), Some(batch(2, 1)[0].1.clone()));
    }

    #[test]
    fn truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = reopen(dir.path());
        for b in 0..10 {
            w.append(&batch(1 + b * 3, 3)).unwrap();
        }
        w.sync().unwrap();
        w.truncate_from(12).unwrap();
        assert_eq!(w.last_index(), Some(11));
        assert!(w.append(&batch(13, 1)).is_err(), "a gap is refused");
        w.append(&batch(12, 2)).unwrap();
        w.sync().unwrap();
        w.purge_upto(10).unwrap();
        let first = w.first_index().unwrap();
        assert!(
            first > 1 && first <= 11,
            "whole segments at or below 10 go: {first}"
        );
        assert_eq!(first, 11, "nothing at or below 10 is read");
        assert_eq!(w.read(10).unwrap(), None);
        drop(w);
        // The floor is the caller's to restore (log_store keeps the purged id in log.redb).
        let (mut w, _) = reopen(dir.path());
        assert!(w.first_index().unwrap() <= 11);
        w.purge_upto(10).unwrap();
        assert_eq!((w.first_index(), w.last_index()), (Some(11), Some(13)));
        assert_eq!(w.read(12).unwrap(), Some(batch(12, 1)[0].1.clone()));
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_elsewhere_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 1 << 20).unwrap();
        w.append(&batch(1, 5)).unwrap();
        w.sync().unwrap();
        let path = w.segments.values().next().unwrap().path.clone();
        drop(w);
        let good = std::fs::read(&path).unwrap();
        let end = written_len(&good);
        assert_eq!(good.len(), 1 << 20, "zeros ahead of the records");

        // A write torn in its last record, the file cut short: cut, the four before it kept.
        std::fs::write(&path, &good[..end - 3]).unwrap();
        let (w, rec) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(w.last_index(), Some(4));
        assert!(rec.torn_bytes > 0);
        drop(w);

        // The same with the zeros ahead still there (the file had its length already).
        let mut torn = good.clone();
        torn[end - 3..end].fill(0);
        std::fs::write(&path, &torn).unwrap();
        let (w, rec) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(w.last_index(), Some(4));
        assert!(rec.torn_bytes > 0);
        drop(w);

        // A stray byte in the zeros: read as a torn write, every record kept.
        let mut stray = good.clone();
        stray[end + 100] = 7;
        std::fs::write(&path, &stray).unwrap();
        let (w, rec) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(w.last_index(), Some(5));
        assert_eq!(rec.torn_bytes, 101);
        drop(w);

        // A flipped byte with valid records after it: damage, named.
        std::fs::write(&path, &good).unwrap();
        let mut bad = good.clone();
        bad[HEADER + 2] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        let e = Wal::open(dir.path(), 1 << 20).err().expect("refused");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(e.to_string().contains(".seg at byte 0"), "{e}");
    }
}

/// `cargo test --release -p roster-raft-store wal_cpu -- --ignored --nocapture`: CPU per
/// one-entry durable append, this log against a redb commit of one row (what `log_store` does).
#[cfg(test)]
mod cpu {
    use super::*;

    fn cpu_ms() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) * 10.0
    }

    #[test]
    #[ignore]
    fn wal_cpu_against_redb() {
        const N: u64 = 3000;
        let payload = vec![7u8; 200];
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(&dir.path().join("wal"), 64 << 20).unwrap();
        let (c0, t0) = (cpu_ms(), std::time::Instant::now());
        for i in 1..=N {
            w.append(&[(i, payload.clone())]).unwrap();
            w.sync().unwrap();
        }
        let (wal_cpu, wal_wall) = (cpu_ms() - c0, t0.elapsed());
        const LOGS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("logs");
        let db = redb::Database::create(dir.path().join("log.redb")).unwrap();
        let (c0, t0) = (cpu_ms(), std::time::Instant::now());
        for i in 1..=N {
            let tx = db.begin_write().unwrap();
            tx.open_table(LOGS)
                .unwrap()
                .insert(i, payload.as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let (redb_cpu, redb_wall) = (cpu_ms() - c0, t0.elapsed());
        println!(
            "per durable one-entry append: wal {:.0} µs CPU ({:.0} µs wall), redb {:.0} µs CPU ({:.0} µs wall)",
            wal_cpu * 1000.0 / N as f64,
            wal_wall.as_micros() as f64 / N as f64,
            redb_cpu * 1000.0 / N as f64,
            redb_wall.as_micros() as f64 / N as f64
        );
    }
}
