//! Storage faults (issue 13, acceptance 5): one flipped byte in a stopped FE's `sm.redb`,
//! `log.redb` or its stored snapshot is either detected (the FE refuses to start, naming the
//! file) or harmless (it starts and its state digest matches its peers'), over 200 seeded
//! flips; and a full disk stops the FE that has it, naming the OS error, while the others
//! serve on, and once space is freed it rejoins with nothing acknowledged lost.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A small seeded generator (xorshift64*), so a failing flip can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Where in the data dir a flip lands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Sm,
    Log,
    /// Inside `sm.redb`, near the stored snapshot's data (found by a marker it holds).
    Snapshot,
    /// The Raft log's entries (the segment file of `raft/wal/`).
    Wal,
}

impl Target {
    const ALL: [Target; 4] = [Target::Sm, Target::Log, Target::Snapshot, Target::Wal];

    /// The damaged file, under the data dir, and the name its refusal must give.
    fn file(self, seg: &str) -> (String, &'static str) {
        match self {
            Target::Sm | Target::Snapshot => ("raft/sm.redb".into(), "sm.redb"),
            Target::Log => ("raft/log.redb".into(), "log.redb"),
            Target::Wal => (format!("raft/wal/{seg}"), "wal"),
        }
    }
}

#[derive(Debug)]
enum Outcome {
    /// Refused to start (or stopped) naming the damaged file.
    Detected(String),
    /// Started and its state digest at the reference index matches the peers'.
    Harmless,
}

/// One FE started alone on a copy of a stopped FE's data dir, on fresh ports.
struct Solo {
    child: Child,
    rpc_port: u16,
    log: PathBuf,
}

