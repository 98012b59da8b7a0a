//! Dependencies between services (`dependsOn`): the graph, its cycles, who depends on whom, and
//! whether a deployment's dependencies hold for an instance waiting to start.
//!
//! Pure functions of the view. Apply uses the graph ones (a cycle or a needed service is
//! refused by the entry itself, so two racing requests cannot slip one through); the leader
//! uses [`unmet`] before it places a waiting instance, and reads use it to say why an instance
//! waits. Time enters only as "how long has it waited", from leader-stamped record times.

use std::collections::{BTreeMap, BTreeSet};

use plum_types::{
    Dependency, DependencyCondition, Dependents, DeploymentRequest, Topology, TopologyEdge, TopologyService,
    VersionFilter,
};

use super::records::{AssignmentRecord, DeploymentRecord};
use super::view::Registry;

/// Phase of an instance placed but not yet reported on, running, and done (exit status 0, not
/// restarted): what `started` and `completed` count.
const STARTED_PHASES: &[&str] = &["Starting", "Running"];
pub const COMPLETED: &str = "Completed";

/// The service a deployment provides: its `service.name`, else its `name`.
pub fn provides(spec: &DeploymentRequest) -> &str {
    spec.service.as_ref().map(|s| s.name.as_str()).filter(|n| !n.is_empty()).unwrap_or(&spec.name)
}

/// Declared edges, service → the services it depends on, of every deployment (with `replace`
/// standing in for the deployment of that id, or added when new).
fn graph<'a>(r: &'a Registry, replace: Option<(&str, &'a DeploymentRequest)>) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let replaced = replace.map(|(id, _)| id);
    let specs = r
        .deployment_records()
        .filter(|d| Some(d.deployment_id.as_str()) != replaced)
        .map(|d| &d.spec)
        .chain(replace.map(|(_, s)| s));
    for spec in specs {
        let from = edges.entry(provides(spec)).or_default();
        from.extend(spec.depends_on.iter().map(|d| d.service.as_str()));
    }
    edges
}

