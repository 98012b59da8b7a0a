//! `plumctl cluster ...`: status, and membership changes (`/v1/cluster*`).

use std::time::Duration;

use plum_types::{ClusterStatus, MembershipChange};
use serde_json::Value;

use super::{Ctx, decode};
use crate::api::Method;
use crate::error::Result;
use crate::output::{Cell, Output, Paint, Table, opt};

/// A new learner may take up to 10 s to catch up before the leader answers.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn status(ctx: &Ctx) -> Result<()> {
    let reply = ctx.api.get("/v1/cluster").await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let status: ClusterStatus = decode(&reply.body, "GET /v1/cluster")?;
    ctx.out.line(&summary(&status, &ctx.out))?;
    ctx.out.table(&members_table(&status))?;
    if let Some(p) = &status.reschedule_paused {
        let text = format!(
            "rescheduling paused: {} (nodes: {}); `plumctl cluster reschedule` resumes it",
            p.reason,
            p.nodes.join(",")
        );
        ctx.out.line(&ctx.out.paint(&text, Paint::Yellow))?;
    }
    Ok(())
}

fn summary(status: &ClusterStatus, out: &Output) -> String {
    let leader = match status.leader_id {
        Some(id) => out.paint(&id.to_string(), Paint::Green),
        None => out.paint("none", Paint::Red),
    };
    format!("leader: {leader}  term: {}  (answered by replica {})", status.term, status.replica_id)
}

