//! Stage 3 of the pipeline: may this session's user run the plan? One source of privileges: a
//! write needs what its command needs (`Cmd::required_privilege`, checked again where it is
//! applied); a read needs what `Read::privilege` says, checked after the read barrier against
//! state at least as new as the statement; frontend changes and DROP BACKEND need NODE_PRIV;
//! session housekeeping needs nothing.

use super::plan::{Plan, Read};
use super::session::Session;
use roster_membership::Privilege;
use roster_node::FeNodeHandle;
use roster_node::error::ApiError;

impl Read {
    /// What reading this needs of `user`; `None`: anyone (their own grants).
    pub fn privilege(&self, user: &str) -> Option<Privilege> {
        match self {
            Read::ExplainDecommission { .. }
            | Read::Decommission
            | Read::DecommissionBlockers { .. } => Some(Privilege::NodePriv),
            Read::Backends | Read::DroppedBackends | Read::Frontends | Read::Config { .. } => {
                Some(Privilege::AdminPriv)
            }
            Read::Blacklist { .. } => Some(Privilege::Blacklist),
            Read::Grants { user: of } if of != user => Some(Privilege::AdminPriv),
            // Everyone may see their own grants.
            Read::Grants { .. } => None,
            Read::Tables
            | Read::RecycleBin
            | Read::Tablet { .. }
            | Read::Tablets { .. }
            | Read::TabletRoutes { .. }
            | Read::ReplicaDistribution { .. } => Some(Privilege::SelectPriv),
        }
    }
}

/// What running `plan` needs of `user`, and whether it is checked after a read barrier.
pub fn required(plan: &Plan, user: &str) -> Option<Privilege> {
    match plan {
        Plan::Write(w) => Some(w.cmd.required_privilege()),
        Plan::Frontend { .. } | Plan::Refuse(_) => Some(Privilege::NodePriv),
        Plan::Read(r) => r.privilege(user),
        Plan::Session(_) => None,
    }
}

/// Check the session's user's privilege for `plan`. Reads pass their read barrier here, so
/// the check sees a GRANT or REVOKE acknowledged anywhere; a stale read (the session asked for
/// one) answers how far behind it may be, as a note for the result.
pub async fn authorize(
    fe: &FeNodeHandle,
    session: &Session,
    plan: &Plan,
) -> Result<Option<String>, ApiError> {
    let user = session.user.as_str();
    let needed = required(plan, user);
    if let Plan::Read(_) = plan {
        let note = session.read_barrier(fe).await?;
        if let Some(p) = needed {
            fe.authorize_here(user, p)?;
        }
        return Ok(note);
    }
    if let Some(p) = needed {
        fe.authorize(user, p).await?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::plan::plan;
    use Privilege::{AdminPriv, Blacklist, NodePriv, SelectPriv};
    use roster_membership::FrontendId;

    /// SPEC section 2's privilege of every statement kind, through plan and authorize.
    #[test]
    fn each_statement_needs_the_privilege_the_spec_gives_it() {
        let cases: &[(&str, Option<Privilege>)] = &[
            (
                r#"ALTER SYSTEM ADD BACKEND "127.0.9.1:9050""#,
                Some(NodePriv),
            ),
            (r#"ALTER SYSTEM DROP BACKEND "10001""#, Some(NodePriv)),
            (r#"ALTER SYSTEM DROPP BACKEND "10001""#, Some(NodePriv)),
            (
                r#"ALTER SYSTEM DECOMMISSION BACKEND "10001""#,
                Some(NodePriv),
            ),
            (
                r#"EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND "10001""#,
                Some(NodePriv),
            ),
            (r#"CANCEL DECOMMISSION BACKEND "10001""#, Some(NodePriv)),
            (
                r#"ALTER SYSTEM MODIFY BACKEND "10001" SET ("disable_query"="true")"#,
                Some(NodePriv),
            ),
            ("SHOW BACKENDS", Some(AdminPriv)),
            ("SHOW DECOMMISSION", Some(NodePriv)),
            ("SHOW DECOMMISSION BLOCKERS", Some(NodePriv)),
            (
                r#"ALTER SYSTEM ADD FOLLOWER "127.0.0.1:9011""#,
                Some(NodePriv),
            ),
            (
                r#"ALTER SYSTEM DROP OBSERVER "127.0.0.1:9011""#,
                Some(NodePriv),
            ),
            ("SHOW FRONTENDS", Some(AdminPriv)),
            ("ADD BACKEND BLACKLIST 10001", Some(Blacklist)),
            ("DELETE BACKEND BLACKLIST 10001", Some(Blacklist)),
            ("SHOW BACKEND BLACKLIST", Some(Blacklist)),
            ("SHOW BACKEND BLACKLIST FROM ALL FRONTENDS", Some(Blacklist)),
            ("CREATE TABLE t BUCKETS 1", Some(NodePriv)),
            ("DROP TABLE t", Some(NodePriv)),
            ("RECOVER TABLE t", Some(NodePriv)),
            ("SHOW TABLES", Some(SelectPriv)),
            ("SHOW TABLET 1", Some(SelectPriv)),
            ("SHOW TABLETS FROM t", Some(SelectPriv)),
            ("SHOW TABLET ROUTES FROM t", Some(SelectPriv)),
            ("SHOW CATALOG RECYCLE BIN", Some(SelectPriv)),
            ("ADMIN SHOW REPLICA DISTRIBUTION FROM t", Some(SelectPriv)),
            (
                r#"ADMIN SET FRONTEND CONFIG ("disable_balance"="true")"#,
                Some(AdminPriv),
            ),
            ("ADMIN SHOW FRONTEND CONFIG", Some(AdminPriv)),
            ("CREATE USER 'u' IDENTIFIED BY 'p'", Some(AdminPriv)),
            ("DROP USER 'u'", Some(AdminPriv)),
            ("GRANT NODE_PRIV TO 'u'", Some(AdminPriv)),
            ("REVOKE NODE_PRIV FROM 'u'", Some(AdminPriv)),
            ("SHOW GRANTS FOR 'other'", Some(AdminPriv)),
            ("SHOW GRANTS", None),
            ("SHOW GRANTS FOR 'me'", None),
            ("SET NAMES utf8mb4", None),
            ("SELECT @@version_comment", None),
            ("SHOW VARIABLES", None),
            ("USE db", None),
        ];
        for (sql, want) in cases {
            let stmt = roster_sql::parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let p = plan(&stmt, "me", FrontendId(1)).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(required(&p, "me"), *want, "{sql}");
        }
    }
}
