//! `plumctl topology [--dot] | dependents SERVICE` (`/v1/topology`,
//! `/v1/services/{name}/dependents`): who depends on whom, and what breaks if a service stops.

use plum_types::{Dependents, Topology};

use super::{Ctx, decode};
use crate::api::encode;
use crate::error::Result;
use crate::output::{Cell, Paint, Table};

pub async fn topology(ctx: &Ctx, dot: bool) -> Result<()> {
    let reply = ctx.api.get("/v1/topology").await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let t: Topology = decode(&reply.body, "GET /v1/topology")?;
    if dot {
        return ctx.out.line(dot_graph(&t).trim_end());
    }
    ctx.out.table(&services_table(&t))?;
    ctx.out.line("")?;
    ctx.out.table(&edges_table(&t))
}

fn services_table(t: &Topology) -> Table {
    let mut table = Table::new(&["SERVICE", "DEPLOYMENTS", "HEALTHY", "DEPENDS-ON"]);
    for s in &t.services {
        let depends: Vec<&str> = t.edges.iter().filter(|e| e.from == s.name).map(|e| e.to.as_str()).collect();
        let deployments = if s.deployments.is_empty() { "-".to_string() } else { s.deployments.join(",") };
        table.row(vec![
            s.name.clone().into(),
            deployments.into(),
            Cell::painted(s.healthy.to_string(), Paint::good_bad(s.healthy > 0)),
            if depends.is_empty() { "-".into() } else { depends.join(",").into() },
        ]);
    }
    table
}

fn edges_table(t: &Topology) -> Table {
    let mut table = Table::new(&["FROM", "TO", "KIND", "CONDITION", "STATE", "DETAIL"]);
    for e in &t.edges {
        let condition = if e.optional { format!("{} (optional)", e.condition) } else { e.condition.clone() };
        let state = if e.satisfied { "satisfied" } else { "unsatisfied" };
        table.row(vec![
            e.from.clone().into(),
            e.to.clone().into(),
            e.kind.clone().into(),
            condition.into(),
            Cell::painted(state, Paint::good_bad(e.satisfied)),
            e.detail.clone().into(),
        ]);
    }
    table
}

/// Graphviz: services left to right in dependency order; an edge green when it holds, red
/// when not; dashed when optional or only registered.
fn dot_graph(t: &Topology) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
    let mut out = String::from("digraph plum {\n  rankdir=LR;\n  node [shape=box];\n");
    for s in &t.services {
        let label = format!("{}\n{} healthy", s.name, s.healthy);
        out.push_str(&format!("  {} [label={}];\n", quote(&s.name), quote(&label)));
    }
    for e in &t.edges {
        let color = if e.satisfied { "darkgreen" } else { "red" };
        let style = if e.optional || e.kind != "declared" { "dashed" } else { "solid" };
        out.push_str(&format!(
            "  {} -> {} [label={}, color={color}, style={style}];\n",
            quote(&e.from),
            quote(&e.to),
            quote(&e.condition)
        ));
    }
    out.push_str("}\n");
    out
}

pub async fn dependents(ctx: &Ctx, service: &str) -> Result<()> {
    let path = format!("/v1/services/{}/dependents", encode(service));
    let reply = ctx.api.get(&path).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let d: Dependents = decode(&reply.body, "GET /v1/services/{name}/dependents")?;
    let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    ctx.out.line(&format!("if {} stops:", d.service))?;
    ctx.out.line(&format!("  depend on it directly:  {}", list(&d.direct)))?;
    ctx.out.line(&format!("  depend on it at all:    {}", list(&d.transitive)))?;
    ctx.out.line(&format!("  deployments affected:   {}", list(&d.deployments)))
}

#[cfg(test)]
mod tests {
    use plum_types::{TopologyEdge, TopologyService};

    use super::*;

    fn sample() -> Topology {
        let service = |name: &str, healthy| TopologyService {
            name: name.into(),
            deployments: vec![format!("{name}-1")],
            healthy,
        };
        let edge = |from: &str, to: &str, satisfied| TopologyEdge {
            from: from.into(),
            to: to.into(),
            kind: "declared".into(),
            condition: "healthy".into(),
            optional: false,
            satisfied,
            detail: format!("{to}: {} of 1 healthy", u32::from(satisfied)),
        };
        Topology {
            services: vec![service("api", 1), service("db", 1), service("web", 0)],
            edges: vec![edge("api", "db", true), edge("web", "api", false)],
        }
    }

    #[test]
    fn dot_has_every_service_and_edge_colored_by_state() {
        let dot = dot_graph(&sample());
        assert!(dot.starts_with("digraph plum {"), "{dot}");
        assert!(dot.contains("\"api\" -> \"db\" [label=\"healthy\", color=darkgreen, style=solid];"), "{dot}");
        assert!(dot.contains("\"web\" -> \"api\" [label=\"healthy\", color=red, style=solid];"), "{dot}");
        assert!(dot.contains("\"web\" [label=\"web\\n0 healthy\"];"), "{dot}");
    }

    #[test]
    fn tables_list_dependencies_and_their_state() {
        let t = sample();
        let services = services_table(&t).render(false);
        let api: Vec<&str> = services.lines().find(|l| l.starts_with("api")).unwrap().split_whitespace().collect();
        assert_eq!(api, ["api", "api-1", "1", "db"]);
        let edges = edges_table(&t).render(false);
        assert!(edges.lines().any(|l| l.starts_with("web") && l.contains("unsatisfied")), "{edges}");
    }
}