/// The cycle deployment `id` with `spec` would close, as service names from its own service
/// back to it (`["web", "api", "web"]`); `None` when there is none.
pub fn cycle_with(r: &Registry, id: &str, spec: &DeploymentRequest) -> Option<Vec<String>> {
    let edges = graph(r, Some((id, spec)));
    let start = provides(spec);
    // Depth-first from the new deployment's service; any path back to it is the cycle (there
    // is no other: every earlier one was refused).
    let mut path = vec![start];
    let mut seen = BTreeSet::new();
    fn walk<'a>(
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        start: &str,
        path: &mut Vec<&'a str>,
        seen: &mut BTreeSet<&'a str>,
    ) -> bool {
        let at = *path.last().expect("the path starts non-empty");
        for &next in edges.get(at).into_iter().flatten() {
            if next == start {
                path.push(next);
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if walk(edges, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(&edges, start, &mut path, &mut seen).then(|| path.into_iter().map(str::to_string).collect())
}

/// Deployments that need deployment `id` to keep running: they declare a non-optional
/// dependency on its service, and no other deployment provides that service. Stopping or
/// deleting `id` is refused while there are any (unless forced).
pub fn needed_by(r: &Registry, id: &str) -> Vec<String> {
    let Some(d) = r.deployment_record(id) else { return Vec::new() };
    let service = provides(&d.spec);
    let other_provider =
        r.deployment_records().any(|o| o.deployment_id != id && o.spec.replicas > 0 && provides(&o.spec) == service);
    if other_provider {
        return Vec::new();
    }
    r.deployment_records()
        .filter(|o| {
            o.deployment_id != id && o.spec.depends_on.iter().any(|dep| dep.service == service && !dep.optional)
        })
        .map(|o| o.deployment_id.clone())
        .collect()
}

/// A dependency that does not hold for a waiting instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    pub service: String,
    /// `db: 0 of 1 healthy`.
    pub why: String,
    /// Waited longer than its `timeoutMs`.
    pub timed_out: bool,
}

/// What keeps an instance of `spec` from starting now, when it has waited `waited_ms`: its
/// dependencies that do not hold (optional ones never block once timed out or when nothing
/// provides them), and its config keys that do not exist.
pub fn unmet(r: &Registry, spec: &DeploymentRequest, waited_ms: u64) -> Vec<Unmet> {
    let mut out = unmet_dependencies(r, &spec.depends_on, waited_ms);
    for c in spec.config_refs.iter().filter(|c| r.kv_mod_index(&c.namespace, &c.key).is_none()) {
        out.push(Unmet { service: c.name(), why: format!("config {}: missing", c.name()), timed_out: false });
    }
    out
}

/// The log index of the value each of `spec`'s config keys has now (0: absent), by
/// `namespace/key`: what its instances started with, when recorded at their generation.
pub fn config_stamp(r: &Registry, spec: &DeploymentRequest) -> BTreeMap<String, u64> {
    let index = |c: &plum_types::ConfigRef| r.kv_mod_index(&c.namespace, &c.key).unwrap_or(0);
    spec.config_refs.iter().map(|c| (c.name(), index(c))).collect()
}

fn unmet_dependencies(r: &Registry, deps: &[Dependency], waited_ms: u64) -> Vec<Unmet> {
    let mut out = Vec::new();
    for dep in deps {
        let (holds, why) = holds_now(r, dep);
        if holds {
            continue;
        }
        let timed_out = dep.timeout_ms > 0 && waited_ms >= dep.timeout_ms;
        if dep.optional && (timed_out || !known_service(r, &dep.service)) {
            continue;
        }
        out.push(Unmet { service: dep.service.clone(), why, timed_out });
    }
    out
}

/// Whether the cluster knows `service`: a deployment provides it, or an instance registered
/// an endpoint of it.
pub fn known_service(r: &Registry, service: &str) -> bool {
    r.has_service(service) || r.deployment_records().any(|d| provides(&d.spec) == service)
}

fn version_ok(filter: &Option<VersionFilter>, version: &str) -> bool {
    filter.as_ref().is_none_or(|f| f.matches(version))
}

/// How many instances of the dependency's service satisfy its condition.
fn count(r: &Registry, dep: &Dependency) -> usize {
    // Checked when the deployment was accepted; an unreadable filter matches nothing.
    let filter = match dep.version.as_deref().map(VersionFilter::parse).transpose() {
        Ok(f) => f,
        Err(_) => return 0,
    };
    let providers: BTreeMap<&str, &DeploymentRecord> = r
        .deployment_records()
        .filter(|d| provides(&d.spec) == dep.service && version_ok(&filter, &d.spec.version))
        .map(|d| (d.deployment_id.as_str(), d))
        .collect();
    let instances_of = |phases: &dyn Fn(&AssignmentRecord) -> bool| -> BTreeSet<&str> {
        r.assignment_records()
            .filter(|a| !a.standby && providers.contains_key(a.deployment_id.as_str()) && phases(a))
            .map(|a| a.instance_id.as_str())
            .collect()
    };
    match dep.condition {
        DependencyCondition::Healthy => {
            let eps = r.discover(&dep.service, None, None);
            eps.iter()
                .filter(|e| version_ok(&filter, &e.version))
                .map(|e| e.instance_id.as_str())
                .collect::<BTreeSet<_>>()
                .len()
        }
        DependencyCondition::Started => {
            let mut ids = instances_of(&|a| STARTED_PHASES.contains(&a.phase.as_str()));
            let registered = r.instance_records().filter(|i| i.alive).filter(|i| {
                i.endpoints.iter().any(|e| e.service_name == dep.service && version_ok(&filter, &e.version))
            });
            ids.extend(registered.map(|i| i.instance_id.as_str()));
            ids.len()
        }
        DependencyCondition::Completed => {
            instances_of(&|a| a.phase == COMPLETED || (a.phase == "Exited" && a.exit_code == Some(0))).len()
        }
    }
}

/// Whether `dep` holds now (optional or not), and how far it is (`db: 1 of 2 healthy`).
fn holds_now(r: &Registry, dep: &Dependency) -> (bool, String) {
    let want = dep.min_healthy.max(1) as usize;
    let have = count(r, dep);
    let version = dep.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
    (have >= want, format!("{}{version}: {have} of {want} {}", dep.service, dep.condition.as_str()))
}

/// The whole graph: services as nodes; declared edges (`dependsOn`), registered ones (an
/// instance's `upstreams`, from each service it serves) and observed ones (clients that named
/// their service on discovery requests within the last hour, by `now_ms`), each with whether it
/// holds now.
pub fn topology(r: &Registry, now_ms: u64) -> Topology {
    let mut services: BTreeMap<String, TopologyService> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String, &str), TopologyEdge> = BTreeMap::new();
    // Registered and observed edges ask the same question of a service (one healthy
    // endpoint?), often many times: answered once per service.
    let mut healthy_memo: BTreeMap<String, (bool, String)> = BTreeMap::new();
    let mut healthy = |to: &str| {
        healthy_memo
            .entry(to.to_string())
            .or_insert_with(|| holds_now(r, &Dependency { service: to.to_string(), ..Dependency::default() }))
            .clone()
    };
    for d in r.deployment_records() {
        let from = provides(&d.spec).to_string();
        services.entry(from.clone()).or_default().deployments.push(d.deployment_id.clone());
        for dep in &d.spec.depends_on {
            let (satisfied, detail) = holds_now(r, dep);
            let edge = TopologyEdge {
                from: from.clone(),
                to: dep.service.clone(),
                kind: "declared".into(),
                condition: dep.condition.as_str().into(),
                optional: dep.optional,
                satisfied,
                detail,
            };
            edges.entry((from.clone(), dep.service.clone(), "declared")).or_insert(edge);
        }
    }
    // Registered and observed edges: from a service to one it needs a healthy endpoint of.
    let mut undeclared = |from: &str, to: &str, kind: &'static str, note: Option<String>| {
        if edges.contains_key(&(from.to_string(), to.to_string(), kind)) {
            return;
        }
        let (satisfied, detail) = healthy(to);
        let detail = match note {
            Some(note) => format!("{detail}; {note}"),
            None => detail,
        };
        let edge = TopologyEdge {
            from: from.to_string(),
            to: to.to_string(),
            kind: kind.into(),
            condition: DependencyCondition::Healthy.as_str().into(),
            optional: false,
            satisfied,
            detail,
        };
        edges.insert((from.to_string(), to.to_string(), kind), edge);
    };
    for inst in r.instance_records().filter(|i| i.alive && !i.upstreams.is_empty()) {
        let served: BTreeSet<&str> = inst.endpoints.iter().map(|e| e.service_name.as_str()).collect();
        for from in served {
            for to in &inst.upstreams {
                undeclared(from, to, "registered", None);
            }
        }
    }
    let recent = r.observed_edges().filter(|(_, _, at)| now_ms.saturating_sub(*at) <= super::OBSERVED_TTL_MS);
    for (from, to, at) in recent {
        let ago = format!("discovered {} s ago", now_ms.saturating_sub(at) / 1000);
        undeclared(from, to, "observed", Some(ago));
    }
    let named = r.services().into_iter().chain(edges.values().flat_map(|e| [e.from.clone(), e.to.clone()]));
    for name in named {
        services.entry(name).or_default();
    }
    let services = services
        .into_iter()
        .map(|(name, s)| TopologyService { healthy: r.discover(&name, None, None).len() as u32, name, ..s })
        .collect();
    Topology { services, edges: edges.into_values().collect() }
}

