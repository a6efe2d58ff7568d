//! What `roster bench quorum` reads from the machine: free loopback ports, a server's CPU time
//! from /proc, a Prometheus /metrics page over plain HTTP, and the pids it started (so that
//! nothing outlives it, even when interrupted).

use anyhow::Context;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every server binds 127.0.0.1 only, and the bench dials nothing else.
pub const HOST: &str = "127.0.0.1";

/// `n` ports free on 127.0.0.1, never handed out twice in this process. Taken from 20000-32000,
/// below Linux's ephemeral range (32768-60999): a port picked there and released may become
/// the source port of some outgoing connection before the server binds it.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    static NEXT: Mutex<u16> = Mutex::new(0);
    let mut next = NEXT.lock().expect("ports lock");
    if *next == 0 {
        *next = 20_000 + (std::process::id() % 4_000) as u16;
    }
    let mut out = Vec::with_capacity(n);
    let start = *next;
    while out.len() < n {
        let p = *next;
        *next = if p >= 32_000 { 20_000 } else { p + 1 };
        anyhow::ensure!(*next != start, "no {n} free ports on {HOST} in 20000-32000");
        if std::net::TcpListener::bind((HOST, p)).is_ok() {
            out.push(p);
        }
    }
    Ok(out)
}

/// Pids of the servers this process started: after an interruption, the scratch directory is
/// removed only once they are all gone.
static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn started(pid: u32) {
    STARTED.lock().expect("pids lock").push(pid);
}

/// Whether `pid` still runs (a zombie does not: it has ended and only waits to be reaped).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Wait (up to `within`) until every server this process started has ended.
pub async fn wait_all_ended(within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = STARTED
            .lock()
            .expect("pids lock")
            .iter()
            .copied()
            .filter(|p| running(*p))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// CPU time (user + system) of all of `pids`, in µs.
pub fn cpu_us(pids: &[u32]) -> anyhow::Result<u64> {
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    anyhow::ensure!(tck > 0, "sysconf(_SC_CLK_TCK) failed");
    let mut ticks = 0;
    for p in pids {
        ticks += cpu_ticks(*p)?;
    }
    Ok(ticks * 1_000_000 / tck as u64)
}

/// The 1-minute load average, for the report (the machine's other work shows there).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// GET `path` from `host:port` (HTTP/1.0, so that the body is neither chunked nor kept alive);
/// the body of a 200 answer.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect((HOST, port)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .with_context(|| format!("GET {HOST}:{port}{path}: no answer in 10 s"))??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {HOST}:{port}{path}: not HTTP"))?;
    let status = head.lines().next().unwrap_or("");
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "GET {HOST}:{port}{path}: {status}"
    );
    Ok(body.to_string())
}

/// The value of the sample `series` (name with its labels, exactly as printed) in a Prometheus
/// text page.
pub fn prom_sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let v = l.strip_prefix(series)?;
        v.starts_with(' ').then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_samples_are_found_by_series() {
        let page = "# TYPE x counter\nx_count 7\nx_count_other 9\ny{file=\"a\"} 3\n";
        assert_eq!(prom_sample(page, "x_count"), Some(7.0));
        assert_eq!(prom_sample(page, "y{file=\"a\"}"), Some(3.0));
        assert_eq!(prom_sample(page, "y"), None);
    }

    /// /proc counts CPU in clock ticks (10 ms): burn CPU until one shows, with a deadline (a
    /// fixed loop is over within a tick in a release build).
    #[test]
    fn this_process_has_cpu_time() {
        let pid = std::process::id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_us(&[pid]).unwrap() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no CPU time counted in 10 s"
            );
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(running(pid));
    }
}
