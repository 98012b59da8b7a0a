//! The transport to the controller cluster. Every replica's address is known; writes go to the
//! known leader (learned from the `x-plum-leader-addr` header every answer carries, and from
//! redirects), reads to the replica that answered last. A connect error, a timeout, a "no
//! leader" or a black-holed replica moves the request to the next replica; a run of failures
//! opens that replica's circuit breaker so later requests skip it. Between rounds over the
//! replicas the client waits with exponential backoff and full jitter, all within the request's
//! deadline. A write whose outcome became unknown is resent only when it is idempotent.
//!
//! With a token, every request carries `Authorization: Bearer <token>`. A `401` or `403` is
//! an answer, not a replica failure: it is returned at once ([`ClientError::Unauthorized`],
//! [`ClientError::Forbidden`]), never tried on another replica, and leaves the breakers alone.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use plum_types::ErrorBody;
use plum_types::headers as h;
use plum_types::traceparent::{self, SpanId, TraceParent};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::breaker::{Breaker, BreakerPolicy};
use crate::config::Resolved;
use crate::error::ClientError;
use crate::tls::TlsError;

/// The header carrying the index a watch answer reflects (pass it back to resume).
pub const INDEX_HEADER: &str = "x-plum-index";
const NONE: usize = usize::MAX;
/// Bodies at least this large are gzipped once the cluster said it accepts gzip.
const GZIP_REQUEST_FROM: usize = 1024;
/// Redirects followed within one request.
const MAX_REDIRECTS: u32 = 3;

/// A URL query from name/value pairs, each escaped.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// An answer: status, the `x-plum-index` header when present, and the decoded body.
#[derive(Debug)]
pub struct Answer<T> {
    pub status: u16,
    pub index: Option<u64>,
    pub body: T,
}

#[derive(Clone)]
pub struct Options {
    /// How long one attempt at one replica may take.
    pub attempt_timeout: Duration,
    /// How long a request may take in all, retries included.
    pub deadline: Duration,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    pub breaker: BreakerPolicy,
    /// Negotiate gzip: ask for compressed answers, compress large bodies once the cluster
    /// said it accepts them.
    pub gzip: bool,
    /// Sent as `Authorization: Bearer <token>` on every request (blank: none). Never shown by
    /// `Debug`. [`Controllers::from_env`] fills it from `PLUM_TOKEN` / `PLUM_TOKEN_FILE` when
    /// it is `None`.
    pub token: Option<String>,
    /// TLS settings for `https://` controllers: trust the CA certificates of one PEM file
    /// ([`Options::with_ca_file`]; [`Controllers::from_env`] fills it from `PLUM_CA_FILE` or
    /// `.plum/cluster.env` when it is `None`). `http://` controllers are unaffected.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Options {
    pub fn with_token(mut self, token: impl Into<String>) -> Options {
        self.token = Some(token.into());
        self
    }

    /// Trusts the CA certificates in `path` (PEM) for `https://` controllers. A missing or
    /// unreadable file, or one without a certificate, is a [`ClientError::Config`].
    pub fn with_ca_file(mut self, path: &Path) -> Result<Options, ClientError> {
        let config = crate::tls::client_config(path).map_err(|e| {
            ClientError::Config(match e {
                TlsError::File { .. } => format!("CA file {e}"),
                TlsError::Config(_) => e.to_string(),
            })
        })?;
        self.tls = Some(Arc::new(config));
        Ok(self)
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("breaker", &self.breaker)
            .field("gzip", &self.gzip)
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            backoff: Backoff::default(),
            breaker: BreakerPolicy::default(),
            gzip: true,
            token: None,
            tls: None,
        }
    }
}

/// One request, with what the transport needs to know to retry it safely.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// JSON, serialised once so that every attempt sends the same bytes.
    pub body: Option<Vec<u8>>,
    /// Sent again after an unknown outcome (a timeout after sending, `outcomeUnknown`)?
    pub idempotent: bool,
    pub attempt_timeout: Option<Duration>,
    pub deadline: Option<Duration>,
    /// Give up after this many rounds over the replicas even if the deadline allows more
    /// (`None`: as many as the deadline allows). A caller with a retry loop of its own (the
    /// discovery watch) hears of an outage at once instead of only when the deadline passed.
    pub max_rounds: Option<u32>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Request {
        Request {
            method: Method::GET,
            path: path.into(),
            body: None,
            idempotent: true,
            attempt_timeout: None,
            deadline: None,
            max_rounds: None,
        }
    }

    /// A write; `idempotent` says whether resending it after an unknown outcome is safe.
    pub fn write<B: Serialize + ?Sized>(
        method: Method,
        path: impl Into<String>,
        body: Option<&B>,
        idempotent: bool,
    ) -> Result<Request, ClientError> {
        let body = body.map(serde_json::to_vec).transpose().map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Request {
            method,
            path: path.into(),
            body,
            idempotent,
            attempt_timeout: None,
            deadline: None,
            max_rounds: None,
        })
    }

    pub fn attempt_timeout(mut self, t: Duration) -> Request {
        self.attempt_timeout = Some(t);
        self
    }

    pub fn deadline(mut self, t: Duration) -> Request {
        self.deadline = Some(t);
        self
    }

    /// At most `rounds` rounds over the replicas (at least one).
    pub fn max_rounds(mut self, rounds: u32) -> Request {
        self.max_rounds = Some(rounds.max(1));
        self
    }

    fn is_read(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }
}