/// What breaks if `service` stops: services depending on it directly and through any chain
/// (declared, registered and observed edges), and the deployments that provide those.
pub fn dependents(r: &Registry, service: &str, now_ms: u64) -> Dependents {
    let topology = topology(r, now_ms);
    let depends_on = |s: &str| -> BTreeSet<String> {
        topology.edges.iter().filter(|e| e.to == s && e.from != s).map(|e| e.from.clone()).collect()
    };
    let direct = depends_on(service);
    let mut transitive: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = direct.iter().cloned().collect();
    while let Some(s) = queue.pop() {
        if s != service && transitive.insert(s.clone()) {
            queue.extend(depends_on(&s));
        }
    }
    let deployments = topology
        .services
        .iter()
        .filter(|s| transitive.contains(&s.name))
        .flat_map(|s| s.deployments.iter().cloned())
        .collect();
    Dependents {
        service: service.to_string(),
        direct: direct.into_iter().collect(),
        transitive: transitive.into_iter().collect(),
        deployments,
    }
}

/// What a read shows of a deployment's dependencies: per instance that waits for a node while
/// its dependencies do not hold, why; and the deployment's summary (`None` without
/// `dependsOn`).
pub struct Waiting {
    pub instances: BTreeMap<String, Vec<String>>,
    pub summary: Option<String>,
}

