//! Issue 3: the MySQL front door driven by a real `mysql` client (mariadb-client), on a
//! follower and on the master: statement families with their columns and exit codes, logins,
//! privileges across FEs, per-connection salts and replayed logins.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn mysql(port: u16, user: &str, password: &str, sql: &str) -> Out {
    let mut cmd = Command::new("mysql");
    cmd.args([
        "-h127.0.0.1",
        &format!("-P{port}"),
        &format!("-u{user}"),
        "--table",
        "--connect-timeout=10",
    ]);
    if !password.is_empty() {
        cmd.arg(format!("-p{password}"));
    }
    cmd.args(["-e", sql]);
    let o = cmd
        .output()
        .expect("the mysql client must be installed (Debian: mariadb-client)");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        // The client echoes a failed statement before its ERROR line; keep the ERROR line.
        stderr: String::from_utf8_lossy(&o.stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string(),
    }
}

/// The MySQL column types the server declares for `sql`'s result, as the client reports them
/// (`--column-type-info`, which prints only with `--table` when not interactive: one `Type:`
/// line per column, e.g. `LONGLONG`, `VAR_STRING`).
fn column_types(port: u16, sql: &str) -> Vec<String> {
    let o = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            &format!("-p{ROOT_PASSWORD}"),
            "--column-type-info",
            "--table",
            "-e",
            sql,
        ])
        .output()
        .expect("the mysql client must be installed (Debian: mariadb-client)");
    assert!(
        o.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Type:"))
        .map(|t| t.trim().to_string())
        .collect()
}

fn root(port: u16, sql: &str) -> Out {
    mysql(port, "root", ROOT_PASSWORD, sql)
}

fn ok(port: u16, sql: &str) -> Table {
    let o = root(port, sql);
    assert_eq!(o.code, 0, "{sql} failed on port {port}: {}", o.stderr);
    Table::parse(&o.stdout)
}

/// A `mysql --table` result.
#[derive(Debug)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn parse(out: &str) -> Table {
        let mut lines = out.lines().filter(|l| l.starts_with('|')).map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        });
        let columns = lines.next().unwrap_or_default();
        Table {
            columns,
            rows: lines.collect(),
        }
    }

    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }
}

