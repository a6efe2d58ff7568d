//! Stage 5 of the pipeline: what the statement answers. A write's answer is worded from the
//! applier's reply and the statement it came from; every reply the applier can give has an
//! answer here (the match is exhaustive, so a new reply cannot reach a client unworded). A read
//! carries the stale-read note when the session asked for stale reads.

use super::plan::WriteKind;
use super::run::Outcome;
use super::show::decommission::{cancel_message, changed, decommission_message};
use super::show::ids_text;
use roster_membership::BackendId;
use roster_proto::QueryResult;
use roster_raft_store::Reply;

pub fn render(outcome: Outcome, note: Option<String>) -> QueryResult {
    let mut r = match outcome {
        Outcome::Applied(kind, reply) => write(&kind, reply),
        Outcome::Done(r) => r,
    };
    if let Some(n) = note {
        r.message = n;
    }
    r
}

fn write(kind: &WriteKind, reply: Reply) -> QueryResult {
    use WriteKind as K;
    match reply {
        Reply::Done => QueryResult::ok(0, ""),
        Reply::Added(ids) => QueryResult::ok(
            ids.len() as u64,
            format!("added backends {}", ids_text(&ids)),
        ),
        Reply::Dropped {
            tombstones,
            tablets_lost,
        } => {
            let ids: Vec<BackendId> = tombstones.iter().map(|t| t.id).collect();
            QueryResult::ok(
                ids.len() as u64,
                format!(
                    "dropped backends {}; {tablets_lost} tablets lost their last replica",
                    ids_text(&ids)
                ),
            )
        }
        Reply::Changed(ids) => match kind {
            K::ModifyBackends => QueryResult::ok(
                ids.len() as u64,
                format!("modified backends {}", ids_text(&ids)),
            ),
            _ => QueryResult::ok(ids.len() as u64, ""),
        },
        Reply::Memberships(outcomes) => match kind {
            K::CancelDecommission => {
                QueryResult::ok(changed(&outcomes).len() as u64, cancel_message(&outcomes))
            }
            K::Decommission { named } => {
                let affected = if roster_node::bugs::on(roster_node::bugs::Bug::DecommissionTwice) {
                    *named
                } else {
                    changed(&outcomes).len()
                };
                QueryResult::ok(affected as u64, decommission_message(&outcomes))
            }
            _ => QueryResult::ok(
                changed(&outcomes).len() as u64,
                decommission_message(&outcomes),
            ),
        },
        Reply::Table { id, created } => QueryResult::ok(0, table_message(kind, id, created)),
        Reply::Expired(ids) => QueryResult::ok(ids.len() as u64, ""),
        Reply::Moves(ids) => QueryResult::ok(ids.len() as u64, ""),
        Reply::MoveEnded(ended) => QueryResult::ok(u64::from(ended), ""),
    }
}

fn table_message(
    kind: &WriteKind,
    id: Option<roster_membership::TableId>,
    created: bool,
) -> String {
    use WriteKind as K;
    match (kind, id) {
        (K::DropTable { name, .. } | K::RecoverTable { name }, None) => format!("no table {name}"),
        (K::DropTable { name, force: true }, Some(id)) => {
            format!("dropped table {name} (id {id}); its replicas are being deleted")
        }
        (K::DropTable { name, force: false }, Some(id)) => format!(
            "table {name} (id {id}) is in the recycle bin; RECOVER TABLE {name} brings it back"
        ),
        (K::RecoverTable { name }, Some(id)) => format!("recovered table {name} (id {id})"),
        (K::CreateTable { name }, Some(id)) if !created => {
            format!("table {name} already exists (id {id})")
        }
        // A table made: `run` waited for its replicas and answered itself.
        (K::CreateTable { name }, Some(id)) => format!("created table {name} (id {id})"),
        (K::CreateTable { name }, None) => format!("table {name} was not created"),
        (_, Some(id)) => format!("table {id}"),
        (_, None) => String::new(),
    }
}
