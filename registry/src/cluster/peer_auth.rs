//! Replica-to-replica authentication: every `/raft/*` and `/internal/*` request carries
//! `x-plum-peer-auth: v1 <unix ms> <nonce> <mac>`, where the MAC is HMAC-SHA256 under the
//! cluster secret over the version, time, nonce, method, path and body. A replica accepts a
//! request only with a valid MAC, a time within ±30 s of its own clock, and a nonce it has not
//! seen within that window (a captured request cannot be replayed).
//!
//! The secret file holds one secret per line (blank lines and `#` comments ignored): the first
//! signs, every one verifies. Rotation without downtime: add the new secret as a second line on
//! every replica, then move it first, then drop the old one; each replica re-reads the file
//! when it changes.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "x-plum-peer-auth";
const VERSION: &str = "v1";
/// How far a request's time may be from ours, either way.
pub const WINDOW_MS: u64 = 30_000;
/// Secrets shorter than this are refused (generated ones are 32 random bytes, base64).
const MIN_SECRET_LEN: usize = 16;
/// Nonces remembered at most (a flood of valid requests cannot grow memory without bound).
const MAX_NONCES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cluster secret file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cluster secret file {0} holds no secret of at least {MIN_SECRET_LEN} characters")]
    Empty(String),
}

/// Why a peer request was refused (answered 401, logged with the source address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no {HEADER} header")]
    Missing,
    #[error("malformed {HEADER} header")]
    Malformed,
    #[error("timestamp outside the ±{WINDOW_MS} ms window")]
    Stale,
    #[error("nonce already used (a replay)")]
    Replayed,
    #[error("bad MAC (wrong cluster secret)")]
    BadMac,
}

struct Keys {
    sign: Vec<u8>,
    accept: Vec<Vec<u8>>,
    modified: Option<SystemTime>,
}

/// Nonces seen within the window, oldest first for pruning.
#[derive(Default)]
struct Nonces {
    seen: HashSet<String>,
    order: VecDeque<(u64, String)>,
}

pub struct PeerAuth {
    file: Option<PathBuf>,
    keys: RwLock<Option<Keys>>,
    nonces: Mutex<Nonces>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth").field("file", &self.file).finish_non_exhaustive()
    }
}

fn read_keys(path: &Path) -> Result<Keys, SecretError> {
    let read = |source| SecretError::Read { path: path.display().to_string(), source };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).map_err(read)?;
    let accept: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| l.len() >= MIN_SECRET_LEN)
        .map(|l| l.as_bytes().to_vec())
        .collect();
    let sign = accept.first().cloned().ok_or_else(|| SecretError::Empty(path.display().to_string()))?;
    Ok(Keys { sign, accept, modified })
}

