//! Client tokens (`/v1/tokens`, admin only) and how the cluster sees the caller
//! (`/v1/auth/whoami`). The token a client sends is set on the transport
//! ([`crate::controllers::Options::token`]); this is for managing tokens.

use std::sync::Arc;

use plum_types::{CreatedToken, Role, TokenInfo, TokenRequest, WhoAmI};
use reqwest::Method;

use crate::controllers::{Controllers, Request};
use crate::error::ClientError;

#[derive(Clone)]
pub struct Tokens {
    c: Arc<Controllers>,
}

/// `/v1/tokens/{id}` with the id escaped.
fn token_path(id: &str) -> String {
    let mut url = url::Url::parse("http://x/v1/tokens").expect("static URL");
    url.path_segments_mut().expect("http URL has segments").push(id);
    url.path().to_string()
}

impl Tokens {
    pub fn new(c: Arc<Controllers>) -> Tokens {
        Tokens { c }
    }

    /// A new token with `role`; `node_id` is required for [`Role::Agent`] (the node it acts
    /// for) and refused for the others (400). The answer is the only time the token is shown.
    ///
    /// Not resent after an unknown outcome (a second token would be made whose secret nobody
    /// saw): on [`ClientError::OutcomeUnknown`], [`Tokens::list`] tells whether it was made.
    pub async fn create(&self, name: &str, role: Role, node_id: Option<&str>) -> Result<CreatedToken, ClientError> {
        let body = TokenRequest {
            name: name.to_string(),
            role: role.as_str().to_string(),
            node_id: node_id.map(str::to_string),
        };
        let req = Request::write(Method::POST, "/v1/tokens", Some(&body), false)?;
        Ok(self.c.send(req).await?.body)
    }

    /// Every token (never their secrets).
    pub async fn list(&self) -> Result<Vec<TokenInfo>, ClientError> {
        Ok(self.c.send(Request::get("/v1/tokens")).await?.body)
    }

    /// Revokes the token `id` (its holders get `401` from then on). Resent after an unknown
    /// outcome, so a `404` ([`ClientError::is_not_found`]) may also mean that an earlier
    /// attempt revoked it.
    pub async fn revoke(&self, id: &str) -> Result<(), ClientError> {
        let req = Request::write::<()>(Method::DELETE, token_path(id), None, true)?;
        self.c.send_text(req).await.map(|_| ())
    }

    /// The role, token and node the cluster sees this client as.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        Ok(self.c.send(Request::get("/v1/auth/whoami")).await?.body)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
    use axum::response::IntoResponse;

    use super::*;
    use crate::controllers::Options;

    const TOKEN: &str = "plum_0123456789ab_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// What the fake controller saw: method, path, Authorization, body.
    type Seen = Arc<Mutex<Vec<(String, String, Option<String>, String)>>>;

    /// A loopback "controller" that records each request and answers like the real token routes.
    async fn fake_controller() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let app = Router::new().fallback(move |method: HttpMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                let body = String::from_utf8_lossy(&body).to_string();
                log.lock().unwrap().push((method.to_string(), uri.to_string(), auth, body));
                let info =
                    r#"{"id":"0123456789ab","name":"n1 agent","role":"agent","nodeId":"n1","createdAt":1700000000}"#;
                match (method.as_str(), uri.path()) {
                    ("POST", "/v1/tokens") => {
                        let created = format!(r#"{{"token":"{TOKEN}",{}"#, &info[1..]);
                        (StatusCode::CREATED, created).into_response()
                    }
                    ("GET", "/v1/tokens") => (StatusCode::OK, format!("[{info}]")).into_response(),
                    ("DELETE", "/v1/tokens/0123456789ab") => StatusCode::NO_CONTENT.into_response(),
                    ("DELETE", _) => (StatusCode::NOT_FOUND, r#"{"error":"no such token"}"#).into_response(),
                    ("GET", "/v1/auth/whoami") => {
                        (StatusCode::OK, r#"{"role":"admin","tokenId":"fedcba987654","authEnabled":true}"#)
                            .into_response()
                    }
                    _ => StatusCode::IM_A_TEAPOT.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    #[tokio::test]
    async fn token_calls_use_their_routes_and_carry_the_token() {
        let (url, seen) = fake_controller().await;
        let options = Options::default().with_token("plum_admin_secret");
        let tokens = Tokens::new(Arc::new(Controllers::with_options(vec![url], options)));

        let created = tokens.create("n1 agent", Role::Agent, Some("n1")).await.unwrap();
        assert_eq!(created.token, TOKEN);
        assert_eq!((created.info.role, created.info.node_id.as_deref()), (Role::Agent, Some("n1")));
        let listed = tokens.list().await.unwrap();
        assert_eq!(listed, vec![created.info.clone()]);
        tokens.revoke("0123456789ab").await.unwrap();
        assert!(tokens.revoke("a/b").await.unwrap_err().is_not_found());
        let me = tokens.whoami().await.unwrap();
        assert_eq!((me.role, me.token_id.as_deref(), me.auth_enabled), (Role::Admin, Some("fedcba987654"), true));

        let seen = seen.lock().unwrap().clone();
        let calls: Vec<(&str, &str)> = seen.iter().map(|(m, p, ..)| (m.as_str(), p.as_str())).collect();
        assert_eq!(
            calls,
            [
                ("POST", "/v1/tokens"),
                ("GET", "/v1/tokens"),
                ("DELETE", "/v1/tokens/0123456789ab"),
                ("DELETE", "/v1/tokens/a%2Fb"),
                ("GET", "/v1/auth/whoami"),
            ]
        );
        assert!(seen.iter().all(|(.., auth, _)| auth.as_deref() == Some("Bearer plum_admin_secret")));
        let body: serde_json::Value = serde_json::from_str(&seen[0].3).unwrap();
        assert_eq!(body, serde_json::json!({"name": "n1 agent", "role": "agent", "nodeId": "n1"}));
    }
}
