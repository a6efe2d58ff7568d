//! `roster playground`: three FEs on loopback in this process (the ports of config/fe1..fe3),
//! data in a temporary directory, until Ctrl-C.

use crate::config::{FileConfig, MemberSection};
use crate::start;
use std::path::PathBuf;

pub async fn run(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (root, _guard) = match data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("roster-playground-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let members: Vec<MemberSection> = (1..=3)
        .map(|n| {
            let o = 100 * (n as u16 - 1);
            MemberSection {
                node_id: n,
                host: "127.0.0.1".into(),
                edit_log_port: 9010 + o,
                rpc_port: 9020 + o,
                query_port: 9030 + o,
                http_port: 8030 + o,
            }
        })
        .collect();
    let mut fes = Vec::new();
    for m in &members {
        let cfg = FileConfig {
            node_id: m.node_id,
            name: Some(format!("fe{}", m.node_id)),
            cluster_id: "roster-playground".into(),
            host: m.host.clone(),
            data_dir: root.join(format!("fe{}", m.node_id)),
            edit_log_port: m.edit_log_port,
            rpc_port: m.rpc_port,
            query_port: m.query_port,
            http_port: m.http_port,
            initial_members: members.clone(),
            // A throwaway loopback cluster: root has an empty password.
            insecure: true,
            ..FileConfig::default()
        };
        fes.push(start::launch(&cfg).await?);
    }
    println!();
    println!(
        "Roster playground: 3 frontends on 127.0.0.1, data in {}",
        root.display()
    );
    println!(
        "Connect with:  mysql -h127.0.0.1 -P9030 -uroot      (root has an empty password here)"
    );
    println!(
        "          or:  cargo run --release -- sql --endpoints 127.0.0.1:9020,127.0.0.1:9120,127.0.0.1:9220"
    );
    println!(
        "Try:           ALTER SYSTEM ADD BACKEND \"127.0.0.1:9050\"; SHOW BACKENDS; SHOW FRONTENDS;"
    );
    println!("Ctrl-C stops the playground.");
    start::wait_for_signal().await;
    for fe in fes {
        fe.stop().await;
    }
    Ok(())
}
