//! The statement pipeline, one module per stage, as a statement travels:
//! bytes -> parse (`roster_sql`) -> `plan` -> `authorize` -> `run` (propose through Raft, where
//! the applier checks again and applies; or read, or a session change) -> `render`.
//! Every front door (gRPC, MySQL, HTTP) enters through `execute_sql`.

mod authorize;
mod plan;
mod render;
mod run;
mod session;
mod show;

pub use session::Session;
pub use show::tables::{TabletRoute, tablet_routes};

use roster_node::FeNodeHandle;
use roster_node::error::ApiError;
use roster_proto::QueryResult;
use roster_sql::Statement;

/// Parse and execute one statement.
pub async fn execute_sql(
    fe: &FeNodeHandle,
    session: &mut Session,
    sql: &str,
) -> Result<QueryResult, ApiError> {
    // Before the parser looks at it: a huge statement costs nothing but this comparison.
    fe.config().limits.check_statement(sql.len())?;
    let stmt = roster_sql::parse(sql).map_err(|e| ApiError::Parse(e.to_string()))?;
    execute(fe, session, &stmt).await
}

/// Execute one parsed statement: each stage in turn.
pub async fn execute(
    fe: &FeNodeHandle,
    session: &mut Session,
    stmt: &Statement,
) -> Result<QueryResult, ApiError> {
    let plan = plan::plan(stmt, &session.user, fe.id())?;
    let note = authorize::authorize(fe, session, &plan).await?;
    let outcome = run::run(fe, session, plan).await?;
    Ok(render::render(outcome, note))
}