/// The cluster creates root a moment after its first election.
fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = root(port, "SELECT 1");
        if o.code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mysql login on {port} never succeeded: {}",
            o.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const BACKEND_COLUMNS: &[&str] = &[
    "BackendId",
    "Host",
    "HeartbeatPort",
    "BePort",
    "HttpPort",
    "BrpcPort",
    "LastStartTime",
    "LastHeartbeat",
    "Alive",
    "SystemDecommissioned",
    "TabletNum",
    "DataUsedCapacity",
    "AvailCapacity",
    "TotalCapacity",
    "UsedPct",
    "Tag",
    "ErrMsg",
    "Version",
    "Status",
    "HeartbeatFailureCounter",
    "NodeRole",
];
const FRONTEND_COLUMNS: &[&str] = &[
    "Name",
    "Host",
    "EditLogPort",
    "HttpPort",
    "QueryPort",
    "RpcPort",
    "Role",
    "IsMaster",
    "ClusterId",
    "Join",
    "Alive",
    "ReplayedJournalId",
    "LastHeartbeat",
    "ErrMsg",
    "Version",
    "CurrentConnected",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_families_through_mysql_on_master_and_follower() {
    let cluster = Cluster::start(3, 0);
    let m = cluster.wait_leader(Duration::from_secs(20)).await;
    let f = (m + 1) % 3;
    let (mp, fp) = (cluster.nodes[m].query_port, cluster.nodes[f].query_port);
    wait_ready(mp);
    wait_ready(fp);

    // These backends are fake and empty: keep the master from finishing their decommission.
    ok(
        mp,
        r#"ADMIN SET FRONTEND CONFIG ("disable_tablet_scheduler" = "true")"#,
    );
    // Backends: a write through the follower, read on the master.
    ok(
        fp,
        r#"ALTER SYSTEM ADD BACKEND "127.7.0.1:9050", "127.7.0.2:9050" PROPERTIES ("tag.location" = "g1")"#,
    );
    let t = ok(mp, "SHOW BACKENDS");
    assert_eq!(t.columns, BACKEND_COLUMNS);
    assert_eq!(t.rows.len(), 2);
    assert_eq!(t.rows[0][t.col("BackendId")], "10001");
    assert_eq!(t.rows[1][t.col("Host")], "127.7.0.2");
    assert!(t.rows[0][t.col("Tag")].contains("g1"));
    assert_eq!(t.rows[0][t.col("Alive")], "false");

    let o = root(fp, r#"ALTER SYSTEM DROP BACKEND "10001""#);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .starts_with("ERROR 1105 (HY000) at line 1: errCode = 2"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.ends_with("errCode = 2, detailMessage = It is highly NOT RECOMMENDED to use DROP BACKEND stmt.It is not safe to directly drop a backend. All data on this backend will be discarded permanently. If you insist, use DROPP instead of DROP"), "{}", o.stderr);

    ok(fp, r#"ALTER SYSTEM DECOMMISSION BACKEND "10001";"#);
    let t = ok(mp, "show backends");
    assert_eq!(t.rows[0][t.col("SystemDecommissioned")], "true");
    assert!(t.rows[0][t.col("Status")].contains("\"membership\":\"DECOMMISSIONING\""));
    let e = ok(fp, r#"EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND "10002""#);
    assert_eq!(e.rows.len(), 1);
    assert_eq!(e.rows[0][e.col("Readiness")], "READY");
    ok(mp, r#"CANCEL DECOMMISSION BACKEND "10001""#);
    ok(
        fp,
        r#"ALTER SYSTEM MODIFY BACKEND "127.7.0.2:9050" SET ("disable_query" = "true")"#,
    );
    let t = ok(fp, "SHOW BACKENDS");
    assert_eq!(t.rows[0][t.col("SystemDecommissioned")], "false");
    assert!(t.rows[1][t.col("Status")].contains("\"isQueryDisabled\":true"));
    ok(mp, r#"ALTER SYSTEM DROPP BACKEND "127.7.0.2:9050""#);
    assert_eq!(ok(fp, "SHOW BACKENDS").rows.len(), 1);

    // Frontends.
    let t = ok(fp, "SHOW FRONTENDS");
    assert_eq!(t.columns, FRONTEND_COLUMNS);
    assert_eq!(t.rows.len(), 3);
    let masters: Vec<&Vec<String>> = t
        .rows
        .iter()
        .filter(|r| r[t.col("IsMaster")] == "true")
        .collect();
    assert_eq!(masters.len(), 1);
    assert_eq!(masters[0][t.col("QueryPort")], mp.to_string());
    assert!(t.rows.iter().all(|r| r[t.col("Role")] == "FOLLOWER"));

    // Settings: replicated, validated.
    ok(
        fp,
        r#"ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")"#,
    );
    let t = ok(mp, "ADMIN SHOW FRONTEND CONFIG LIKE 'disable_bal%'");
    assert_eq!(t.columns[..2], ["Key", "Value"]);
    assert_eq!(
        t.rows,
        vec![vec![
            "disable_balance",
            "true",
            "bool",
            "true",
            "true",
            "stop balancing replicas (default false)"
        ]]
    );
    let o = root(
        fp,
        r#"ADMIN SET FRONTEND CONFIG ("disable_balance" = "false", "no_such_key" = "1")"#,
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("unknown config \"no_such_key\""),
        "{}",
        o.stderr
    );
    let t = ok(mp, "ADMIN SHOW FRONTEND CONFIG LIKE 'disable_balance'");
    assert_eq!(t.rows[0][1], "true", "a refused SET changes nothing");

    // Housekeeping real clients send.
    let t = ok(fp, "SELECT @@version_comment LIMIT 1");
    assert!(t.rows[0][0].contains("Roster"));
    ok(fp, "SET NAMES utf8mb4");
    let t = ok(fp, "SHOW VARIABLES LIKE 'max_allowed%'");
    assert_eq!(t.rows, vec![vec!["max_allowed_packet", "67108864"]]);
    ok(fp, "USE whatever");
    // Column types come from what the statement declares, not from the values: integer
    // constants and integer variables are integers, SHOW output is text (as in Doris) even
    // when a single row holds only digits.
    assert_eq!(
        column_types(fp, "SELECT 1, @@max_allowed_packet, @@version_comment, 'x'"),
        ["LONGLONG", "LONGLONG", "VAR_STRING", "VAR_STRING"]
    );
    assert_eq!(
        column_types(fp, "SHOW VARIABLES LIKE 'max_allowed%'"),
        ["VAR_STRING", "VAR_STRING"]
    );

    // Syntax errors say where, in Doris's form.
    let o = root(
        mp,
        "ALTER SYSTEM ADD BACKEND \"127.7.0.3:9050\" PROPERTIES (\"tag.location\" =)",
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.starts_with("ERROR 1105 (HY000)") && o.stderr.contains("at line 1, column"),
        "{}",
        o.stderr
    );
    assert_eq!(
        ok(mp, "SHOW BACKENDS").rows.len(),
        1,
        "a failed statement changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_privileges_on_every_interface() {
    let cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let p: Vec<u16> = cluster.nodes.iter().map(|n| n.query_port).collect();
    for port in &p {
        wait_ready(*port);
    }

    // Failed logins: MySQL's own error.
    let o = mysql(p[0], "root", "wrong", "SELECT 1");
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("ERROR 1045 (28000)")
            && o.stderr.contains("Access denied for user 'root'"),
        "{}",
        o.stderr
    );
    let o = mysql(p[1], "nobody", "x", "SELECT 1");
    assert!(
        o.stderr.contains("ERROR 1045 (28000)") && o.stderr.contains("'nobody'"),
        "{}",
        o.stderr
    );

    // A user without NODE_PRIV: refused on MySQL, gRPC and roster sql alike.
    ok(p[0], "CREATE USER 'ops' IDENTIFIED BY 'opspw'");
    ok(p[0], "GRANT SELECT_PRIV TO 'ops'");
    let add = r#"ALTER SYSTEM ADD BACKEND "127.7.1.1:9050""#;
    let o = mysql(p[1], "ops", "opspw", add);
    assert_eq!(o.code, 1);
    assert!(o.stderr.starts_with("ERROR 1227 (42000)"), "{}", o.stderr);
    let denied =
        "Access denied; you need (at least one of) the NODE_PRIV privilege(s) for this operation";
    assert!(o.stderr.contains(denied), "{}", o.stderr);
    let mut cfg = client_config(vec![cluster.nodes[2].rpc_addr()]);
    cfg.user = "ops".into();
    cfg.password = "opspw".into();
    let ops = roster_client::Client::new(cfg).unwrap();
    match ops.execute(add).await {
        Err(roster_client::ClientError::Server { message, .. }) => {
            assert!(message.contains(denied), "{message}")
        }
        other => panic!("gRPC should refuse: {other:?}"),
    }
    let cli = Command::new(BIN)
        .args([
            "sql",
            "--endpoints",
            &cluster.nodes[0].rpc_addr(),
            "-u",
            "ops",
            "-p",
            "opspw",
            "-e",
            add,
        ])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains(denied));
    // The password was on the command line: `roster sql` says it shows in `ps`.
    assert!(
        stderr.contains("visible to other users in `ps`"),
        "{stderr}"
    );
    // From ROSTER_PASSWORD: no warning.
    let cli = Command::new(BIN)
        .args(["sql", "--endpoints", &cluster.nodes[0].rpc_addr()])
        .args(["-u", "ops", "-e", "SHOW GRANTS"])
        .env("ROSTER_PASSWORD", "opspw")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let o = mysql(p[1], "ops", "wrongpw", "SELECT 1");
    assert!(o.stderr.contains("ERROR 1045"), "{}", o.stderr);
    let mut bad = client_config(vec![cluster.nodes[0].rpc_addr()]);
    bad.user = "ops".into();
    bad.password = "wrongpw".into();
    match roster_client::Client::new(bad)
        .unwrap()
        .execute("SHOW GRANTS")
        .await
    {
        Err(roster_client::ClientError::Server { message, .. }) => assert!(
            message.contains("Access denied for user 'ops'"),
            "{message}"
        ),
        other => panic!("gRPC should refuse a wrong password: {other:?}"),
    }
    assert_eq!(ok(p[0], "SHOW BACKENDS").rows.len(), 0, "nothing was added");

    // The backends added below are fake addresses: keep the FEs' connection checks from
    // adding AUTO entries for them, so the lists below hold only what the statements put there.
    ok(
        p[0],
        r#"ADMIN SET FRONTEND CONFIG ("disable_backend_black_list" = "true")"#,
    );
    // GRANT on one FE takes effect on every FE at once; so does REVOKE.
    ok(p[0], "GRANT NODE_PRIV TO 'ops'");
    let o = mysql(p[2], "ops", "opspw", add);
    assert_eq!(o.code, 0, "grant not in effect on another FE: {}", o.stderr);
    ok(p[1], "REVOKE NODE_PRIV FROM 'ops'");
    let o = mysql(
        p[2],
        "ops",
        "opspw",
        r#"ALTER SYSTEM ADD BACKEND "127.7.1.2:9050""#,
    );
    assert!(
        o.stderr.contains(denied),
        "revoke not in effect on another FE: {}",
        o.stderr
    );

    // A BLACKLIST-only user cannot add backends.
    ok(p[0], "CREATE USER 'bl' IDENTIFIED BY 'blpw'");
    ok(p[0], "GRANT BLACKLIST TO 'bl'");
    let o = mysql(
        p[1],
        "bl",
        "blpw",
        r#"ALTER SYSTEM ADD BACKEND "127.7.1.3:9050""#,
    );
    assert!(o.stderr.contains(denied), "{}", o.stderr);
    // ...but can manage blacklists: each FE's own, visible from all FEs.
    let o = mysql(p[1], "bl", "blpw", "ADD BACKEND BLACKLIST 10001");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let bl_cols = [
        "BackendId",
        "AddBlackListType",
        "LostConnectionTime",
        "LostConnectionNumberInPeriod",
        "CheckTimePeriod(s)",
        "LastFailure",
    ];
    let t = Table::parse(&mysql(p[1], "bl", "blpw", "SHOW BACKEND BLACKLIST").stdout);
    assert_eq!(t.columns, bl_cols);
    assert_eq!(t.rows.len(), 1);
    assert_eq!(
        (
            t.rows[0][0].as_str(),
            t.rows[0][1].as_str(),
            t.rows[0][4].as_str()
        ),
        ("10001", "MANUAL", "120")
    );
    let t = Table::parse(&mysql(p[2], "bl", "blpw", "SHOW BACKEND BLACKLIST").stdout);
    assert!(
        t.rows.is_empty(),
        "FE3's list does not hold FE2's entry: {:?}",
        t.rows
    );
    let t = Table::parse(
        &mysql(
            p[2],
            "bl",
            "blpw",
            "SHOW BACKEND BLACKLIST FROM ALL FRONTENDS",
        )
        .stdout,
    );
    assert_eq!(t.columns[0], "Frontend");
    assert_eq!(t.rows.len(), 1);
    assert_eq!(t.rows[0][0], cluster.nodes[1].edit_log_addr());
    let o = mysql(p[1], "bl", "blpw", "ADD BACKEND BLACKLIST 424242");
    assert!(
        o.stderr.contains("backend does not exist[424242]"),
        "{}",
        o.stderr
    );
    for sql in [
        "DELETE BACKEND BLACKLIST 10001",
        "ADD BACKEND BLACKLIST 10001",
        "SHOW BACKEND BLACKLIST",
        "SHOW BACKEND BLACKLIST FROM ALL FRONTENDS",
    ] {
        let o = mysql(p[1], "ops", "opspw", sql);
        assert!(
            o.stderr.contains("the BLACKLIST privilege"),
            "ops has no BLACKLIST: {sql}: {}",
            o.stderr
        );
    }
    let o = mysql(p[1], "bl", "blpw", "DELETE BACKEND BLACKLIST 10001");
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        Table::parse(&mysql(p[1], "bl", "blpw", "SHOW BACKEND BLACKLIST").stdout)
            .rows
            .is_empty()
    );
    let t = Table::parse(&mysql(p[2], "bl", "blpw", "SHOW GRANTS").stdout);
    assert_eq!(t.rows[0][t.col("GlobalPrivs")], "BLACKLIST");
    let o = mysql(p[2], "bl", "blpw", "SHOW GRANTS FOR 'ops'");
    assert!(
        o.stderr.contains("ADMIN_PRIV"),
        "another user's grants need ADMIN_PRIV: {}",
        o.stderr
    );

    // Dropped users cannot log in; root cannot be dropped.
    ok(p[0], "DROP USER 'ops'");
    let o = mysql(p[2], "ops", "opspw", "SELECT 1");
    assert!(o.stderr.contains("ERROR 1045"), "{}", o.stderr);
    let o = root(p[0], "DROP USER 'root'");
    assert!(o.stderr.contains("root cannot be dropped"), "{}", o.stderr);
    let t = ok(p[1], "SHOW BACKENDS");
    assert_eq!(t.rows.len(), 1, "exactly the one add made with NODE_PRIV");
}

/// Read one MySQL packet: (sequence id, payload).
fn read_packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).unwrap();
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (h[3], p)
}

/// Connect and return the server's 20-byte scramble from the initial handshake.
fn handshake(port: u16) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (_, p) = read_packet(&mut s);
    assert_eq!(p[0], 10, "protocol 10");
    let mut i = 1 + p[1..].iter().position(|b| *b == 0).unwrap() + 1; // server version
    i += 4; // connection id
    let mut salt = p[i..i + 8].to_vec();
    i += 8 + 1 + 2 + 1 + 2 + 2; // filler, caps low, charset, status, caps high
    let auth_len = p[i] as usize;
    i += 1 + 10;
    let rest = auth_len.max(21) - 8 - 1; // part 2 without its trailing NUL
    salt.extend_from_slice(&p[i..i + rest]);
    (s, salt)
}

/// Send a HandshakeResponse41 with `token`; true if the server answers OK.
fn login(mut s: TcpStream, user: &str, token: &[u8]) -> bool {
    const CAPS: u32 = 0x0000_0200 | 0x0000_8000 | 0x0008_0000 | 0x0000_0001; // PROTOCOL_41|SECURE_CONN|PLUGIN_AUTH|LONG_PASSWORD
    let mut p = Vec::new();
    p.extend_from_slice(&CAPS.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(token.len() as u8);
    p.extend_from_slice(token);
    p.extend_from_slice(b"mysql_native_password\0");
    let mut pkt = (p.len() as u32).to_le_bytes()[..3].to_vec();
    pkt.push(1);
    pkt.extend_from_slice(&p);
    s.write_all(&pkt).unwrap();
    let (_, reply) = read_packet(&mut s);
    reply[0] == 0x00
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salts_are_random_and_a_captured_login_cannot_be_replayed() {
    let cluster = Cluster::start(1, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let port = cluster.nodes[0].query_port;
    wait_ready(port);

    let (s1, salt1) = handshake(port);
    let (s2, salt2) = handshake(port);
    assert_eq!(salt1.len(), 20);
    assert_ne!(salt1, salt2, "two connections must get different salts");

    // A genuine login works...
    let token1 = roster_node::auth::scramble(&salt1, ROOT_PASSWORD);
    assert!(login(s1, "root", &token1), "a correct scramble is accepted");
    // ...and the same bytes, captured and replayed on another connection, do not.
    assert!(
        !login(s2, "root", &token1),
        "a replayed scramble must be refused"
    );
}