/// One row per member; LAG is how many entries it has yet to apply to reach the leader's
/// applied index.
pub fn members_table(status: &ClusterStatus) -> Table {
    let leader_applied =
        status.leader_id.and_then(|l| status.members.iter().find(|m| m.id == l)).and_then(|m| m.applied_index);
    let mut table =
        Table::new(&["ID", "ADDRESS", "ROLE", "VOTER", "LAST-LOG", "APPLIED", "LAG", "REACHABLE", "VOTE-WITHHELD"]);
    let mut members = status.members.clone();
    members.sort_by_key(|m| m.id);
    for m in &members {
        let is_leader = status.leader_id == Some(m.id);
        let role = if is_leader && m.role != "leader" { format!("{} (leader)", m.role) } else { m.role.clone() };
        let role = match (is_leader, m.reachable) {
            (true, _) => Cell::painted(role, Paint::Green),
            (false, false) => Cell::painted(role, Paint::Red),
            (false, true) => role.into(),
        };
        let lag = match (leader_applied, m.applied_index) {
            (Some(l), Some(a)) => l.saturating_sub(a).to_string(),
            _ => "-".into(),
        };
        table.row(vec![
            m.id.to_string().into(),
            m.api_addr.clone().into(),
            role,
            yes_no(m.voter).into(),
            opt(m.last_log_index).into(),
            opt(m.applied_index).into(),
            lag.into(),
            Cell::painted(yes_no(m.reachable), Paint::good_bad(m.reachable)),
            if m.vote_withheld { Cell::painted("yes", Paint::Yellow) } else { "no".into() },
        ]);
    }
    table
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `voters: 1,2,3  learners: 4` from a membership answer.
fn membership(body: &Value) -> String {
    let ids = |k: &str| {
        let list: Vec<String> = body[k].as_array().into_iter().flatten().map(|v| v.to_string()).collect();
        if list.is_empty() { "-".to_string() } else { list.join(",") }
    };
    format!("voters: {}  learners: {}", ids("voters"), ids("learners"))
}

async fn change(ctx: &Ctx, method: Method, path: &str, change: Option<&MembershipChange>) -> Result<crate::api::Reply> {
    ctx.api.call(method, path, change, ctx.api.timeout().max(MEMBERSHIP_TIMEOUT)).await
}

pub async fn add_learner(ctx: &Ctx, id: u64, api_addr: &str) -> Result<()> {
    let body = MembershipChange { id, api_addr: Some(api_addr.to_string()) };
    let reply = change(ctx, Method::Post, "/v1/cluster/learners", Some(&body)).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    if reply.status == 202 {
        ctx.out.line(&format!(
            "replica {id} added as a learner, still catching up: watch `plumctl cluster status` before promoting it"
        ))?;
    } else {
        ctx.out.line(&format!(
            "replica {id} added as a learner and caught up: `plumctl cluster promote {id}` makes it a voter"
        ))?;
    }
    ctx.out.line(&membership(&reply.body))
}

pub async fn promote(ctx: &Ctx, id: u64) -> Result<()> {
    let body = MembershipChange { id, api_addr: None };
    let reply = change(ctx, Method::Post, "/v1/cluster/voters", Some(&body)).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    ctx.out.line(&format!("replica {id} is a voter"))?;
    ctx.out.line(&membership(&reply.body))
}

pub async fn remove(ctx: &Ctx, id: u64) -> Result<()> {
    let reply = change(ctx, Method::Delete, &format!("/v1/cluster/members/{id}"), None).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    ctx.out.line(&format!("replica {id} removed"))?;
    ctx.out.line(&membership(&reply.body))
}

pub async fn transfer_leader(ctx: &Ctx, id: u64) -> Result<()> {
    // Handing leadership to the leader itself is no change; do not ask the cluster for one.
    let current = ctx.api.get("/v1/cluster").await?;
    let status: ClusterStatus = decode(&current.body, "GET /v1/cluster")?;
    if status.leader_id == Some(id) {
        if ctx.out.json {
            return ctx.out.json_value(&current.body);
        }
        return ctx.out.line(&format!("replica {id} already leads; nothing to do"));
    }
    let body = MembershipChange { id, api_addr: None };
    let reply = change(ctx, Method::Post, "/v1/cluster/transfer-leader", Some(&body)).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    ctx.out.line(&format!("leadership transfer to replica {id} requested; `plumctl cluster status` shows the leader"))
}

pub async fn reschedule(ctx: &Ctx) -> Result<()> {
    let reply = ctx.api.send(Method::Post, "/v1/cluster/reschedule", None::<&()>).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    ctx.out.line("rescheduling resumed: instances of dead nodes are being moved")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_shows_lag_behind_the_leader() {
        let status: ClusterStatus = serde_json::from_value(serde_json::json!({
            "replicaId": 1, "leaderId": 2, "term": 4,
            "members": [
                {"id": 2, "apiAddr": "http://127.0.0.1:2", "role": "leader", "voter": true,
                 "lastLogIndex": 120, "appliedIndex": 120, "reachable": true},
                {"id": 1, "apiAddr": "http://127.0.0.1:1", "role": "follower", "voter": true,
                 "lastLogIndex": 118, "appliedIndex": 117, "reachable": true, "voteWithheld": true},
                {"id": 3, "apiAddr": "http://127.0.0.1:3", "role": "unknown", "voter": true,
                 "lastLogIndex": null, "appliedIndex": null, "reachable": false}
            ]
        }))
        .unwrap();
        let out = Output { json: false, color: false };
        let text = members_table(&status).render(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ID  ADDRESS"), "{text}");
        let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cols(lines[1]), ["1", "http://127.0.0.1:1", "follower", "yes", "118", "117", "3", "yes", "yes"]);
        assert_eq!(cols(lines[2]), ["2", "http://127.0.0.1:2", "leader", "yes", "120", "120", "0", "yes", "no"]);
        assert_eq!(cols(lines[3]), ["3", "http://127.0.0.1:3", "unknown", "yes", "-", "-", "-", "no", "no"]);
        assert_eq!(summary(&status, &out), "leader: 2  term: 4  (answered by replica 1)");
    }

    #[test]
    fn membership_lists() {
        assert_eq!(membership(&serde_json::json!({"voters": [1, 2], "learners": []})), "voters: 1,2  learners: -");
        assert_eq!(membership(&Value::Null), "voters: -  learners: -");
    }
}
