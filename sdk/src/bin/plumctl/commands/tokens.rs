//! `plumctl token create | list | revoke` (`/v1/tokens`, admin only) and `plumctl whoami`
//! (`/v1/auth/whoami`).

use plum_types::{CreatedToken, Role, TokenInfo, TokenRequest, WhoAmI};

use super::{Ctx, decode};
use crate::api::{Method, encode};
use crate::cli::TokenCreateArgs;
use crate::error::{CtlError, Result};
use crate::output::{Paint, Table, ago, note, now_secs};

/// The request `token create` sends, checked before anything is sent.
pub fn create_request(args: &TokenCreateArgs) -> Result<TokenRequest> {
    let node = args.node.as_deref().map(str::trim).filter(|n| !n.is_empty());
    match (args.role, node) {
        (Role::Agent, None) => return Err(CtlError::Usage("an agent token needs --node NODE".into())),
        (role, Some(_)) if role != Role::Agent => {
            return Err(CtlError::Usage(format!("--node is for agent tokens only, not {role}")));
        }
        _ => {}
    }
    let name = match (args.name.as_deref().map(str::trim).filter(|n| !n.is_empty()), node) {
        (Some(name), _) => name.to_string(),
        (None, Some(node)) => format!("agent-{node}"),
        (None, None) => args.role.to_string(),
    };
    Ok(TokenRequest { name, role: args.role.to_string(), node_id: node.map(str::to_string) })
}

pub async fn create(ctx: &Ctx, args: &TokenCreateArgs) -> Result<()> {
    let body = create_request(args)?;
    let reply = ctx.api.send_once(Method::Post, "/v1/tokens", Some(&body)).await?;
    if ctx.out.json && !args.quiet {
        return ctx.out.json_value(&reply.body);
    }
    let created: CreatedToken = decode(&reply.body, "POST /v1/tokens")?;
    if args.quiet {
        return ctx.out.line(&created.token);
    }
    let info = &created.info;
    let node = info.node_id.as_deref().map(|n| format!(", node {n}")).unwrap_or_default();
    ctx.out.line(&format!("token {} created: role {}{node}, name {}", info.id, info.role, info.name))?;
    ctx.out.line(&created.token)?;
    note(&ctx.out.paint(
        "This is the only time the token is shown: store it now (e.g. in a file for --token-file).",
        Paint::Yellow,
    ));
    Ok(())
}

pub async fn list(ctx: &Ctx) -> Result<()> {
    let reply = ctx.api.get("/v1/tokens").await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let tokens: Vec<TokenInfo> = decode(&reply.body, "GET /v1/tokens")?;
    ctx.out.table(&tokens_table(tokens, now_secs()))
}

/// Oldest first.
pub fn tokens_table(mut tokens: Vec<TokenInfo>, now: u64) -> Table {
    tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut table = Table::new(&["ID", "ROLE", "NODE", "NAME", "CREATED"]);
    for t in tokens {
        table.row(vec![
            t.id.into(),
            t.role.as_str().into(),
            t.node_id.unwrap_or_else(|| "-".into()).into(),
            t.name.into(),
            ago(t.created_at, now).into(),
        ]);
    }
    table
}

pub async fn revoke(ctx: &Ctx, id: &str) -> Result<()> {
    let reply = ctx.api.send(Method::Delete, &format!("/v1/tokens/{}", encode(id)), None::<&()>).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    ctx.out.line(&format!("token {id} revoked"))
}

pub async fn whoami(ctx: &Ctx) -> Result<()> {
    let reply = ctx.api.get("/v1/auth/whoami").await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let me: WhoAmI = decode(&reply.body, "GET /v1/auth/whoami")?;
    for line in whoami_lines(&me) {
        ctx.out.line(&line)?;
    }
    Ok(())
}

pub fn whoami_lines(me: &WhoAmI) -> Vec<String> {
    let mut lines = vec![format!("role:  {}", me.role)];
    lines.push(format!("token: {}", me.token_id.as_deref().unwrap_or("- (none sent)")));
    if let Some(node) = &me.node_id {
        lines.push(format!("node:  {node}"));
    }
    lines.push(if me.auth_enabled {
        "auth:  enabled".to_string()
    } else {
        "auth:  disabled on this cluster (every caller may do everything)".to_string()
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(role: Role, node: Option<&str>, name: Option<&str>) -> TokenCreateArgs {
        TokenCreateArgs { role, node: node.map(str::to_string), name: name.map(str::to_string), quiet: false }
    }

    #[test]
    fn create_requests_name_agents_after_their_node() {
        let r = create_request(&args(Role::Agent, Some("n1"), None)).unwrap();
        assert_eq!((r.name.as_str(), r.role.as_str(), r.node_id.as_deref()), ("agent-n1", "agent", Some("n1")));
        let r = create_request(&args(Role::Write, None, Some(" ci "))).unwrap();
        assert_eq!((r.name.as_str(), r.role.as_str(), r.node_id), ("ci", "write", None));
        assert_eq!(create_request(&args(Role::Read, None, None)).unwrap().name, "read");
    }

    #[test]
    fn the_node_goes_with_agent_tokens_only() {
        assert_eq!(create_request(&args(Role::Agent, None, None)).unwrap_err().exit_code(), 2);
        assert_eq!(create_request(&args(Role::Agent, Some(" "), None)).unwrap_err().exit_code(), 2);
        assert_eq!(create_request(&args(Role::Admin, Some("n1"), None)).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn token_table_oldest_first_without_secrets() {
        let t = |id: &str, role: Role, node: Option<&str>, at: u64| TokenInfo {
            id: id.into(),
            name: format!("{id}-name"),
            role,
            node_id: node.map(str::to_string),
            created_at: at,
        };
        let text = tokens_table(vec![t("bbb", Role::Agent, Some("n1"), 900), t("aaa", Role::Admin, None, 40)], 1000)
            .render(false);
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["ID", "ROLE", "NODE", "NAME", "CREATED"]);
        assert_eq!(rows[1], ["aaa", "admin", "-", "aaa-name", "16m", "ago"]);
        assert_eq!(rows[2], ["bbb", "agent", "n1", "bbb-name", "1m", "ago"]);
    }

    #[test]
    fn whoami_reads_naturally() {
        let me =
            WhoAmI { role: Role::Agent, token_id: Some("abc".into()), node_id: Some("n1".into()), auth_enabled: true };
        assert_eq!(whoami_lines(&me), ["role:  agent", "token: abc", "node:  n1", "auth:  enabled"]);
        let open = WhoAmI { role: Role::Admin, token_id: None, node_id: None, auth_enabled: false };
        let lines = whoami_lines(&open);
        assert_eq!(lines[1], "token: - (none sent)");
        assert!(lines[2].starts_with("auth:  disabled"));
    }
}