struct Replica {
    url: String,
    breaker: Breaker,
}

pub struct Controllers {
    replicas: Vec<Replica>,
    http: reqwest::Client,
    options: Options,
    /// The replica believed to lead, or `NONE`.
    leader: AtomicUsize,
    /// The replica that answered last.
    last: AtomicUsize,
    /// A replica said (`Accept-Encoding` on an answer) that it takes gzipped bodies.
    gzip_accepted: AtomicBool,
    /// The `Authorization` value in force (marked sensitive: `Debug` of a header map hides
    /// it), or why the token given cannot be sent (every request then fails with that).
    auth: RwLock<Auth>,
}

type Auth = Result<Option<HeaderValue>, String>;

/// The header value for `token`; blank is no token. Errors never repeat the token.
fn auth_header(token: Option<&str>) -> Auth {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    crate::config::check_token(token)?;
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "the token is not valid".to_string())?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// What [`Controllers::from_env`] reads from the process environment (tests pass their own).
#[derive(Default)]
struct EnvSettings {
    /// `PLUM_TOKEN`.
    token: Option<String>,
    /// `PLUM_TOKEN_FILE`.
    token_file: Option<OsString>,
    /// `PLUM_CA_FILE`, when not empty.
    ca_file: Option<std::path::PathBuf>,
}

/// The addresses and options [`Controllers::from_env`] builds on. TLS: `options`' own, else
/// `PLUM_CA_FILE`, else the CA file the `.plum/cluster.env` the controllers came from names. The
/// token likewise. `resolve` finds the controllers, told whether a CA is already in force.
fn settle(
    env: &EnvSettings,
    mut options: Options,
    resolve: impl FnOnce(bool) -> Result<Resolved, ClientError>,
) -> Result<(Vec<String>, Options), ClientError> {
    let in_context = |context: String| {
        move |e: ClientError| match e {
            ClientError::Config(m) => ClientError::Config(format!("{context}: {m}")),
            e => e,
        }
    };
    if options.tls.is_none()
        && let Some(ca) = &env.ca_file
    {
        options = options.with_ca_file(ca).map_err(in_context(crate::config::CA_FILE_ENV.to_string()))?;
    }
    let found = resolve(options.tls.is_some())?;
    if options.tls.is_none()
        && let Some(ca) = &found.ca_file
    {
        let from = found.env_file.as_deref().unwrap_or(Path::new(".plum/cluster.env")).display();
        let context = format!("{} in {from}", crate::config::CA_FILE_ENV);
        options = options.with_ca_file(ca).map_err(in_context(context))?;
    }
    if options.token.is_none() {
        options.token = match crate::config::token_from(env.token.clone(), env.token_file.clone())? {
            Some(t) => Some(t),
            None => found.token_file.as_deref().map(crate::config::read_token_file).transpose()?,
        };
    }
    Ok((found.urls, options))
}

/// How one attempt ended.
enum Attempt {
    /// Status, `x-plum-index`, body, and the replica the answer named as leader (if it is one
    /// of ours).
    Answered(u16, Option<u64>, String, Option<usize>),
    /// Nothing was sent: safe to send elsewhere whatever the request.
    NotSent(String),
    /// Sent, but no answer: the outcome is unknown.
    Lost(String),
}

impl Controllers {
    /// `urls`: every replica (`http://host:port` or `https://host:port`), at least one.
    pub fn new(urls: Vec<String>) -> Controllers {
        Controllers::with_options(urls, Options::default())
    }

    pub fn with_options(urls: Vec<String>, options: Options) -> Controllers {
        let mut http = reqwest::Client::builder();
        if let Some(tls) = &options.tls {
            http = http.tls_backend_preconfigured(rustls::ClientConfig::clone(tls));
        }
        let http = http
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(options.connect_timeout)
            // Below the controller's header timeout (30 s), after which it closes idle
            // connections: we close first, so no request races a closing connection.
            .pool_idle_timeout(Duration::from_secs(20))
            .gzip(options.gzip)
            // Redirects to the leader are ours to follow: reqwest following them itself would
            // hide the leader hint and keep knocking on a leader that just died.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client builds with static settings");
        let replicas = urls
            .into_iter()
            .map(|u| Replica { url: u.trim_end_matches('/').to_string(), breaker: Breaker::default() })
            .collect();
        let auth = RwLock::new(auth_header(options.token.as_deref()));
        Controllers {
            replicas,
            http,
            options,
            leader: AtomicUsize::new(NONE),
            last: AtomicUsize::new(0),
            gzip_accepted: AtomicBool::new(false),
            auth,
        }
    }