fn mac(key: &[u8], ts: u64, nonce: &str, method: &str, path: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in [VERSION, &ts.to_string(), nonce, method, path] {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    m.update(body);
    m
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl PeerAuth {
    /// Signs and verifies with the secrets in `path`.
    pub fn from_file(path: &Path) -> Result<PeerAuth, SecretError> {
        let keys = read_keys(path)?;
        Ok(PeerAuth { file: Some(path.to_path_buf()), keys: RwLock::new(Some(keys)), nonces: Mutex::default() })
    }

    /// No authentication (`--insecure-no-peer-auth`): signs nothing, accepts everything.
    pub fn disabled() -> PeerAuth {
        PeerAuth { file: None, keys: RwLock::new(None), nonces: Mutex::default() }
    }

    pub fn enabled(&self) -> bool {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Re-reads the secret file if it changed; keeps the current secrets if the new file is
    /// unreadable or empty (a half-written file must not lock the replicas out).
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.file else { return };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let current = self.keys.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|k| k.modified);
        if modified == current {
            return;
        }
        match read_keys(path) {
            Ok(keys) => {
                tracing::info!(path = %path.display(), secrets = keys.accept.len(), "cluster secret file reloaded");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(keys);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster secret file changed but cannot be used; keeping the old secrets")
            }
        }
    }

    /// The header value for a request, or `None` when authentication is off.
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> Option<String> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let key = &keys.as_ref()?.sign;
        let ts = unix_ms();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let tag = mac(key, ts, &nonce, method, path, body).finalize().into_bytes();
        let tag = base64::engine::general_purpose::STANDARD_NO_PAD.encode(tag);
        Some(format!("{VERSION} {ts} {nonce} {tag}"))
    }

    /// Checks a request's header against its method, path and body at time `now_ms`.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        header: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let Some(keys) = keys.as_ref() else { return Ok(()) };
        let header = header.ok_or(Refusal::Missing)?;
        let mut parts = header.split(' ');
        let (Some(VERSION), Some(ts), Some(nonce), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let ts: u64 = ts.parse().map_err(|_| Refusal::Malformed)?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::Malformed);
        }
        let tag = base64::engine::general_purpose::STANDARD_NO_PAD.decode(tag).map_err(|_| Refusal::Malformed)?;
        if ts.abs_diff(now_ms) > WINDOW_MS {
            return Err(Refusal::Stale);
        }
        // Constant-time comparison inside `verify_slice`.
        let valid = keys.accept.iter().any(|k| mac(k, ts, nonce, method, path, body).verify_slice(&tag).is_ok());
        if !valid {
            return Err(Refusal::BadMac);
        }
        self.remember(nonce, ts, now_ms)
    }

    /// Records a nonce; refuses one seen within the window.
    fn remember(&self, nonce: &str, ts: u64, now_ms: u64) -> Result<(), Refusal> {
        let mut n = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        // A nonce older than two windows cannot come back (its timestamp would be stale).
        while let Some((at, _)) = n.order.front() {
            if at.saturating_add(2 * WINDOW_MS) >= now_ms && n.order.len() < MAX_NONCES {
                break;
            }
            let (_, old) = n.order.pop_front().expect("front exists");
            n.seen.remove(&old);
        }
        if !n.seen.insert(nonce.to_string()) {
            return Err(Refusal::Replayed);
        }
        n.order.push_back((ts, nonce.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secrets: &str) -> (tempfile::TempDir, PeerAuth) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, secrets).unwrap();
        let a = PeerAuth::from_file(&path).unwrap();
        (dir, a)
    }

    #[test]
    fn a_signed_request_verifies_once_and_only_as_signed() {
        let (_d, a) = auth("0123456789abcdef0123\n");
        let h = a.sign("POST", "/raft/append", b"body").unwrap();
        let now = unix_ms();
        assert_eq!(a.verify("POST", "/raft/append", Some(&h), b"other", now), Err(Refusal::BadMac));
        assert_eq!(a.verify("POST", "/raft/vote", Some(&h), b"body", now), Err(Refusal::BadMac));
        assert_eq!(a.verify("POST", "/raft/append", Some(&h), b"body", now), Ok(()));
        assert_eq!(a.verify("POST", "/raft/append", Some(&h), b"body", now), Err(Refusal::Replayed));
        assert_eq!(a.verify("POST", "/raft/append", Some(&h), b"body", now + WINDOW_MS + 1), Err(Refusal::Stale));
        assert_eq!(a.verify("POST", "/raft/append", None, b"body", now), Err(Refusal::Missing));
        assert_eq!(a.verify("POST", "/raft/append", Some("v1 x y z"), b"body", now), Err(Refusal::Malformed));
    }

    #[test]
    fn another_cluster_secret_is_refused_and_rotation_accepts_both_for_a_while() {
        let (_d1, old) = auth("old-secret-0123456789\n");
        let (_d2, other) = auth("other-secret-0123456789\n");
        let (_d3, both) = auth("new-secret-0123456789\nold-secret-0123456789\n");
        let now = unix_ms();
        let h = other.sign("POST", "/internal/v1/propose", b"x").unwrap();
        assert_eq!(old.verify("POST", "/internal/v1/propose", Some(&h), b"x", now), Err(Refusal::BadMac));
        // Mid-rotation: a replica with both accepts the old signer and the new one.
        let from_old = old.sign("POST", "/p", b"x").unwrap();
        let from_new = both.sign("POST", "/p", b"x").unwrap();
        assert_eq!(both.verify("POST", "/p", Some(&from_old), b"x", now), Ok(()));
        assert_eq!(both.verify("POST", "/p", Some(&from_new), b"x", now), Ok(()));
        assert_eq!(old.verify("POST", "/p", Some(&from_new), b"x", now), Err(Refusal::BadMac), "new signs first");
    }

    #[test]
    fn the_secret_file_is_reloaded_when_it_changes_and_kept_when_the_new_one_is_unusable() {
        let (dir, a) = auth("first-secret-0123456789\n");
        let path = dir.path().join("secret");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "second-secret-0123456789\n").unwrap();
        a.reload_if_changed();
        let (_d, second) = auth("second-secret-0123456789\n");
        let h = second.sign("POST", "/p", b"").unwrap();
        assert_eq!(a.verify("POST", "/p", Some(&h), b"", unix_ms()), Ok(()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "short\n").unwrap();
        a.reload_if_changed();
        let h = second.sign("POST", "/p", b"").unwrap();
        assert_eq!(a.verify("POST", "/p", Some(&h), b"", unix_ms()), Ok(()), "kept the working secret");
        assert!(PeerAuth::from_file(&path).is_err(), "a file without a usable secret is refused at start");
    }

    #[test]
    fn disabled_signs_nothing_and_accepts_anything() {
        let a = PeerAuth::disabled();
        assert!(a.sign("POST", "/p", b"").is_none());
        assert_eq!(a.verify("POST", "/p", None, b"", 0), Ok(()));
    }
}
