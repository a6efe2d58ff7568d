//! `roster cert`: make the certificates of a secure cluster, CockroachDB style. The CA key
//! signs everything and should stay on the operator's machine, not on the nodes.

use anyhow::Context;
use roster_certs::Role;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
// The subcommands are cockroach's names (`cert create-ca`, `create-node`, `create-client`).
#[allow(clippy::enum_variant_names)]
pub enum CertCmd {
    /// Make the cluster's CA (ca.crt, ca.key); the cluster id is bound into every
    /// certificate it signs and must equal the FEs' cluster_id.
    CreateCa {
        #[arg(long, value_name = "DIR")]
        certs_dir: PathBuf,
        /// The FEs' cluster_id (config/fe1.toml ships "roster-local").
        #[arg(long)]
        cluster_id: String,
        /// Replace existing files (every certificate signed by the old CA stops working).
        #[arg(long)]
        overwrite: bool,
    },
    /// Make node.crt/node.key for FEs (or, with --backend, backend.crt/backend.key for backend
    /// agents), valid for the hosts (IP addresses or DNS names) peers use to reach them.
    CreateNode {
        #[arg(required = true, value_name = "HOST")]
        hosts: Vec<String>,
        #[arg(long, value_name = "DIR")]
        certs_dir: PathBuf,
        /// A backend agent's certificate: it may pull replicas from other agents, nothing else.
        #[arg(long)]
        backend: bool,
        #[arg(long)]
        overwrite: bool,
    },
    /// Make client.USER.crt/client.USER.key for a user's TLS client (roster sql --certs-dir).
    CreateClient {
        user: String,
        #[arg(long, value_name = "DIR")]
        certs_dir: PathBuf,
        #[arg(long)]
        overwrite: bool,
    },
}

pub fn run(cmd: CertCmd) -> anyhow::Result<()> {
    let made = match cmd {
        CertCmd::CreateCa {
            certs_dir,
            cluster_id,
            overwrite,
        } => roster_certs::create_ca(&certs_dir, &cluster_id, overwrite)
            .with_context(|| format!("creating the CA in {}", certs_dir.display()))?,
        CertCmd::CreateNode {
            hosts,
            certs_dir,
            backend,
            overwrite,
        } => {
            let role = if backend { Role::Backend } else { Role::Fe };
            roster_certs::create_node(&certs_dir, &hosts, &role, overwrite).with_context(|| {
                format!("creating a node certificate in {}", certs_dir.display())
            })?
        }
        CertCmd::CreateClient {
            user,
            certs_dir,
            overwrite,
        } => roster_certs::create_client(&certs_dir, &user, overwrite)
            .with_context(|| format!("creating a client certificate in {}", certs_dir.display()))?,
    };
    println!("wrote {} (and its key beside it)", made.display());
    Ok(())
}