    /// From an explicit list, `PLUM_CONTROLLERS`, or the nearest `.plum/cluster.env`; without a
    /// token in `options`, the one in `PLUM_TOKEN` or the file `PLUM_TOKEN_FILE` names, else
    /// (controllers from `.plum/cluster.env` only) the token file that file names. Without TLS
    /// settings in `options`, likewise the CA file `PLUM_CA_FILE` names, else the one
    /// `.plum/cluster.env` names. With a CA file, addresses without a scheme get `https://`.
    pub fn from_env(explicit: Option<&str>, options: Options) -> Result<Controllers, ClientError> {
        let env = EnvSettings {
            token: std::env::var(crate::config::TOKEN_ENV).ok(),
            token_file: std::env::var_os(crate::config::TOKEN_FILE_ENV),
            ca_file: crate::config::ca_file_from_env(),
        };
        let (urls, options) = settle(&env, options, |tls| crate::config::resolve_controllers(explicit, tls))?;
        Ok(Controllers::with_options(urls, options))
    }

    /// Replaces the token sent from now on (`None`: send none), e.g. after the token file was
    /// rotated. A token that cannot be sent is refused and the one in force kept.
    /// [`Controllers::options`] still shows the token the transport was built with.
    pub fn set_token(&self, token: Option<&str>) -> Result<(), ClientError> {
        let value = auth_header(token).map_err(ClientError::Config)?;
        *self.auth.write().unwrap_or_else(|p| p.into_inner()) = Ok(value);
        Ok(())
    }

    /// Whether requests carry a token.
    pub fn has_token(&self) -> bool {
        matches!(*self.auth.read().unwrap_or_else(|p| p.into_inner()), Ok(Some(_)))
    }

