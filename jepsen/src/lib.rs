//! Jepsen-style testing of Roster: real `roster` processes in network namespaces, client
//! workloads that record a history, a nemesis that injects faults, and checkers of the
//! history. See `jepsen/README.md`.

pub mod checker;
pub mod db;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod scenario;
pub mod tablets;
pub mod topology;
pub mod workload;

/// Set by SIGINT/SIGTERM: every loop of a run stops, and the run tears down.
pub static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn stopped() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}
