//! Who may call what: every route of the client API needs one permission, and each role
//! grants a fixed set of them. The table is the single place that says so; a route missing
//! from it needs `Admin` (fail closed).

use axum::http::Method;
use plum_types::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// No token needed (`/healthz`: liveness and network probes; `/ui`: the console's files,
    /// which hold no data: the API calls the page makes carry the operator's token).
    Public,
    Read,
    /// Heartbeats, registrations, status reports: an `agent` token only for its own node
    /// (the handler checks the node), `write` and `admin` for any.
    Node,
    /// KV writes.
    Write,
    /// Deployments, membership, node removal, tokens.
    Admin,
}

use Permission::*;

/// (method, route as registered in the router, permission). `GET` covers `HEAD`.
pub const ROUTES: &[(&str, &str, Permission)] = &[
    ("GET", "/healthz", Public),
    // Like `/v1/cluster`: read-only cluster information, so any token (a `read` one for the
    // scraper), or none where an anonymous role is configured.
    ("GET", "/metrics", Read),
    ("GET", "/ui", Public),
    ("GET", "/ui/", Public),
    ("GET", "/ui/{file}", Public),
    ("POST", "/v1/nodes/heartbeat", Node),
    ("GET", "/v1/nodes", Read),
    ("GET", "/v1/nodes/{id}", Read),
    ("DELETE", "/v1/nodes/{id}", Admin),
    ("POST", "/v1/services/register", Node),
    ("POST", "/v1/services/heartbeat", Node),
    ("POST", "/v1/services/register/batch", Node),
    ("POST", "/v1/services/heartbeat/batch", Node),
    ("DELETE", "/v1/services", Node),
    ("GET", "/v1/services/list", Read),
    ("GET", "/v1/services/{name}/dependents", Read),
    ("GET", "/v1/topology", Read),
    ("GET", "/v1/discovery", Read),
    ("GET", "/v1/discovery/random", Read),
    ("GET", "/v1/discovery/one", Read),
    ("GET", "/v1/discovery/stream", Read),
    ("GET", "/v1/kv", Read),
    ("GET", "/v1/kv/{ns}", Read),
    ("GET", "/v1/kv/{ns}/keys", Read),
    ("PUT", "/v1/kv/{ns}/keys", Write),
    ("DELETE", "/v1/kv/{ns}/keys", Write),
    ("POST", "/v1/kv/{ns}/batch", Write),
    ("GET", "/v1/kv/{ns}/batch", Read),
    ("PUT", "/v1/kv/{ns}/batch", Write),
    ("DELETE", "/v1/kv/{ns}/batch", Write),
    ("POST", "/v1/kv/{ns}/copy", Write),
    ("GET", "/v1/kv/{ns}/copy", Read),
    ("PUT", "/v1/kv/{ns}/copy", Write),
    ("DELETE", "/v1/kv/{ns}/copy", Write),
    ("GET", "/v1/kv/{ns}/key/{key}/history", Read),
    ("POST", "/v1/kv/{ns}/key/{key}/rollback", Write),
    ("GET", "/v1/kv/{ns}/key/{key}", Read),
    ("PUT", "/v1/kv/{ns}/key/{key}", Write),
    ("DELETE", "/v1/kv/{ns}/key/{key}", Write),
    ("GET", "/v1/kv/{ns}/{key}", Read),
    ("PUT", "/v1/kv/{ns}/{key}", Write),
    ("DELETE", "/v1/kv/{ns}/{key}", Write),
    ("GET", "/v1/deployments", Read),
    ("POST", "/v1/deployments", Admin),
    ("GET", "/v1/deployments/{id}", Read),
    ("DELETE", "/v1/deployments/{id}", Admin),
    ("PATCH", "/v1/deployments/{id}", Admin),
    ("POST", "/v1/deployments/{id}/rollback", Admin),
    ("GET", "/v1/assignments", Read),
    ("GET", "/v1/stream", Read),
    ("POST", "/v1/instances/status", Node),
    ("GET", "/v1/cluster", Read),
    ("POST", "/v1/cluster/learners", Admin),
    ("POST", "/v1/cluster/voters", Admin),
    ("DELETE", "/v1/cluster/members/{id}", Admin),
    ("POST", "/v1/cluster/transfer-leader", Admin),
    ("POST", "/v1/cluster/reschedule", Admin),
    // Like `/v1/cluster`: what the applied log says about node failovers.
    ("GET", "/v1/failovers", Read),
    ("GET", "/v1/tokens", Admin),
    ("POST", "/v1/tokens", Admin),
    ("DELETE", "/v1/tokens/{id}", Admin),
    ("GET", "/v1/auth/whoami", Read),
];

/// The permission a request to `route` (the router's pattern) with `method` needs.
pub fn required(method: &Method, route: &str) -> Permission {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    ROUTES.iter().find(|(m, r, _)| *m == method && *r == route).map_or(Admin, |(_, _, p)| *p)
}

/// Whether `role` has `permission` (for `Node`, an `agent` only for its own node, which the
/// handler checks). `None`: an anonymous client with no anonymous role.
pub fn grants(role: Option<Role>, permission: Permission) -> bool {
    match (permission, role) {
        (Public, _) => true,
        (_, None) => false,
        (Read, Some(_)) => true,
        (Node, Some(r)) => r != Role::Read,
        (Write, Some(r)) => matches!(r, Role::Write | Role::Admin),
        (Admin, Some(r)) => r == Role::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_their_lists_and_routes_not_listed_need_admin() {
        let who = |p| Role::ALL.into_iter().filter(|r| grants(Some(*r), p)).collect::<Vec<_>>();
        assert_eq!(who(Read), Role::ALL);
        assert_eq!(who(Node), [Role::Agent, Role::Write, Role::Admin]);
        assert_eq!(who(Write), [Role::Write, Role::Admin]);
        assert_eq!(who(Admin), [Role::Admin]);
        assert!(grants(None, Public) && !grants(None, Read));
        assert_eq!(required(&Method::GET, "/v1/not-a-route"), Admin);
        assert_eq!(required(&Method::HEAD, "/v1/discovery"), Read);
        assert_eq!(required(&Method::POST, "/v1/discovery"), Admin, "a method not listed");
    }

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (m, r, _) in ROUTES {
            assert!(seen.insert((m, r)), "{m} {r} listed twice");
        }
    }
}