    /// Adds this transport's `Authorization` header to a request built on [`Controllers::http`].
    pub fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &*self.auth.read().unwrap_or_else(|p| p.into_inner()) {
            Ok(Some(value)) => builder.header(AUTHORIZATION, value.clone()),
            _ => builder,
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.url.clone()).collect()
    }

    /// The leader as last learned, if any.
    pub fn leader_url(&self) -> Option<String> {
        self.replicas.get(self.leader.load(Ordering::Relaxed)).map(|r| r.url.clone())
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The shared HTTP client (connection pool), for watches that hold a connection open. It
    /// sends no token by itself: requests to the controllers go through
    /// [`Controllers::authorize`]. With TLS settings it trusts only the cluster's CA, so call
    /// `https://` services with a client of your own.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request treated as idempotent (the agent's heartbeats, reports, registrations):
    /// `timeout` bounds each attempt, and every replica is tried.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Answer<T>, ClientError> {
        let deadline = timeout.saturating_mul(self.replicas.len().max(1) as u32 + 1);
        let req = Request::write(method, path, body, true)?.attempt_timeout(timeout).deadline(deadline);
        self.send(req).await
    }

    /// Sends `req` and decodes the JSON answer (an empty body decodes as `null`).
    pub async fn send<T: DeserializeOwned>(&self, req: Request) -> Result<Answer<T>, ClientError> {
        let answer = self.send_text(req).await?;
        let body = decode(&answer.body)?;
        Ok(Answer { status: answer.status, index: answer.index, body })
    }

    /// Sends `req`; a 2xx answer's body as text.
    /// Every call is a trace of its own (W3C `traceparent`): each attempt sends the call's
    /// trace id with an id of its own as the parent, so the replicas' logs of all its retries
    /// and redirects share one `trace_id`.
    pub async fn send_text(&self, req: Request) -> Result<Answer<String>, ClientError> {
        let trace = TraceParent::random();
        let span =
            tracing::debug_span!("plum_call", method = %req.method, path = %req.path, trace_id = %trace.trace_id);
        self.send_inner(req, trace).instrument(span).await
    }

    async fn send_inner(&self, req: Request, trace: TraceParent) -> Result<Answer<String>, ClientError> {
        if self.replicas.is_empty() {
            return Err(ClientError::Config("no controller addresses".into()));
        }
        let auth = self.auth.read().unwrap_or_else(|p| p.into_inner()).clone().map_err(ClientError::Config)?;
        let started = Instant::now();
        let deadline = started + req.deadline.unwrap_or(self.options.deadline);
        let attempt_timeout = req.attempt_timeout.unwrap_or(self.options.attempt_timeout);
        let mut last_error = String::from("no attempt made");
        let mut redirects = 0;
        let mut round = 0;
        // Replicas that failed during this request, and whether to ask a follower to hold the
        // write until a leader is elected (instead of naming a leader that just failed us).
        let mut failed = vec![false; self.replicas.len()];
        let mut hold = false;
        // An idempotent write resent after a lost attempt may already be applied: if no later
        // attempt settles it, the caller must hear "unknown", not "nothing applied".
        let mut maybe_applied = false;
        let give_up = |last_error: String, maybe_applied: bool| {
            if maybe_applied {
                ClientError::OutcomeUnknown(format!("{last_error} (an earlier attempt's outcome is unknown)"))
            } else {
                ClientError::Unreachable(last_error)
            }
        };
        loop {
            let mut plan = self.plan(!req.is_read());
            while let Some(at) = plan.pop() {
                let now = Instant::now();
                if now >= deadline {
                    return Err(give_up(format!("deadline passed; last: {last_error}"), maybe_applied));
                }
                let timeout = attempt_timeout.min(deadline - now);
                let attempt = self.attempt(at, &req, timeout, hold, auth.as_ref(), trace).await;
                let url = &self.replicas[at].url;
                if tracing::enabled!(tracing::Level::TRACE) {
                    let outcome = match &attempt {
                        Attempt::Answered(status, ..) => format!("HTTP {status}"),
                        Attempt::NotSent(e) => format!("not sent: {e}"),
                        Attempt::Lost(e) => format!("lost: {e}"),
                    };
                    let ms = now.elapsed().as_millis() as u64;
                    tracing::trace!(replica = %url, hold, ms, outcome, "attempt");
                }
                match attempt {
                    Attempt::NotSent(e) => {
                        self.replicas[at].breaker.failure(&self.options.breaker, Instant::now());
                        failed[at] = true;
                        last_error = format!("{url}: {e}");
                    }
                    Attempt::Lost(e) => {
                        self.replicas[at].breaker.failure(&self.options.breaker, Instant::now());
                        failed[at] = true;
                        last_error = format!("{url}: {e}");
                        if !req.is_read() {
                            if !req.idempotent {
                                return Err(ClientError::OutcomeUnknown(last_error));
                            }
                            maybe_applied = true;
                        }
                    }
                    Attempt::Answered(status, index, text, named_leader) => {
                        self.replicas[at].breaker.success();
                        if status == 307 && redirects >= MAX_REDIRECTS {
                            // Redirected in circles: leadership is moving (a leader stepping
                            // down). Not applied; the next round, after its pause, starts over.
                            last_error = format!("{url}: redirected in circles while leadership moved");
                            continue;
                        }
                        if status == 307 {
                            // Not applied; the leader is named in the headers we just learned.
                            redirects += 1;
                            last_error = format!("{url}: redirected to the leader");
                            // A leader whose breaker is open (it failed us on earlier
                            // requests, e.g. black-holed while the followers still name it)
                            // is no more usable than one that failed this request: following
                            // the redirect would wait on it for another attempt timeout.
                            // (Conformance: `breaker-skips-black-holed-leader`.)
                            let usable = named_leader
                                .is_some_and(|l| !failed[l] && !self.replicas[l].breaker.is_open(Instant::now()));
                            if !usable {
                                // The replica names a leader that just failed us (an election
                                // is under way), one whose breaker is open, or one we have no
                                // address for: let it hold the write and pass it on, rather
                                // than bouncing between the two.
                                hold = true;
                                plan.push(at);
                            } else {
                                plan = self.plan(true);
                            }
                            continue;
                        }
                        // 429: the replica is at its limit and did nothing; another may have room.
                        if status == 503 || status == 429 {
                            let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
                            if body.as_ref().is_some_and(|b| b.outcome_unknown) {
                                if !req.idempotent {
                                    return Err(ClientError::OutcomeUnknown(format!("{url}: {}", clip(&text))));
                                }
                                maybe_applied = true;
                            }
                            // No leader yet, or certainly not applied: another replica may do.
                            last_error = format!("{url}: {}", clip(&text));
                            continue;
                        }
                        self.last.store(at, Ordering::Relaxed);
                        // Every replica checks tokens against the same replicated list: asking
                        // another would only repeat the answer.
                        if status == 401 {
                            return Err(ClientError::Unauthorized(error_message(status, &text)));
                        }
                        if status == 403 {
                            return Err(ClientError::Forbidden(error_message(status, &text)));
                        }
                        if !(200..300).contains(&status) {
                            return Err(ClientError::Status { status, body: text });
                        }
                        return Ok(Answer { status, index, body: text });
                    }
                }
            }
            // Every replica failed this round: wait (jittered) before the next.
            let pause = self.options.backoff.delay(round);
            round += 1;
            redirects = 0;
            if req.max_rounds.is_some_and(|max| round >= max) || Instant::now() + pause >= deadline {
                return Err(give_up(last_error, maybe_applied));
            }
            tracing::debug!(round, pause_ms = pause.as_millis() as u64, error = %last_error, "retrying");
            tokio::time::sleep(pause).await;
        }
    }

    /// The replicas to try, as a stack (last = first to try): for writes the leader first,
    /// then the one that answered last, then the rest; replicas whose breaker is open go to the
    /// bottom (tried only when nothing else is left).
    fn plan(&self, to_leader: bool) -> Vec<usize> {
        let n = self.replicas.len();
        let last = self.last.load(Ordering::Relaxed) % n;
        let mut order: Vec<usize> = (0..n).map(|i| (last + i) % n).collect();
        let leader = self.leader.load(Ordering::Relaxed);
        if to_leader && leader < n {
            order.retain(|&i| i != leader);
            order.insert(0, leader);
        }
        let now = Instant::now();
        let policy = &self.options.breaker;
        let (open, closed): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| !self.replicas[i].breaker.allows(policy, now));
        closed.into_iter().chain(open).rev().collect()
    }

    /// One try at one replica. Writes ask for a redirect to the leader (one hop less than the
    /// replica passing it on) unless `hold`.
    async fn attempt(
        &self,
        at: usize,
        req: &Request,
        timeout: Duration,
        hold: bool,
        auth: Option<&HeaderValue>,
        trace: TraceParent,
    ) -> Attempt {
        let url = format!("{}{}", self.replicas[at].url, req.path);
        let traceparent = trace.with_parent(SpanId::random()).to_string();
        let mut builder =
            self.http.request(req.method.clone(), url).timeout(timeout).header(traceparent::HEADER, traceparent);
        if let Some(value) = auth {
            builder = builder.header(AUTHORIZATION, value.clone());
        }
        if !hold {
            builder = builder.header(h::REDIRECT, "1");
        }
        if let Some(body) = &req.body {
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
            builder = match self.maybe_gzip(body) {
                Some(zipped) => builder.header(reqwest::header::CONTENT_ENCODING, "gzip").body(zipped),
                None => builder.body(body.clone()),
            };
        }
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => return send_failure(&e),
        };
        let named_leader = self.learn(resp.headers());
        let status = resp.status().as_u16();
        let index = resp.headers().get(INDEX_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        match resp.text().await {
            Ok(text) => Attempt::Answered(status, index, text, named_leader),
            // The status line arrived: the request was received, the body was cut off.
            Err(e) if (200..300).contains(&status) => Attempt::Lost(e.to_string()),
            Err(e) => Attempt::Answered(status, index, e.to_string(), named_leader),
        }
    }

    /// Learns the leader (and gzip support) from an answer's headers; returns the leader it
    /// named when that is one of our replicas.
    fn learn(&self, headers: &reqwest::header::HeaderMap) -> Option<usize> {
        let mut named = None;
        if let Some(addr) = headers.get(h::LEADER_ADDR).and_then(|v| v.to_str().ok()) {
            let addr = addr.trim_end_matches('/');
            if let Some(i) = self.replicas.iter().position(|r| r.url == addr) {
                self.leader.store(i, Ordering::Relaxed);
                named = Some(i);
            }
        }
        let gzip = headers
            .get(reqwest::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim() == "gzip"));
        if gzip && self.options.gzip {
            self.gzip_accepted.store(true, Ordering::Relaxed);
        }
        named
    }

    fn maybe_gzip(&self, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() < GZIP_REQUEST_FROM || !self.gzip_accepted.load(Ordering::Relaxed) {
            return None;
        }
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body).ok()?;
        enc.finish().ok()
    }
}

