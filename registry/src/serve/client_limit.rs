//! At most so many open connections per client address: one client cannot take every socket
//! and task the replica has. Further connections get a `429` and are closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct ClientLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; gives its place back when dropped.
pub struct Admitted {
    limit: Arc<ClientLimit>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|p| p.into_inner());
        let last = open.get_mut(&self.ip).is_some_and(|n| {
            *n -= 1;
            *n == 0
        });
        if last {
            open.remove(&self.ip);
        }
    }
}

impl ClientLimit {
    pub fn new(max: usize) -> Arc<ClientLimit> {
        Arc::new(ClientLimit { max, open: Mutex::new(HashMap::new()) })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more connection from `ip`, or `None` when it has `max` open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Admitted { limit: self.clone(), ip })
    }

    /// The answer written to a connection over the limit, before closing it.
    pub fn refusal(&self, ip: IpAddr) -> Vec<u8> {
        let body = serde_json::to_vec(&plum_types::ErrorBody::new(format!(
            "too many connections from {ip}: at most {} at once",
            self.max
        )))
        .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
            body.len()
        );
        [head.into_bytes(), body].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_places_and_gets_them_back() {
        let limit = ClientLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let _second = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none(), "third from the same address");
        let _other = limit.admit(b).expect("another address is counted apart");
        drop(first);
        assert!(limit.admit(a).is_some(), "a closed connection gives its place back");
        let text = String::from_utf8(limit.refusal(a)).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
        assert!(text.ends_with('}'), "a JSON body: {text}");
    }
}
