//! Which ports the playground's nodes listen on, and the check that they are all free before
//! anything starts.

use std::net::TcpListener;

pub const FES: usize = 3;
pub const AGENTS: usize = 4;
/// Ports a `--base-port` block holds: 4 per FE, 2 per agent.
pub const BLOCK_LEN: u16 = (4 * FES + 2 * AGENTS) as u16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FePorts {
    pub edit_log: u16,
    pub rpc: u16,
    pub query: u16,
    pub http: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentPorts {
    pub heartbeat: u16,
    pub be: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub fes: Vec<FePorts>,
    pub agents: Vec<AgentPorts>,
}

/// FE i's address (they all share one; the ports tell them apart).
pub const FE_HOST: &str = "127.0.0.1";

/// Agent i (0-based) on its own loopback address, so that replicas land on distinct hosts.
pub fn agent_host(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

impl Layout {
    /// Without `--base-port`: the ports of config/fe1..fe3.toml (Doris numbering, FE i at
    /// +100·i), agents at 9050/9060 + 100·i, as the README's commands assume.
    pub fn doris() -> Layout {
        Layout {
            fes: (0..FES as u16)
                .map(|i| FePorts {
                    edit_log: 9010 + 100 * i,
                    rpc: 9020 + 100 * i,
                    query: 9030 + 100 * i,
                    http: 8030 + 100 * i,
                })
                .collect(),
            agents: (0..AGENTS as u16)
                .map(|i| AgentPorts {
                    heartbeat: 9050 + 100 * i,
                    be: 9060 + 100 * i,
                })
                .collect(),
        }
    }

    /// `--base-port N`: the 20 ports N..N+19, FE i holding N+4i..N+4i+3 (edit_log, rpc, query,
    /// http), then agent i holding N+12+2i (heartbeat) and N+13+2i (be). One contiguous block is
    /// easy to pick and to reason about, unlike Doris's spread-out defaults.
    pub fn from_base(base: u16) -> Result<Layout, String> {
        if !(1024..=u16::MAX - (BLOCK_LEN - 1)).contains(&base) {
            return Err(format!(
                "--base-port {base} is out of range: the playground uses {BLOCK_LEN} ports from it, \
                 so it must be between 1024 and {}",
                u16::MAX - (BLOCK_LEN - 1)
            ));
        }
        let fe = |i: u16| base + 4 * i;
        let agent = |i: u16| base + 4 * FES as u16 + 2 * i;
        Ok(Layout {
            fes: (0..FES as u16)
                .map(|i| FePorts {
                    edit_log: fe(i),
                    rpc: fe(i) + 1,
                    query: fe(i) + 2,
                    http: fe(i) + 3,
                })
                .collect(),
            agents: (0..AGENTS as u16)
                .map(|i| AgentPorts {
                    heartbeat: agent(i),
                    be: agent(i) + 1,
                })
                .collect(),
        })
    }

    /// Every port with its host and what it is for, e.g. ("127.0.0.1", 9030, "fe1 query_port").
    pub fn all(&self) -> Vec<(String, u16, String)> {
        let mut out = Vec::new();
        for (i, p) in self.fes.iter().enumerate() {
            for (port, what) in [
                (p.edit_log, "edit_log_port"),
                (p.rpc, "rpc_port"),
                (p.query, "query_port"),
                (p.http, "http_port"),
            ] {
                out.push((FE_HOST.to_string(), port, format!("fe{} {what}", i + 1)));
            }
        }
        for (i, p) in self.agents.iter().enumerate() {
            for (port, what) in [(p.heartbeat, "heartbeat_port"), (p.be, "be_port")] {
                out.push((agent_host(i), port, format!("be{} {what}", i + 1)));
            }
        }
        out
    }

    /// Fails, naming the first port that cannot be bound, if any node could not start. The
    /// probes are closed again before the nodes start; a port taken in between makes that
    /// node exit at once, which the playground reports.
    pub fn check_free(&self) -> Result<(), String> {
        for (host, port, what) in self.all() {
            if let Err(e) = TcpListener::bind((host.as_str(), port)) {
                let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                    "is in use".to_string()
                } else {
                    format!("cannot be bound ({e})")
                };
                let hint = match free_block(port) {
                    Some(b) => format!(
                        "pass --base-port {b} (ports {b}-{} are free)",
                        b + BLOCK_LEN - 1
                    ),
                    None => format!("pass --base-port N for a free block of {BLOCK_LEN} ports"),
                };
                return Err(format!("port {port} ({what}) {why} on {host}; {hint}"));
            }
        }
        Ok(())
    }
}

/// A base port above `after` whose whole block is free on every host the playground uses.
fn free_block(after: u16) -> Option<u16> {
    let mut base = after.checked_add(1)?.max(19_000);
    while base <= u16::MAX - (BLOCK_LEN - 1) {
        let layout = Layout::from_base(base).ok()?;
        let taken = layout
            .all()
            .into_iter()
            .position(|(h, p, _)| TcpListener::bind((h.as_str(), p)).is_err());
        match taken {
            None => return Some(base),
            Some(k) => base += k as u16 + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_doris_numbering_of_the_shipped_configs() {
        let l = Layout::doris();
        assert_eq!(
            l.fes[0],
            FePorts {
                edit_log: 9010,
                rpc: 9020,
                query: 9030,
                http: 8030
            }
        );
        assert_eq!(l.fes[2].query, 9230);
        assert_eq!(l.fes[2].http, 8230);
        assert_eq!(
            l.agents[3],
            AgentPorts {
                heartbeat: 9350,
                be: 9360
            }
        );
    }

    #[test]
    fn a_base_port_gives_one_block_of_distinct_ports() {
        let l = Layout::from_base(20_000).unwrap();
        let mut ports: Vec<u16> = l.all().into_iter().map(|(_, p, _)| p).collect();
        ports.sort();
        assert_eq!(ports, (20_000..20_000 + BLOCK_LEN).collect::<Vec<_>>());
        assert_eq!(l.fes[1].query, 20_006);
        assert_eq!(l.agents[0].heartbeat, 20_012);
        assert!(Layout::from_base(80).is_err());
        assert!(Layout::from_base(65_530).is_err());
        assert!(Layout::from_base(u16::MAX - 19).is_ok());
    }
}