/// Decodes a JSON answer (an empty body as `null`). Any bytes a server may send end in a value
/// or a [`ClientError::Decode`], never a panic (fuzzed in `tests/decode_fuzz.rs`).
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, ClientError> {
    let text = if text.is_empty() { "null" } else { text };
    serde_json::from_str(text).map_err(|e| ClientError::Decode(format!("{e}: {}", clip(text))))
}

/// The `error` of a JSON error body, else the (clipped) text, else the status.
fn error_message(status: u16, text: &str) -> String {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(b) if !b.error.trim().is_empty() => clip(b.error.trim()),
        _ if !text.trim().is_empty() => clip(text.trim()),
        _ => format!("HTTP {status}"),
    }
}

/// An error and its causes (reqwest's own message alone does not say "connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// How a request that got no answer ended, and why, causes included. reqwest reports a failed
/// TLS handshake as a mere connect error: this says "TLS" and what to check.
fn send_failure(e: &reqwest::Error) -> Attempt {
    if let Some(cause) = tls_cause(e) {
        return Attempt::NotSent(format!("{}: {cause} ({})", crate::error::TLS_FAILED, tls_hint(cause)));
    }
    let text = with_causes(e);
    // An HTTPS server answers plain HTTP with a TLS alert, which hyper can only call a bad HTTP
    // version (its error type is not ours to inspect). The server never read a request.
    if e.url().is_some_and(|u| u.scheme() == "http") && text.contains("invalid HTTP version") {
        return Attempt::NotSent(
            "not an HTTP answer: the controller may serve HTTPS only (use https:// addresses and trust \
             its CA: PLUM_CA_FILE / --ca-file)"
                .to_string(),
        );
    }
    if e.is_connect() { Attempt::NotSent(text) } else { Attempt::Lost(text) }
}

/// The rustls error among `e`'s causes, if any. tokio-rustls wraps it in an `io::Error`, and
/// hyper-util that in another, whose `source()` skips the wrapped error: look inside those.
fn tls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cause = match c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    None
}

fn tls_hint(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature | C::UnknownRevocationStatus) => {
            "the controller's certificate is not signed by a CA in the CA file: set PLUM_CA_FILE / \
             --ca-file to the cluster's CA"
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the controller's certificate does not name this address: use an address it was issued for"
        }
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => "the controller's certificate is expired or not yet valid (or a clock is wrong)",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "is this address serving HTTPS?"
        }
        _ => "check the CA file (PLUM_CA_FILE / --ca-file) and the controller's certificate",
    }
}

