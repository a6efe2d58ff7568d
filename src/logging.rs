//! The log filter shared by every subcommand: `RUST_LOG` (default `info,openraft=warn`), text or
//! JSON on stderr, and openraft's own warnings about unreachable peers dropped (its replication,
//! heartbeat and vote paths write one to three lines per heartbeat to a down peer, as
//! "Unreachable node: ..." or "Unreachable(Unreachable { ... })"): the Raft network logs those
//! itself, once per peer per interval with a count (`roster_node::network`).

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        b.json().finish().with(DropOpenraftUnreachable).init();
    } else {
        b.finish().with(DropOpenraftUnreachable).init();
    }
}

/// Vetoes openraft's warnings about unreachable peers.
struct DropOpenraftUnreachable;

impl<S: Subscriber> Layer<S> for DropOpenraftUnreachable {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let m = event.metadata();
        if *m.level() > Level::WARN || !m.target().starts_with("openraft") {
            return true;
        }
        let mut found = FindUnreachable(false);
        event.record(&mut found);
        !found.0
    }
}

struct FindUnreachable(bool);

impl Visit for FindUnreachable {
    fn record_debug(&mut self, _: &Field, value: &dyn std::fmt::Debug) {
        if !self.0 {
            self.0 = format!("{value:?}").contains("Unreachable");
        }
    }

    fn record_str(&mut self, _: &Field, value: &str) {
        self.0 |= value.contains("Unreachable");
    }
}
