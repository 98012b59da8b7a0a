//! `plumctl nodes | services | discover`: what the cluster knows of nodes and endpoints.

use plum_types::{Endpoint, NodeHealth, NodeSummary};
use serde_json::Value;

use super::{Ctx, decode};
use crate::api::{encode, with_query};
use crate::cli::DiscoverArgs;
use crate::error::Result;
use crate::output::{Cell, Paint, Table, ago, labels, now_secs};

pub async fn nodes(ctx: &Ctx) -> Result<()> {
    let reply = ctx.api.get("/v1/nodes").await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let mut nodes: Vec<NodeSummary> = decode(&reply.body, "GET /v1/nodes")?;
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let now = now_secs();
    let mut table = Table::new(&["NODE", "IP", "HEALTH", "LAST-SEEN", "LABELS"]);
    for n in &nodes {
        let healthy = n.health == NodeHealth::Healthy;
        let health = if healthy { "healthy" } else { "unhealthy" };
        table.row(vec![
            n.node_id.clone().into(),
            n.ip.clone().into(),
            Cell::painted(health, Paint::good_bad(healthy)),
            ago(n.last_seen, now).into(),
            labels(&n.labels).into(),
        ]);
    }
    ctx.out.table(&table)
}

pub async fn services(ctx: &Ctx) -> Result<()> {
    let reply = ctx.api.get("/v1/services/list").await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let mut names: Vec<String> = decode(&reply.body, "GET /v1/services/list")?;
    names.sort();
    let mut table = Table::new(&["SERVICE", "HEALTHY-ENDPOINTS"]);
    for name in &names {
        let path = format!("/v1/discovery?service={}", encode(name));
        let endpoints: Vec<Value> = decode(&ctx.api.get(&path).await?.body, "GET /v1/discovery")?;
        let count = endpoints.len();
        table.row(vec![name.clone().into(), Cell::painted(count.to_string(), Paint::good_bad(count > 0))]);
    }
    ctx.out.table(&table)
}

pub async fn discover(ctx: &Ctx, args: &DiscoverArgs) -> Result<()> {
    let limit = args.limit.map(|l| l.to_string());
    let path = with_query(
        "/v1/discovery",
        &[
            ("service", Some(&args.service)),
            ("version", args.version.as_deref()),
            ("protocol", args.protocol.as_deref()),
            ("limit", limit.as_deref()),
            ("consistent", args.consistent.then_some("true")),
        ],
    );
    let reply = ctx.api.get(&path).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let endpoints: Vec<Endpoint> = decode(&reply.body, "GET /v1/discovery")?;
    ctx.out.table(&endpoints_table(&endpoints))
}

pub fn endpoints_table(endpoints: &[Endpoint]) -> Table {
    let mut sorted: Vec<&Endpoint> = endpoints.iter().collect();
    sorted.sort_by(|a, b| (&a.instance_id, &a.ip, a.port).cmp(&(&b.instance_id, &b.ip, b.port)));
    let now = now_secs();
    let mut table =
        Table::new(&["INSTANCE", "NODE", "ADDRESS", "PROTOCOL", "VERSION", "HEALTH", "LAST-SEEN", "LABELS"]);
    for e in sorted {
        table.row(vec![
            e.instance_id.clone().into(),
            e.node_id.clone().into(),
            format!("{}:{}", e.ip, e.port).into(),
            e.protocol.clone().into(),
            e.version.clone().into(),
            Cell::painted(if e.healthy { "healthy" } else { "unhealthy" }, Paint::good_bad(e.healthy)),
            ago(e.last_seen, now).into(),
            labels(&e.labels).into(),
        ]);
    }
    table
}
