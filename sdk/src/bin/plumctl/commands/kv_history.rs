//! `plumctl kv history | diff | rollback | copy`: a key's recent versions, what changed between
//! two of them, writing an earlier one again, and copying a namespace into another (promote
//! `dev` to `prod`).

use plum_types::{KvCopied, KvCopyRequest, KvHistory, KvRollbackRequest, KvVersion, KvWritten};
use similar::{ChangeTag, TextDiff};

use super::{Ctx, decode};
use crate::api::{Method, encode};
use crate::error::{CtlError, Result};
use crate::output::{Cell, Paint, Table};

fn history_path(ns: &str, key: &str) -> String {
    format!("/v1/kv/{}/key/{}/history", encode(ns), encode(key))
}

async fn fetch(ctx: &Ctx, ns: &str, key: &str) -> Result<KvHistory> {
    let reply = ctx.api.get(&history_path(ns, key)).await?;
    decode(&reply.body, "GET /v1/kv/{ns}/key/{key}/history")
}

pub async fn history(ctx: &Ctx, ns: &str, key: &str) -> Result<()> {
    if ctx.out.json {
        let reply = ctx.api.get(&history_path(ns, key)).await?;
        return ctx.out.json_value(&reply.body);
    }
    let h = fetch(ctx, ns, key).await?;
    let mut table = Table::new(&["VERSION", "MOD-INDEX", "TYPE", "VALUE"]);
    for v in &h.versions {
        let value = if v.deleted { Cell::painted("(deleted)", Paint::Red) } else { first_line(&v.value).into() };
        table.row(vec![v.version.to_string().into(), v.mod_index.to_string().into(), v.kind.as_str().into(), value]);
    }
    ctx.out.table(&table)
}

fn first_line(value: &str) -> String {
    match value.split_once('\n') {
        Some((first, _)) => format!("{first} ..."),
        None => value.to_string(),
    }
}

/// A version picked by `--from`/`--to`: a version number (the newest with it), or the
/// newest (`None` for `to`) and the one before it (`None` for `from`).
fn pick(versions: &[KvVersion], wanted: Option<u64>, default_at: usize) -> Result<&KvVersion> {
    let found = match wanted {
        Some(n) => versions.iter().find(|v| v.version == n && !v.deleted),
        None => versions.get(default_at),
    };
    found.ok_or_else(|| match wanted {
        Some(n) => CtlError::Usage(format!("version {n} is not in the key's history")),
        None => CtlError::Usage("the key has fewer than two versions in its history".into()),
    })
}

/// A unified line diff of two values, `-` lines from `from`, `+` lines from `to`.
pub fn diff_text(from: &str, to: &str) -> String {
    let mut out = String::new();
    for change in TextDiff::from_lines(from, to).iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push_str(change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

pub async fn diff(ctx: &Ctx, ns: &str, key: &str, from: Option<u64>, to: Option<u64>) -> Result<()> {
    let h = fetch(ctx, ns, key).await?;
    let to = pick(&h.versions, to, 0)?;
    let from = pick(&h.versions, from, 1)?;
    ctx.out.line(&format!("--- {ns}/{key} version {} (index {})", from.version, from.mod_index))?;
    ctx.out.line(&format!("+++ {ns}/{key} version {} (index {})", to.version, to.mod_index))?;
    for line in diff_text(&from.value, &to.value).lines() {
        let painted = match line.chars().next() {
            Some('-') => ctx.out.paint(line, Paint::Red),
            Some('+') => ctx.out.paint(line, Paint::Green),
            _ => line.to_string(),
        };
        ctx.out.line(&painted)?;
    }
    Ok(())
}

pub async fn rollback(ctx: &Ctx, ns: &str, key: &str, version: Option<u64>, mod_index: Option<u64>) -> Result<()> {
    if version.is_none() && mod_index.is_none() {
        return Err(CtlError::Usage("give --version or --mod-index (see `plumctl kv history`)".into()));
    }
    let body =
        KvRollbackRequest { mod_index, version, request_id: Some(format!("plumctl-{:016x}", rand::random::<u64>())) };
    let path = format!("/v1/kv/{}/key/{}/rollback", encode(ns), encode(key));
    let reply = ctx.api.send(Method::Post, &path, Some(&body)).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let written: KvWritten = decode(&reply.body, "POST /v1/kv/{ns}/key/{key}/rollback")?;
    ctx.out.line(&format!("{ns}/{key} rolled back: now version {} = {}", written.version, first_line(&written.value)))
}

pub async fn copy(ctx: &Ctx, from: &str, to: &str, prefix: Option<&str>, overwrite: bool) -> Result<()> {
    let body = KvCopyRequest { to: to.to_string(), prefix: prefix.unwrap_or_default().to_string(), overwrite };
    let reply = ctx.api.send(Method::Post, &format!("/v1/kv/{}/copy", encode(from)), Some(&body)).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let c: KvCopied = decode(&reply.body, "POST /v1/kv/{ns}/copy")?;
    ctx.out.line(&format!("{} -> {}: {} keys copied, {} kept", c.from, c.to, c.copied.len(), c.kept.len()))?;
    if !c.kept.is_empty() {
        ctx.out.line(&format!("kept (already in {}; --overwrite replaces them): {}", c.to, c.kept.join(", ")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_removed_and_added_lines() {
        let text = diff_text("host=a\nport=1\n", "host=b\nport=1\n");
        assert_eq!(text, "-host=a\n+host=b\n port=1\n");
        assert_eq!(diff_text("x", "y"), "-x\n+y\n", "values without a final newline");
    }

    #[test]
    fn versions_are_picked_by_number_or_the_last_two() {
        let v = |version, deleted| KvVersion {
            version,
            mod_index: version * 10,
            value: format!("v{version}"),
            kind: plum_types::KvType::String,
            updated_ms: 0,
            deleted,
        };
        let versions = [v(3, false), v(2, false), v(1, false)];
        assert_eq!(pick(&versions, None, 0).unwrap().version, 3);
        assert_eq!(pick(&versions, None, 1).unwrap().version, 2);
        assert_eq!(pick(&versions, Some(1), 0).unwrap().version, 1);
        assert!(pick(&versions, Some(9), 0).is_err());
        assert!(pick(&versions[..1], None, 1).is_err());
    }
}
