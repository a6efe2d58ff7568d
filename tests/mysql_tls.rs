//! The MySQL port with TLS switched on: a client that verifies the server certificate gets an
//! encrypted session; plain clients still work.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn mysql(port: u16, extra: &[&str], sql: &str) -> (i32, String, String) {
    let o = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            &format!("-p{ROOT_PASSWORD}"),
            "--connect-timeout=10",
        ])
        .args(extra)
        .args(["-e", sql])
        .output()
        .expect("the mysql client must be installed (Debian: mariadb-client)");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_over_tls_with_a_verified_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    let extra = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let cluster = Cluster::start_configured(1, 0, &extra, "");
    cluster.wait_leader(Duration::from_secs(20)).await;
    let port = cluster.nodes[0].query_port;
    let deadline = Instant::now() + Duration::from_secs(30);
    while mysql(port, &[], "SELECT 1").0 != 0 {
        assert!(Instant::now() < deadline, "no login\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let ca = format!("--ssl-ca={}", cert.display());
    let (code, out, err) = mysql(port, &[&ca, "--ssl-verify-server-cert"], "status");
    assert_eq!(code, 0, "{err}");
    let ssl = out.lines().find(|l| l.starts_with("SSL:")).unwrap_or("");
    assert!(
        ssl.contains("Cipher in use"),
        "the session is not encrypted: {ssl:?}"
    );
    let (code, out, err) = mysql(
        port,
        &[&ca, "--ssl-verify-server-cert"],
        r#"ALTER SYSTEM ADD BACKEND "127.9.9.9:9050"; SHOW BACKENDS"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("127.9.9.9"));
    // A wrong password over TLS is still refused.
    let o = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            "-pwrong",
            &ca,
            "-e",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(28000)"));
    // Plain clients still work.
    let (code, out, _) = mysql(port, &["--skip-ssl"], "status");
    assert_eq!(code, 0);
    assert!(
        !out.lines()
            .any(|l| l.starts_with("SSL:") && l.contains("Cipher in use")),
        "expected a plain session"
    );
}
