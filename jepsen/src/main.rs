//! `roster-jepsen`: runs Jepsen-style scenarios against real Roster processes (as root).

fn main() {
    eprintln!("roster-jepsen: scenarios arrive with the runner");
}