impl Drop for Solo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `roster start` on `config` (fe text) with its data dir and own ports replaced.
fn start_solo(config: &str, own_ports: &[u16; 4], data_dir: &Path, log: PathBuf) -> Solo {
    let fresh = free_ports(4);
    let mut text = String::new();
    for line in config.lines() {
        let line = if line.starts_with("data_dir") {
            format!("data_dir = \"{}\"", data_dir.display())
        } else {
            let mut l = line.to_string();
            for (old, new) in own_ports.iter().zip(&fresh) {
                if l.ends_with(&format!("= {old}")) {
                    l = l.replace(&format!("= {old}"), &format!("= {new}"));
                }
            }
            l
        };
        text.push_str(&line);
        text.push('\n');
    }
    let cfg = log.with_extension("toml");
    std::fs::write(&cfg, text).unwrap();
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .args(["start", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Solo {
        child,
        rpc_port: fresh[1],
        log,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Wait until the solo FE exits (then: its output must name `file`) or reports a digest at
/// `want_index` (then: it must be `want_digest`).
async fn judge(mut solo: Solo, file: &str, want_index: u64, want_digest: &str) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = client_for(vec![format!("127.0.0.1:{}", solo.rpc_port)]);
    loop {
        // A flip in the wal's last record reads as a write torn by a crash: the FE cuts it,
        // says so, and gets the entry from the leader (alone here, it stays one short).
        let out = std::fs::read_to_string(&solo.log).unwrap_or_default();
        if file == "wal"
            && let Some(line) = out.lines().find(|l| l.contains("never completed"))
        {
            return Outcome::Detected(line.to_string());
        }
        if let Some(st) = solo.child.try_wait().unwrap() {
            let out = std::fs::read_to_string(&solo.log).unwrap();
            assert!(!st.success(), "exited 0 on a damaged {file}:\n{out}");
            let last = out
                .lines()
                .rev()
                .find(|l| l.contains("error"))
                .unwrap_or("")
                .to_string();
            assert!(
                last.contains(file),
                "refused without naming {file} (exit {st}):\n{out}"
            );
            return Outcome::Detected(last);
        }
        if let Ok(s) = client.status_with_digest(Duration::from_millis(500)).await
            && s.digest_index >= want_index
        {
            assert_eq!(
                (s.digest_index, s.state_digest.as_str()),
                (want_index, want_digest),
                "started on a damaged {file} with a state that differs from its peers'\n{}",
                std::fs::read_to_string(&solo.log).unwrap()
            );
            return Outcome::Harmless;
        }
        assert!(
            Instant::now() < deadline,
            "neither refused nor caught up within 60 s on a damaged {file}:\n{}",
            std::fs::read_to_string(&solo.log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The (index, digest) a solo FE settles at: the same in three looks in a row.
async fn settle(solo: &Solo) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = client_for(vec![format!("127.0.0.1:{}", solo.rpc_port)]);
    let (mut last, mut same) = (None, 0);
    loop {
        let now = client
            .status_with_digest(Duration::from_millis(500))
            .await
            .ok()
            .map(|s| (s.digest_index, s.state_digest));
        same = if now.is_some() && now == last {
            same + 1
        } else {
            0
        };
        last = now;
        if same >= 2 {
            return last.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the undamaged copy never settled:\n{}",
            std::fs::read_to_string(&solo.log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Offsets of `needle` in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_are_detected_or_harmless() {
    const FLIPS: usize = 200;
    const BATCH: usize = 8;
    let mut cluster = Cluster::start_with(
        3,
        0,
        "snapshot_logs_since_last = 20\nmax_in_snapshot_log_to_keep = 1000\n",
    );
    cluster.wait_leader(Duration::from_secs(20)).await;
    let client = cluster.client_of(&[0, 1, 2]);
    // Rows of several tables, and enough entries for a snapshot; the marker user shows where
    // the snapshot's data sits in sm.redb.
    exec_retry(
        &client,
        "CREATE USER 'snapmarker_flip_target' IDENTIFIED BY 'pw'",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    for k in 1..=30 {
        exec_retry(
            &client,
            &format!(r#"ALTER SYSTEM ADD BACKEND "127.3.1.{k}:9050""#),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    }
    // All three at one index with one digest, unchanged over three looks: the reference
    // (the cluster is quiet by then; the undamaged copy below must start at exactly this).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    let mut same = 0;
    let (agreed_index, agreed_digest, snapshot_index) = loop {
        let mut seen = Vec::new();
        for i in 0..3 {
            if let Ok(s) = cluster
                .client(i)
                .status_with_digest(Duration::from_secs(2))
                .await
            {
                seen.push((s.digest_index, s.state_digest, s.snapshot_index));
            }
        }
        let agreed = seen.len() == 3
            && seen.iter().all(|s| s.0 == seen[0].0 && s.1 == seen[0].1)
            && seen[2].2 > 0;
        let now = agreed.then(|| (seen[0].0, seen[0].1.clone(), seen[2].2));
        same = if now.is_some() && now == last {
            same + 1
        } else {
            0
        };
        last = now;
        if same >= 3 {
            break last.clone().unwrap();
        }
        assert!(Instant::now() < deadline, "FEs never agreed: {seen:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Stop them all (SIGTERM: a clean stop), and take fe3's files once it has exited. Not
    // killed before: redb checks an uncleanly closed file's pages at open and falls back to
    // the previous commit past a bad one, so most flips of an unclean copy read as harmless
    // and the snapshot flips' detection (asserted below) would depend on the race.
    for i in 0..3 {
        cluster.signal(i, "TERM");
    }
    let fe3 = cluster.wait_exit(2, Duration::from_secs(30)).await;
    assert!(
        fe3.is_some_and(|st| st.success()),
        "fe3 did not stop cleanly on SIGTERM within 30 s ({fe3:?}):\n{}",
        cluster.logs()
    );
    for i in 0..2 {
        cluster.kill9(i); // reaps; the FE has stopped by then or is killed, either is a stop
    }
    let spec = cluster.nodes[2].clone();
    let data = cluster.dir.path().join("data-fe3");
    let config = std::fs::read_to_string(&spec.config).unwrap();
    let own = [
        spec.edit_log_port,
        spec.rpc_port,
        spec.query_port,
        spec.http_port,
    ];
    let sm = std::fs::read(data.join("raft/sm.redb")).unwrap();
    let log = std::fs::read(data.join("raft/log.redb")).unwrap();
    let seg = std::fs::read_dir(data.join("raft/wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .next()
        .expect("a wal segment");
    let wal = std::fs::read(data.join("raft/wal").join(&seg)).unwrap();
    let marks = find_all(&sm, b"snapmarker_flip_target");
    assert!(!marks.is_empty(), "the marker is not in sm.redb");
    let work = cluster.dir.path().join("flips");

    // The control: an undamaged copy starts on its own and settles. What it reaches (what fe3
    // holds on disk, re-applied up to the commit it knows) is the reference for the damaged
    // copies. It may be a few entries short of what the cluster agreed on:
    // the FEs write entries of their own (liveness, blacklists), and a commit fe3 learned just
    // before the stop may not be on its disk yet; a restarted FE gets those from the leader.
    let (want_index, want_digest) = {
        let d = work.join("control");
        copy_dir(&data, &d);
        let solo = start_solo(&config, &own, &d, work.join("control.log"));
        let (index, digest) = settle(&solo).await;
        assert!(
            index >= snapshot_index,
            "the undamaged copy settled at {index}, before its snapshot at {snapshot_index} (the cluster agreed at {agreed_index}):\n{}",
            std::fs::read_to_string(&solo.log).unwrap()
        );
        if index == agreed_index {
            assert_eq!(digest, agreed_digest, "the undamaged copy's state differs");
        }
        (index, digest)
    };

    let seed = 0x5EED_1301u64;
    let mut rng = Rng(seed);
    let mut flips = Vec::new();
    let mut snapshot_flips = 0;
    for n in 0..FLIPS {
        let target = Target::ALL[n % Target::ALL.len()];
        let bytes = match target {
            Target::Log => &log,
            Target::Wal => &wal,
            Target::Sm | Target::Snapshot => &sm,
        };
        // Half anywhere in the file; half on a non-zero byte (rows, pages in use), where a
        // flip has something to damage; snapshot flips within 256 bytes of a marker. A wal
        // segment's "file" is its records: the zeros written ahead of them are room, not data
        // (a stray byte there reads as a torn write; the wal's unit tests cover it).
        let bytes = match target {
            Target::Wal => &bytes[..=bytes.iter().rposition(|b| *b != 0).expect("records")],
            _ => bytes,
        };
        let at = match target {
            Target::Snapshot => {
                // Every copy of the marker in turn, not one at random: most copies are stale
                // pages redb keeps (harmless to flip), and a random pick could miss the live
                // ones in all 50 flips (it did, once in a whole-suite run).
                let m = marks[snapshot_flips % marks.len()];
                snapshot_flips += 1;
                (m + rng.below(512))
                    .saturating_sub(256)
                    .min(bytes.len() - 1)
            }
            _ if n % 2 == 0 => rng.below(bytes.len()),
            _ => loop {
                let i = rng.below(bytes.len());
                if bytes[i] != 0 {
                    break i;
                }
            },
        };
        let xor = (rng.below(255) + 1) as u8;
        flips.push((n, target, at, xor));
    }
    let (mut detected, mut harmless) = (Vec::new(), 0usize);
    let started = Instant::now();
    for batch in flips.chunks(BATCH) {
        let mut running = Vec::new();
        for &(n, target, at, xor) in batch {
            let d = work.join(format!("flip{n}"));
            copy_dir(&data, &d);
            let (rel, file) = target.file(&seg);
            let path = d.join(rel);
            let mut b = std::fs::read(&path).unwrap();
            b[at] ^= xor;
            std::fs::write(&path, &b).unwrap();
            let solo = start_solo(&config, &own, &d, work.join(format!("flip{n}.log")));
            let (wi, wd) = (want_index, want_digest.clone());
            running.push((
                n,
                target,
                at,
                xor,
                tokio::spawn(async move { judge(solo, file, wi, &wd).await }),
            ));
        }
        for (n, target, at, xor, h) in running {
            match h.await {
                Ok(Outcome::Detected(why)) => detected.push((n, target, why)),
                Ok(Outcome::Harmless) => harmless += 1,
                Err(e) => {
                    panic!("flip {n} (seed {seed:#x}) of {target:?} at byte {at} ^ {xor:#04x}: {e}")
                }
            }
            let _ = std::fs::remove_dir_all(work.join(format!("flip{n}")));
        }
    }
    println!(
        "{FLIPS} flips (seed {seed:#x}) in {:?}: {} detected, {harmless} harmless ({} copies of the marker in sm.redb)",
        started.elapsed(),
        detected.len(),
        marks.len()
    );
    for t in Target::ALL {
        let d = detected.iter().filter(|(_, x, _)| *x == t).count();
        let of = flips.iter().filter(|f| f.1 == t).count();
        println!("  {t:?}: {d} of {of} detected");
    }
    for (n, t, why) in detected.iter().take(6) {
        println!("  flip {n} {t:?}: {why}");
    }
    assert_eq!(detected.len() + harmless, FLIPS);
    // The flips near the snapshot must mostly land in checked data: some must be caught.
    assert!(
        detected.iter().any(|(_, t, _)| *t == Target::Snapshot),
        "no snapshot flip was detected"
    );
}

/// Unmounts a tmpfs when dropped (lazily: a killed FE may still be closing its files).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_fe_naming_the_error_and_it_rejoins_after() {
    // The alarm off: this test is about the disk that does fill (the alarm's own behaviour is
    // its unit test and the README).
    let mut cluster = Cluster::start_configured(
        3,
        0,
        "min_free_disk_bytes = 0\n",
        "snapshot_logs_since_last = 20\n",
    );
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    // The victim is a follower, so the cluster keeps its leader through the fault.
    let victim = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let client = cluster.client_of(&others);
    exec_retry(
        &client,
        r#"ALTER SYSTEM ADD BACKEND "127.3.2.0:9050""#,
        Duration::from_secs(20),
    )
    .await
    .unwrap();

    // Move the victim's data dir onto a small tmpfs.
    cluster.kill9(victim);
    let data = cluster.dir.path().join(format!("data-fe{}", victim + 1));
    let aside = cluster.dir.path().join("aside");
    std::fs::rename(&data, &aside).unwrap();
    std::fs::create_dir(&data).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&data)
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {st:?}");
        return;
    }
    let _mount = Mount(data.clone());
    copy_dir(&aside, &data);
    cluster.spawn(victim);
    let idx = cluster.client(leader).status().await.unwrap().last_applied;
    cluster
        .wait_applied(victim, idx, Duration::from_secs(20))
        .await;

    // Fill the disk to the last byte.
    let filler = data.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xAAu8; 1 << 20];
        loop {
            if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "{e}");
                break;
            }
        }
        let small = vec![0xAAu8; 4096];
        while f.write_all(&small).and_then(|_| f.sync_all()).is_ok() {}
    }

    // Writes go on; the victim must stop on one of them, and the others must serve on.
    let victim_http = cluster.nodes[victim].http_port;
    let health = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            // The FE may exit between any two steps: a failed look is just no answer.
            if std::net::TcpStream::connect(("127.0.0.1", victim_http)).is_ok()
                && let Ok((code, body)) =
                    std::panic::catch_unwind(|| http_get(victim_http, "/api/health", None))
                && body.contains("storage_fault")
            {
                return Some((code, body));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    // And a peer's SHOW FRONTENDS shows the reason in the victim's ErrMsg while it goes.
    let peer = cluster.client(leader);
    let frontends = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = peer.execute("SHOW FRONTENDS").await
                && let Some(cell) = r
                    .rows
                    .iter()
                    .flatten()
                    .flatten()
                    .find(|c| c.contains("storage fault"))
            {
                return Some(cell.clone());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    });
    let mut acked = vec!["127.3.2.0:9050".to_string()];
    // Ten backends a statement with a long tag: entries, rows and snapshots grow quickly.
    let tag = "t".repeat(128);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut k = 0;
    let exit = loop {
        let addrs: Vec<String> = (0..10)
            .map(|_| {
                k += 1;
                format!("127.{}.{}.{}:9050", 4 + k / 62500, (k / 250) % 250, k % 250)
            })
            .collect();
        let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        match client
            .execute(&format!(
                r#"ALTER SYSTEM ADD BACKEND {} PROPERTIES ("tag.location" = "{tag}")"#,
                list.join(", ")
            ))
            .await
        {
            Ok(_) => acked.extend(addrs),
            Err(e) => panic!(
                "the others stopped serving while fe{} failed: {e}",
                victim + 1
            ),
        }
        if let Some(st) = cluster.try_wait(victim) {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "fe{} lives on with a full disk\n{}",
            victim + 1,
            cluster.logs()
        );
    };
    assert!(!exit.success(), "exited 0 on a full disk");
    let out = std::fs::read_to_string(&cluster.nodes[victim].log).unwrap();
    let last = out.lines().last().unwrap_or("");
    assert!(
        last.contains("No space left on device") && last.contains("storage fault"),
        "the exit does not name the OS error: {last:?}\n{out}"
    );
    let (code, body) = health
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("/api/health never said storage_fault\n{out}"));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("No space left on device"), "{body}");

    let errmsg = frontends
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("SHOW FRONTENDS on a peer never gave the reason\n{out}"));
    assert!(errmsg.contains("No space left on device"), "{errmsg}");
    // The others serve on.
    for n in 0..5 {
        let addr = format!("127.3.9.{n}:9050");
        exec_retry(
            &client,
            &format!(r#"ALTER SYSTEM ADD BACKEND "{addr}""#),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        acked.push(addr);
    }

    // Space freed: it starts, catches up, and has every acknowledged write.
    std::fs::remove_file(&filler).unwrap();
    cluster.spawn(victim);
    let idx = cluster.client(leader).status().await.unwrap().last_applied;
    cluster
        .wait_applied(victim, idx, Duration::from_secs(60))
        .await;
    let r = exec_retry(
        &cluster.client(victim),
        "SHOW BACKENDS",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let got = backend_addrs(&r);
    let lost: Vec<&String> = acked.iter().filter(|a| !got.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost after the rejoin: {lost:?}\n{}",
        cluster.logs()
    );
    println!(
        "fe{} stopped after {} writes on a full disk: {last}",
        victim + 1,
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_space_alarm_refuses_writes_through_a_low_fe() {
    let mut cluster = Cluster::start(3, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let low = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != low).collect();
    // A threshold no disk meets: the alarm is up from the start.
    cluster.kill9(low);
    let cfg = &cluster.nodes[low].config;
    let text = std::fs::read_to_string(cfg).unwrap().replacen(
        "[raft]\n",
        "min_free_disk_bytes = 1152921504606846976\n[raft]\n",
        1,
    );
    std::fs::write(cfg, text).unwrap();
    cluster.spawn(low);
    let http = cluster.nodes[low].http_port;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
            let (code, body) = http_get(http, "/api/health", None);
            if code == 503 && body.contains("\"nospace\"") {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no nospace health\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.contains("below min_free_disk_bytes"), "{body}");

    let mut cfg = client_config(vec![cluster.nodes[low].rpc_addr()]);
    cfg.timeout = Duration::from_secs(2);
    let c = roster_client::Client::new(cfg).unwrap();
    let err = c
        .execute(r#"ALTER SYSTEM ADD BACKEND "127.3.5.1:9050""#)
        .await
        .expect_err("a write through the low FE was accepted");
    assert!(err.to_string().contains("low disk space"), "{err}");
    // The others accept writes, and the low FE still receives them (reads are served).
    exec_retry(
        &cluster.client_of(&others),
        r#"ALTER SYSTEM ADD BACKEND "127.3.5.2:9050""#,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let r = exec_retry(&c, "SHOW BACKENDS", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(backend_addrs(&r), vec!["127.3.5.2:9050".to_string()]);
}
