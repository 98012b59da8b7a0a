//! The agent's token as the controllers see it. A refusal (`401`/`403`) is no outage: retrying
//! will not fix it, a person has to. So it is logged as an error that says what to do, once per
//! kind of call per [`LOG_EVERY`] (not at every retry), retries slow down, and the token file
//! is re-read (a replaced file is picked up without a restart).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plum_sdk::{ClientError, Controllers, Tokens};
use plum_types::Role;

use crate::config::AgentConfig;

/// A refusal that keeps happening is logged again after this long.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// When each kind of call last logged a refusal.
static LOGGED: Mutex<BTreeMap<&'static str, Instant>> = Mutex::new(BTreeMap::new());

/// Whether a refusal of `what` is due to be logged at `now` (and notes it if so).
fn due(logged: &mut BTreeMap<&'static str, Instant>, what: &'static str, now: Instant) -> bool {
    match logged.get(what) {
        Some(at) if now.duration_since(*at) < LOG_EVERY => false,
        _ => {
            logged.insert(what, now);
            true
        }
    }
}

/// Whether `e` is a refusal of the agent's token; if so, logs what to do (rate-limited).
/// `what`: the call refused ("heartbeat", "registration", ...).
pub fn refused(client: &Controllers, node_id: &str, what: &'static str, e: &ClientError) -> bool {
    if !e.is_auth() {
        return false;
    }
    if !due(&mut LOGGED.lock().unwrap_or_else(|p| p.into_inner()), what, Instant::now()) {
        return true;
    }
    match e {
        ClientError::Unauthorized(_) if client.has_token() => tracing::error!(
            node = %node_id, call = what, error = %e,
            "the controllers refused this agent's token (401: unknown or revoked); put a valid one in the \
             --token-file / PLUM_TOKEN_FILE file (re-read on the next refusal) or PLUM_TOKEN: \
             `plumctl token create --role agent --node {node_id}`; retrying"
        ),
        ClientError::Unauthorized(_) => tracing::error!(
            node = %node_id, call = what, error = %e,
            "the controllers require a token (401) and this agent has none; pass --token-file PATH \
             (PLUM_TOKEN_FILE) or set PLUM_TOKEN: `plumctl token create --role agent --node {node_id}`; retrying"
        ),
        _ => tracing::error!(
            node = %node_id, call = what, error = %e,
            "the controllers refused this call to the agent's token (403); an agent token acts only for \
             the node it was made for: make one with `plumctl token create --role agent --node {node_id}`; \
             retrying"
        ),
    }
    true
}

/// The pause before retrying after `refusals` refusals in a row: 250 ms doubling up to 5 s,
/// plus up to 100 ms of jitter (agents refused together do not come back together).
pub fn pause(refusals: u32) -> Duration {
    let bound = plum_sdk::backoff::Backoff { base: Duration::from_millis(250), max: Duration::from_secs(5) };
    bound.bound(refusals) + Duration::from_millis(rand::random::<u64>() % 100)
}

/// The token file, re-read after a refusal.
pub struct TokenFile {
    path: Option<PathBuf>,
    current: Option<String>,
}

impl TokenFile {
    pub fn new(config: &AgentConfig) -> TokenFile {
        TokenFile { path: config.token_file.clone(), current: config.token.as_ref().map(|t| t.0.clone()) }
    }

    /// When the file now holds another token, the transport sends that one from now on;
    /// returns whether it does.
    pub fn reload(&mut self, client: &Controllers) -> bool {
        let Some(path) = &self.path else { return false };
        let token = match plum_sdk::config::read_token_file(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "token file not re-read");
                return false;
            }
        };
        if self.current.as_deref() == Some(token.as_str()) {
            return false;
        }
        match client.set_token(Some(&token)) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "the token file holds a new token: using it");
                self.current = Some(token);
                true
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "the token file's new token is not usable");
                false
            }
        }
    }
}

/// At start: asks the controllers who they take this agent for, and says early when the token
/// cannot work for this node (no token where one is needed, a read token, another node's).
pub async fn check(client: std::sync::Arc<Controllers>, node_id: String) {
    let me = match Tokens::new(client.clone()).whoami().await {
        Ok(me) => me,
        // Refused, unreachable (the heartbeat loop says so), or a controller without whoami.
        Err(e) => {
            tracing::debug!(error = %e, "whoami not answered");
            return;
        }
    };
    if !me.auth_enabled {
        if client.has_token() {
            tracing::info!("the controllers do not check tokens: the agent's token is not needed");
        }
        return;
    }
    let Some(token_id) = me.token_id else {
        tracing::error!(
            node = %node_id,
            "no token: the controllers require one; pass --token-file PATH (PLUM_TOKEN_FILE) or set PLUM_TOKEN"
        );
        return;
    };
    match (me.role, me.node_id.as_deref()) {
        (Role::Agent, Some(n)) if n == node_id => {
            tracing::info!(token = %token_id, "token accepted: agent of this node")
        }
        (Role::Agent, other) => tracing::error!(
            node = %node_id, token_node = ?other,
            "this agent's token acts for another node: its heartbeats and reports will be refused; \
             make one with `plumctl token create --role agent --node {node_id}`"
        ),
        (Role::Read, _) => tracing::error!(
            node = %node_id, token = %token_id,
            "this agent's token may only read: its heartbeats and reports will be refused; \
             make one with `plumctl token create --role agent --node {node_id}`"
        ),
        (role, _) => tracing::info!(%role, token = %token_id,
            "token accepted (an agent token for this node would be enough)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_period_per_call() {
        let mut logged = BTreeMap::new();
        let t0 = Instant::now();
        assert!(due(&mut logged, "heartbeat", t0));
        assert!(!due(&mut logged, "heartbeat", t0 + Duration::from_secs(1)));
        assert!(due(&mut logged, "registration", t0 + Duration::from_secs(1)), "each call for itself");
        assert!(due(&mut logged, "heartbeat", t0 + LOG_EVERY));
    }

    #[test]
    fn retries_after_refusals_slow_down_to_a_few_seconds() {
        assert!(pause(0) >= Duration::from_millis(250) && pause(0) < Duration::from_millis(350));
        assert!(pause(3) >= Duration::from_secs(2));
        assert!(pause(40) <= Duration::from_millis(5100));
    }

    #[test]
    fn only_401_and_403_are_refusals() {
        let client = Controllers::new(vec!["http://127.0.0.1:9".into()]);
        assert!(refused(&client, "n1", "test", &ClientError::Unauthorized("revoked".into())));
        assert!(refused(&client, "n1", "test", &ClientError::Forbidden("other node".into())));
        assert!(!refused(&client, "n1", "test", &ClientError::Unreachable("down".into())));
        assert!(!refused(&client, "n1", "test", &ClientError::Status { status: 400, body: String::new() }));
    }

    #[test]
    fn a_replaced_token_file_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "plum_old\n").unwrap();
        let client = Controllers::new(vec!["http://127.0.0.1:9".into()]);
        let mut file = TokenFile { path: Some(path.clone()), current: Some("plum_old".into()) };
        assert!(!file.reload(&client));
        assert!(!client.has_token(), "same token: nothing changed");
        std::fs::write(&path, "plum_new\n").unwrap();
        assert!(file.reload(&client));
        assert!(client.has_token());
        assert_eq!(file.current.as_deref(), Some("plum_new"));
        std::fs::write(&path, "not a token\n").unwrap();
        assert!(!file.reload(&client));
        assert_eq!(file.current.as_deref(), Some("plum_new"), "an unusable token is not taken");
    }
}
