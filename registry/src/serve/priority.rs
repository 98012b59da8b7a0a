//! Connections that must not queue behind client load. A peer's Raft connection carries only
//! Raft RPCs (its client is used for nothing else), so its first request line tells what the
//! whole connection is for. Such a connection is moved to Raft's own runtime
//! (`cluster/raft_thread.rs`) before hyper reads from it: a heartbeat then waits for Raft's
//! thread alone, however many client requests this runtime holds.
//!
//! Over TLS the first request is encrypted, so those connections stay on the API's runtime.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;

#[derive(Debug, Clone)]
pub struct Priority {
    /// The start of the first request line of a connection to move, e.g. `POST /raft/`.
    pub prefix: &'static [u8],
    pub runtime: Handle,
}

/// How a connection's first bytes classify it.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstBytes {
    Priority,
    Ordinary,
    /// Nothing arrived in time, or the connection failed: hyper would close it too.
    Closed,
}

impl Priority {
    /// Looks at (without consuming) the first bytes of `stream`. Only one look: a request line
    /// split before the prefix's length (never seen from a real client) is served as ordinary,
    /// so a slow sender cannot make this spin.
    pub async fn classify(&self, stream: &TcpStream, wait: Duration) -> FirstBytes {
        let mut buf = [0u8; 32];
        let want = self.prefix.len().min(buf.len());
        match tokio::time::timeout(wait, stream.peek(&mut buf[..want])).await {
            Ok(Ok(n)) if n == want && buf[..n] == self.prefix[..want] => FirstBytes::Priority,
            Ok(Ok(n)) if n > 0 => FirstBytes::Ordinary,
            _ => FirstBytes::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn classify_after_sending(bytes: &'static [u8]) -> FirstBytes {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            if !bytes.is_empty() {
                s.write_all(bytes).await.expect("write");
            }
            // Keep the connection open while the server looks.
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let priority = Priority { prefix: b"POST /raft/", runtime: Handle::current() };
        let class = priority.classify(&stream, Duration::from_millis(200)).await;
        client.abort();
        class
    }

    #[tokio::test]
    async fn raft_requests_are_told_from_client_requests() {
        assert_eq!(classify_after_sending(b"POST /raft/append HTTP/1.1\r\n").await, FirstBytes::Priority);
        assert_eq!(classify_after_sending(b"POST /v1/nodes/heartbeat HTTP/1.1\r\n").await, FirstBytes::Ordinary);
        assert_eq!(classify_after_sending(b"GET /raft/append HTTP/1.1\r\n").await, FirstBytes::Ordinary);
        assert_eq!(classify_after_sending(b"POST /ra").await, FirstBytes::Ordinary, "short: served as ordinary");
        assert_eq!(classify_after_sending(b"").await, FirstBytes::Closed, "silent: closed after the wait");
    }
}