/// At most 300 characters of an answer, for error messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    const TOKEN: &str = "plum_0123456789ab_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A loopback replica answering every request with `status` and `body`; it counts the
    /// requests and keeps the `Authorization` and `traceparent` each carried.
    struct Replica {
        url: String,
        hits: Arc<AtomicU32>,
        auth: Arc<Mutex<Vec<Option<String>>>>,
        traces: Arc<Mutex<Vec<Option<String>>>>,
    }

    impl Replica {
        fn hits(&self) -> u32 {
            self.hits.load(Ordering::SeqCst)
        }
    }

    async fn replica(status: StatusCode, body: &'static str) -> Replica {
        let (hits, auth, traces) =
            (Arc::new(AtomicU32::new(0)), Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (h, a, t) = (hits.clone(), auth.clone(), traces.clone());
        let app = Router::new().fallback(move |headers: HeaderMap| {
            let (h, a, t) = (h.clone(), a.clone(), t.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let value = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                a.lock().unwrap().push(value(AUTHORIZATION.as_str()));
                t.lock().unwrap().push(value(traceparent::HEADER));
                (status, body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Replica { url, hits, auth, traces }
    }

    #[tokio::test]
    async fn every_call_is_a_trace_of_its_own_kept_across_its_retries() {
        let busy = replica(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"no leader","retryable":true}"#).await;
        let ok = replica(StatusCode::OK, "{}").await;
        let c = transport(&[&busy, &ok], None);
        c.send_text(put()).await.unwrap();
        c.send_text(Request::get("/v1/nodes")).await.unwrap();
        let sent = |r: &Replica| -> Vec<TraceParent> {
            r.traces.lock().unwrap().iter().map(|t| TraceParent::parse(t.as_deref().unwrap()).unwrap()).collect()
        };
        let (at_busy, at_ok) = (sent(&busy), sent(&ok));
        assert_eq!(at_ok.len(), 2, "both calls end at the replica that answers");
        let first = at_busy.iter().chain(&at_ok[..1]).collect::<Vec<_>>();
        assert!(first.len() >= 2, "the write was tried at the busy replica first: {first:?}");
        assert!(first.iter().all(|t| t.trace_id == first[0].trace_id), "one trace across retries");
        let parents: std::collections::BTreeSet<_> = first.iter().map(|t| t.parent_id).collect();
        assert_eq!(parents.len(), first.len(), "each attempt a span of its own");
        assert_ne!(at_ok[1].trace_id, at_ok[0].trace_id, "the next call is a new trace");
    }

    fn transport(replicas: &[&Replica], token: Option<&str>) -> Controllers {
        let options =
            Options { deadline: Duration::from_secs(3), token: token.map(str::to_string), ..Options::default() };
        Controllers::with_options(replicas.iter().map(|r| r.url.clone()).collect(), options)
    }

    fn put() -> Request {
        Request::write(Method::PUT, "/v1/kv/a/key/b", Some(&serde_json::json!({"value": "x"})), true).unwrap()
    }

    #[tokio::test]
    async fn every_request_carries_the_token_and_none_without_one() {
        let r = replica(StatusCode::OK, "{}").await;
        let c = transport(&[&r], Some(&format!("  {TOKEN}\n")));
        assert!(c.has_token());
        c.send_text(Request::get("/v1/nodes")).await.unwrap();
        c.send_text(put()).await.unwrap();
        c.send_text(Request::get("/v1/discovery?service=s&watch=true&index=3")).await.unwrap();
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(*r.auth.lock().unwrap(), vec![Some(bearer.clone()); 3]);

        // Requests built on the shared client carry it only when authorized explicitly.
        c.authorize(c.http().get(format!("{}/x", r.url))).send().await.unwrap();
        c.http().get(format!("{}/x", r.url)).send().await.unwrap();
        assert_eq!(r.auth.lock().unwrap()[3..], [Some(bearer), None]);

        let anonymous = transport(&[&r], None);
        assert!(!anonymous.has_token());
        anonymous.send_text(Request::get("/v1/nodes")).await.unwrap();
        assert_eq!(r.auth.lock().unwrap().last(), Some(&None));
        let blank = transport(&[&r], Some("  "));
        assert!(!blank.has_token(), "a blank token is no token");
    }

    #[tokio::test]
    async fn unauthorized_and_forbidden_end_the_request_at_the_first_replica() {
        let denied = replica(StatusCode::UNAUTHORIZED, r#"{"error":"token revoked"}"#).await;
        let other = replica(StatusCode::OK, "{}").await;
        let c = transport(&[&denied, &other], Some(TOKEN));
        // More than the breaker's failure threshold: a failure would have opened it.
        for _ in 0..5 {
            match c.send_text(Request::get("/v1/nodes")).await {
                Err(ClientError::Unauthorized(m)) => assert_eq!(m, "token revoked"),
                other => panic!("expected Unauthorized, got {other:?}"),
            }
            assert!(matches!(c.send_text(put()).await, Err(ClientError::Unauthorized(_))));
        }
        assert_eq!((denied.hits(), other.hits()), (10, 0), "never retried elsewhere");
        assert!(!c.replicas[0].breaker.is_open(Instant::now()), "not a replica failure");

        let refused = replica(StatusCode::FORBIDDEN, r#"{"error":"role read may not write"}"#).await;
        let c = transport(&[&refused, &other], Some(TOKEN));
        for _ in 0..5 {
            match c.send_text(put()).await {
                Err(ClientError::Forbidden(m)) => assert_eq!(m, "role read may not write"),
                other => panic!("expected Forbidden, got {other:?}"),
            }
        }
        assert_eq!((refused.hits(), other.hits()), (5, 0));
        assert!(!c.replicas[0].breaker.is_open(Instant::now()));
    }

    #[tokio::test]
    async fn a_resent_write_whose_first_outcome_was_lost_never_ends_as_unreachable() {
        // The leader was lost with the write in flight, every time: it may have been applied.
        let lost = replica(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"leader lost","outcomeUnknown":true}"#).await;
        let c = transport(&[&lost], Some(TOKEN));
        match c.send_text(put()).await {
            Err(ClientError::OutcomeUnknown(m)) => assert!(m.contains("earlier attempt"), "{m}"),
            other => panic!("expected OutcomeUnknown, got {other:?}"),
        }
        assert!(lost.hits() > 1, "an idempotent write is resent");
        // Certainly not applied (no leader yet), every time: nothing was applied.
        let no_leader = replica(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"no leader","retryable":true}"#).await;
        let c = transport(&[&no_leader], Some(TOKEN));
        assert!(matches!(c.send_text(put()).await, Err(ClientError::Unreachable(_))));
        // Reads know nothing of outcomes.
        assert!(matches!(c.send_text(Request::get("/v1/nodes")).await, Err(ClientError::Unreachable(_))));
    }

    #[tokio::test]
    async fn redirects_in_circles_while_leadership_moves_are_retried_not_returned() {
        // Two replicas name each other as leader for the first 10 requests they see in all
        // (a leader handing over), then the second takes the write.
        let hits = Arc::new(AtomicU32::new(0));
        let listeners = [
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ];
        let urls: Vec<String> = listeners.iter().map(|l| format!("http://{}", l.local_addr().unwrap())).collect();
        for (i, listener) in listeners.into_iter().enumerate() {
            let (hits, other) = (hits.clone(), urls[1 - i].clone());
            let app = Router::new().fallback(move || {
                let (hits, other) = (hits.clone(), other.clone());
                async move {
                    if hits.fetch_add(1, Ordering::SeqCst) < 10 || i == 0 {
                        let headers = [(h::LEADER_ADDR, other)];
                        (StatusCode::TEMPORARY_REDIRECT, headers, r#"{"error":"not the leader","retryable":true}"#)
                            .into_response()
                    } else {
                        (StatusCode::OK, "{}").into_response()
                    }
                }
            });
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        let c = Controllers::with_options(urls, Options { deadline: Duration::from_secs(5), ..Options::default() });
        c.send_text(put()).await.expect("applied once leadership settled");
        assert!(hits.load(Ordering::SeqCst) > 10);
    }

    #[tokio::test]
    async fn a_leader_whose_breaker_is_open_is_not_followed_when_a_follower_names_it() {
        // The leader is black-holed (its breaker opened on earlier requests) while the follower
        // still names it: the follower is asked to pass the write on instead.
        let leader = replica(StatusCode::OK, "{}").await;
        let leader_url = leader.url.clone();
        let (hits, held) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (seen, passed) = (hits.clone(), held.clone());
        let app = Router::new().fallback(move |headers: HeaderMap| {
            let (seen, passed, leader_url) = (seen.clone(), passed.clone(), leader_url.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if headers.contains_key(h::REDIRECT) {
                    let headers = [(h::LEADER_ADDR, leader_url)];
                    (StatusCode::TEMPORARY_REDIRECT, headers, r#"{"error":"not the leader","retryable":true}"#)
                        .into_response()
                } else {
                    passed.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::OK, "{}").into_response()
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let follower_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let c = Controllers::with_options(
            vec![leader.url.clone(), follower_url],
            Options { deadline: Duration::from_secs(3), ..Options::default() },
        );
        let policy = c.options.breaker;
        for _ in 0..policy.failures {
            c.replicas[0].breaker.failure(&policy, Instant::now());
        }
        assert!(c.replicas[0].breaker.is_open(Instant::now()));
        c.send_text(put()).await.expect("the follower passes the write on");
        assert_eq!(leader.hits(), 0, "the open breaker's replica is not asked");
        assert_eq!((hits.load(Ordering::SeqCst), held.load(Ordering::SeqCst)), (2, 1), "redirected once, then held");
    }

    #[tokio::test]
    async fn a_request_limited_to_one_round_fails_at_once() {
        // Ports nobody listens on: every attempt is refused at once.
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let urls = vec![format!("http://{}", free()), format!("http://{}", free())];
        let c = Controllers::with_options(urls, Options { deadline: Duration::from_secs(5), ..Options::default() });
        let started = Instant::now();
        let e = c.send_text(Request::get("/v1/nodes").max_rounds(1)).await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable(_)), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "not held until the deadline: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_replica_at_its_limit_passes_the_request_to_another() {
        let busy = replica(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"at its limit","retryable":true}"#).await;
        let other = replica(StatusCode::OK, "{}").await;
        let c = transport(&[&busy, &other], None);
        c.send_text(put()).await.expect("the other replica takes the write");
        assert_eq!((busy.hits(), other.hits()), (1, 1));
    }

    #[tokio::test]
    async fn auth_errors_without_a_json_body_still_say_something() {
        let plain = replica(StatusCode::UNAUTHORIZED, "go away").await;
        let empty = replica(StatusCode::FORBIDDEN, "").await;
        let e = transport(&[&plain], None).send_text(Request::get("/")).await.unwrap_err();
        assert_eq!(e.to_string(), "unauthorized: go away");
        let e = transport(&[&empty], None).send_text(Request::get("/")).await.unwrap_err();
        assert_eq!(e.to_string(), "forbidden: HTTP 403");
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_sent_fails_every_request_without_showing_it() {
        let r = replica(StatusCode::OK, "{}").await;
        let c = transport(&[&r], Some("secret with spaces"));
        let e = c.send_text(Request::get("/v1/nodes")).await.unwrap_err();
        assert!(matches!(&e, ClientError::Config(m) if !m.contains("secret")), "{e:?}");
        assert_eq!(r.hits(), 0);

        // A new token replaces it; a bad one is refused and the one in force kept.
        c.set_token(Some("plum_new")).unwrap();
        assert!(c.set_token(Some("bad\ttoken")).is_err());
        c.send_text(Request::get("/v1/nodes")).await.unwrap();
        c.set_token(None).unwrap();
        c.send_text(Request::get("/v1/nodes")).await.unwrap();
        assert_eq!(*r.auth.lock().unwrap(), vec![Some("Bearer plum_new".to_string()), None]);
    }

    /// A self-signed CA certificate, PEM.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn the_ca_comes_from_the_options_then_plum_ca_file_then_the_env_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".plum/cluster")).unwrap();
        std::fs::write(dir.path().join(".plum/cluster/ca.pem"), ca_pem()).unwrap();
        std::fs::write(dir.path().join("mine.pem"), ca_pem()).unwrap();
        std::fs::write(dir.path().join("bad.pem"), "not a certificate\n").unwrap();
        let env_file = |ca: &str| {
            std::fs::write(dir.path().join(".plum/cluster.env"), format!("PLUM_CONTROLLERS=h:1\nPLUM_CA_FILE={ca}\n"))
                .unwrap()
        };
        let from_file = |tls| crate::config::resolve_from(None, dir.path(), tls);
        let with_ca = |ca: &str| EnvSettings { ca_file: Some(dir.path().join(ca)), ..EnvSettings::default() };

        // The env file's CA, relative to the directory holding `.plum/`.
        env_file(".plum/cluster/ca.pem");
        let (urls, options) = settle(&EnvSettings::default(), Options::default(), from_file).unwrap();
        assert!(options.tls.is_some());
        assert_eq!(urls, vec!["https://h:1"]);

        // A bad one there is a configuration error naming the file and where it was named.
        env_file("bad.pem");
        match settle(&EnvSettings::default(), Options::default(), from_file) {
            Err(ClientError::Config(m)) => {
                assert!(m.contains("PLUM_CA_FILE in") && m.contains("bad.pem") && m.contains("no certificate"), "{m}")
            }
            other => panic!("expected a configuration error, got {:?}", other.map(|(u, _)| u)),
        }
        env_file("missing.pem");
        let e = settle(&EnvSettings::default(), Options::default(), from_file).map(|(u, _)| u).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");

        // PLUM_CA_FILE wins over it, and the options' own settings over both.
        let (urls, options) = settle(&with_ca("mine.pem"), Options::default(), from_file).unwrap();
        assert!(options.tls.is_some());
        assert_eq!(urls, vec!["https://h:1"]);
        let e = settle(&with_ca("bad.pem"), Options::default(), from_file).map(|(u, _)| u).unwrap_err();
        assert!(matches!(&e, ClientError::Config(m) if m.starts_with("PLUM_CA_FILE: CA file")), "{e}");
        let mine = Options::default().with_ca_file(&dir.path().join("mine.pem")).unwrap();
        let (_, options) = settle(&with_ca("bad.pem"), mine, from_file).unwrap();
        assert!(options.tls.is_some());

        // Controllers given otherwise never take the env file's CA.
        let given = |tls| crate::config::resolve_from(Some("h:2"), dir.path(), tls);
        let (urls, options) = settle(&EnvSettings::default(), Options::default(), given).unwrap();
        assert_eq!((urls, options.tls.is_none()), (vec!["http://h:2".to_string()], true));
        let (urls, _) = settle(&with_ca("mine.pem"), Options::default(), given).unwrap();
        assert_eq!(urls, vec!["https://h:2"], "with a CA, bare addresses are HTTPS");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let options = Options::default().with_token(TOKEN);
        let text = format!("{options:?}");
        assert!(text.contains("token: Some(<redacted>)") && !text.contains("plum_"), "{text}");
        assert!(format!("{:?}", Options::default()).contains("token: None"));
        let client = crate::client::ClientOptions::default().with_token(TOKEN);
        assert!(!format!("{client:?}").contains("plum_"));
        let value = auth_header(Some(TOKEN)).unwrap().unwrap();
        assert!(!format!("{value:?}").contains("plum_"), "the header is marked sensitive");
    }
}