pub fn waiting(r: &Registry, d: &DeploymentRecord, now_ms: u64) -> Waiting {
    let mut instances = BTreeMap::new();
    if d.spec.depends_on.is_empty() && d.spec.config_refs.is_empty() {
        return Waiting { instances, summary: None };
    }
    let mut failed: Option<String> = None;
    let mut waits: Option<String> = None;
    for a in r.assignment_records().filter(|a| a.deployment_id == d.deployment_id && a.node_id.is_empty()) {
        let unmet = unmet(r, &d.spec, now_ms.saturating_sub(a.updated_ms));
        if unmet.is_empty() {
            continue;
        }
        if let Some(u) = unmet.iter().find(|u| u.timed_out) {
            failed.get_or_insert_with(|| format!("Failed: {} (past its timeoutMs; still waiting)", u.why));
        }
        waits.get_or_insert_with(|| {
            format!("Waiting: {}", unmet.iter().map(|u| u.why.as_str()).collect::<Vec<_>>().join(", "))
        });
        instances.insert(a.instance_id.clone(), unmet.into_iter().map(|u| u.why).collect());
    }
    Waiting { instances, summary: Some(failed.or(waits).unwrap_or_else(|| "Ready".to_string())) }
}

#[cfg(test)]
mod tests {
    use plum_raft_store::DataWrites;
    use plum_types::ServiceSpec;

    use super::*;
    use crate::state::{Command, CommandResult, EndpointRecord, Op, Placed};

    fn apply(r: &mut Registry, op: Op) -> CommandResult {
        let index = r.applied_index() + 1;
        r.apply(index, &Command { now_ms: 1_000, op }, &mut DataWrites::default())
    }

    fn spec(name: &str, deps: &[&str]) -> DeploymentRequest {
        DeploymentRequest {
            name: name.into(),
            replicas: 1,
            command: "/bin/true".into(),
            service: Some(ServiceSpec { name: name.into(), protocol: "http".into(), readiness: None }),
            depends_on: deps.iter().map(|s| Dependency { service: s.to_string(), ..Dependency::default() }).collect(),
            ..DeploymentRequest::default()
        }
    }

    fn create(r: &mut Registry, name: &str, deps: &[&str]) -> CommandResult {
        let placements = vec![Placed { instance_id: format!("{name}-0"), node_id: String::new() }];
        apply(
            r,
            Op::CreateDeployment {
                deployment_id: name.into(),
                spec: Box::new(spec(name, deps)),
                placements,
                standby: vec![],
            },
        )
    }

    #[test]
    fn a_cycle_is_found_and_named_from_the_new_service() {
        let mut r = Registry::default();
        assert_eq!(create(&mut r, "db", &[]), CommandResult::Deployment { deployment_id: "db".into() });
        create(&mut r, "api", &["db"]);
        create(&mut r, "web", &["api"]);
        assert_eq!(cycle_with(&r, "db2", &spec("other", &["web"])), None);
        let cycle = cycle_with(&r, "db", &spec("db", &["web"])).expect("db -> web -> api -> db");
        assert_eq!(cycle, ["db", "web", "api", "db"]);
        assert_eq!(cycle_with(&r, "self", &spec("self", &["self"])).unwrap(), ["self", "self"]);
    }

