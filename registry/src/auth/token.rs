//! Client tokens: `plum_<id>_<secret>`. The id is public (listings, revocation, logs); only a
//! SHA-256 of the secret is stored. The secret is 256 random bits, so a fast hash is enough:
//! there is nothing to guess a password from.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "plum_";
const ID_HEX: usize = 12;
const SECRET_HEX: usize = 64;

/// A freshly made token: shown to its creator once, then only its id and hash are kept.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub id: String,
    pub hash: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Lower-case hex, without a string per byte (the hash runs on every request).
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn random_hex(bytes: usize) -> String {
    to_hex(&(0..bytes).map(|_| rand::random::<u8>()).collect::<Vec<u8>>())
}

pub fn issue() -> IssuedToken {
    let id = random_hex(ID_HEX / 2);
    let secret = random_hex(SECRET_HEX / 2);
    IssuedToken { token: format!("{PREFIX}{id}_{secret}"), hash: hash(&secret), id }
}

/// Splits a token into id and secret; `None` for anything not shaped like one.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

pub fn hash(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether a secret's `hash` equals `stored`, in time that does not depend on where they differ.
pub fn hash_matches(hash: &str, stored: &str) -> bool {
    hash.as_bytes().ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_and_matches_only_its_own_hash() {
        let t = issue();
        let (id, secret) = parse(&t.token).expect("well formed");
        assert_eq!(id, t.id);
        assert!(hash_matches(&hash(secret), &t.hash));
        let other = issue();
        assert_ne!(t.id, other.id);
        assert!(!hash_matches(&hash(secret), &other.hash));
        assert!(!format!("{t:?}").contains(secret), "Debug never shows the secret");
    }

    #[test]
    fn anything_not_shaped_like_a_token_is_refused() {
        let t = issue().token;
        assert!(parse(&t[1..]).is_none());
        assert!(parse(&t[..t.len() - 1]).is_none());
        assert!(parse(&t.replace('_', "-")).is_none());
        assert!(parse(&format!("{t}0")).is_none());
        assert!(parse("plum__").is_none());
        assert!(parse("").is_none());
        assert!(parse(&t.to_uppercase().replace("PLUM", "plum")).is_some(), "hex of either case");
    }
}