    #[test]
    fn dependents_direct_and_transitive() {
        let mut r = Registry::default();
        create(&mut r, "db", &[]);
        create(&mut r, "api", &["db"]);
        create(&mut r, "web", &["api"]);
        let d = dependents(&r, "db", 0);
        assert_eq!(
            (d.direct, d.transitive, d.deployments),
            (vec!["api".into()], vec!["api".into(), "web".into()], vec!["api".into(), "web".into()])
        );
        assert!(dependents(&r, "web", 0).transitive.is_empty());
        assert_eq!(needed_by(&r, "db"), ["api"]);
        assert!(needed_by(&r, "web").is_empty());
        let t = topology(&r, 0);
        let names: Vec<&str> = t.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "db", "web"]);
        let edges: Vec<(&str, &str, bool)> =
            t.edges.iter().map(|e| (e.from.as_str(), e.to.as_str(), e.satisfied)).collect();
        assert_eq!(edges, [("api", "db", false), ("web", "api", false)]);
        assert_eq!(t.edges[0].detail, "db: 0 of 1 healthy");
    }

    #[test]
    fn healthy_counts_discoverable_instances_and_optional_gives_up_after_its_timeout() {
        let mut r = Registry::default();
        let dep = Dependency { service: "db".into(), timeout_ms: 5_000, ..Dependency::default() };
        let unmet_now = unmet_dependencies(&r, std::slice::from_ref(&dep), 0);
        assert_eq!(unmet_now.len(), 1);
        assert_eq!(unmet_now[0].why, "db: 0 of 1 healthy");
        assert!(unmet_dependencies(&r, std::slice::from_ref(&dep), 6_000)[0].timed_out, "past timeoutMs, still unmet");
        let optional = Dependency { optional: true, ..dep.clone() };
        assert!(
            unmet_dependencies(&r, std::slice::from_ref(&optional), 0).is_empty(),
            "nothing provides db: optional gives up"
        );
        create(&mut r, "db", &[]);
        assert_eq!(unmet_dependencies(&r, std::slice::from_ref(&optional), 0).len(), 1, "db exists now: wait for it");
        assert!(unmet_dependencies(&r, std::slice::from_ref(&optional), 6_000).is_empty(), "until its timeout");
        apply(
            &mut r,
            Op::RegisterInstance {
                instance_id: "db-0".into(),
                node_id: String::new(),
                ip: "127.0.0.1".into(),
                endpoints: vec![EndpointRecord {
                    service_name: "db".into(),
                    port: 5432,
                    protocol: "tcp".into(),
                    version: "1.4.0".into(),
                    labels: BTreeMap::new(),
                    healthy: true,
                    ip: String::new(),
                }],
                ttl_ms: 0,
                replace: false,
                upstreams: vec![],
            },
        );
        assert!(unmet_dependencies(&r, std::slice::from_ref(&dep), 0).is_empty(), "one healthy endpoint");
        let v2 = Dependency { version: Some(">=2 <3".into()), ..dep };
        assert_eq!(unmet_dependencies(&r, &[v2], 0)[0].why, "db >=2 <3: 0 of 1 healthy", "the version range filters");
    }

    #[test]
    fn a_deployment_says_why_it_waits_and_that_a_dependency_timed_out() {
        let mut r = Registry::default();
        let mut api = spec("api", &[]);
        api.depends_on = vec![Dependency { service: "db".into(), timeout_ms: 5_000, ..Dependency::default() }];
        let placements = vec![Placed { instance_id: "api-0".into(), node_id: String::new() }];
        let op = Op::CreateDeployment { deployment_id: "api".into(), spec: Box::new(api), placements, standby: vec![] };
        apply(&mut r, op);
        let created = r.deployment_record("api").unwrap().created_ms;
        let early = waiting(&r, r.deployment_record("api").unwrap(), created + 1_000);
        assert_eq!(early.summary.as_deref(), Some("Waiting: db: 0 of 1 healthy"));
        assert_eq!(early.instances["api-0"], ["db: 0 of 1 healthy"]);
        let late = waiting(&r, r.deployment_record("api").unwrap(), created + 6_000);
        assert_eq!(late.summary.as_deref(), Some("Failed: db: 0 of 1 healthy (past its timeoutMs; still waiting)"));
        assert!(late.instances.contains_key("api-0"), "it keeps waiting");
    }
}
