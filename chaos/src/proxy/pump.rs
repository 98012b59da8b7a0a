//! One direction of one proxied connection: a reader that stamps each chunk with its arrival
//! time, a bounded queue, and a writer that applies the link's current faults to every chunk.
//!
//! The writer re-reads the fault set whenever it waits (hold, latency, stall, rate) and wakes on
//! every change, so a new fault set reaches open connections at once, and a heal releases what
//! a black hole or a long latency was holding. Bytes are never dropped mid-stream: a TCP stream
//! cannot lose bytes, so a cut holds them, as a partition does until retransmission gets
//! through.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::faults::{Direction, Faults, Plan};

/// Largest chunk read at once: the unit of latency, stall and reset draws.
const CHUNK: usize = 16 * 1024;

/// Chunks queued between reader and writer. Bounds memory per direction (≤ 2 MiB) and, under a
/// latency L, throughput to about `QUEUE * CHUNK / L`.
const QUEUE: usize = 128;

/// How one direction ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The source sent EOF and the destination got our FIN, after every byte.
    Finished,
    /// The reset fault fired: the connection must be aborted.
    Reset,
    /// Reading or writing failed (usually a peer reset); passed on as a reset.
    Failed(io::Error),
    /// The link was removed while this direction waited.
    LinkGone,
}

struct Chunk {
    bytes: Vec<u8>,
    arrived: Instant,
    /// This chunk's jitter draw in [-1, 1], scaled by whatever jitter is current when it is sent.
    jitter_unit: f64,
}

/// What the reader hands the writer, in stream order: a failure or EOF waits behind the data
/// read before it.
enum Item {
    Data(Chunk),
    /// The source's EOF, read at this instant.
    Eof(Instant),
    /// The source failed (usually reset by its peer) at this instant.
    Failed(io::Error, Instant),
}

/// Copies `src` to `dst` under the link's faults until EOF, a reset or an error.
pub(crate) async fn pump<R, W>(src: R, dst: W, faults: watch::Receiver<Arc<Faults>>, dir: Direction) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    // The writer decides how the direction ends; the reader just stops once its last item is
    // queued (or nobody listens any more), so it must not end the select.
    let reading = async {
        read_side(src, tx).await;
        std::future::pending::<End>().await
    };
    let writer = Writer { dst, faults, dir, next_send: Instant::now() };
    tokio::select! {
        end = writer.run(rx) => end,
        never = reading => never,
    }
}

async fn read_side<R: AsyncRead + Unpin>(mut src: R, tx: mpsc::Sender<Item>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let item = match src.read(&mut buf).await {
            Ok(0) => Item::Eof(Instant::now()),
            Ok(n) => Item::Data(Chunk {
                bytes: buf[..n].to_vec(),
                arrived: Instant::now(),
                jitter_unit: rand::random_range(-1.0..=1.0),
            }),
            Err(e) => Item::Failed(e, Instant::now()),
        };
        let last = !matches!(item, Item::Data(_));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

struct Writer<W> {
    dst: W,
    faults: watch::Receiver<Arc<Faults>>,
    dir: Direction,
    /// Earliest time the rate limit lets the next piece out.
    next_send: Instant,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn run(mut self, mut rx: mpsc::Receiver<Item>) -> End {
        while let Some(item) = rx.recv().await {
            let chunk = match item {
                Item::Data(chunk) => chunk,
                Item::Eof(arrived) => {
                    // EOF is part of the stream: it waits behind a hold or latency like data.
                    if let Err(end) = self.wait_ready(arrived, 0.0).await {
                        return end;
                    }
                    return match self.dst.shutdown().await {
                        Ok(()) => End::Finished,
                        Err(e) => End::Failed(e),
                    };
                }
                Item::Failed(e, arrived) => {
                    if let Err(end) = self.wait_ready(arrived, 0.0).await {
                        return end;
                    }
                    return End::Failed(e);
                }
            };
            if let Err(end) = self.deliver(&chunk).await {
                return end;
            }
        }
        // The reader always queues a last item before it stops, so this is not reached; if it
        // were, ending quietly is right.
        End::Finished
    }

    /// Writes one chunk: hold and latency per piece, one stall draw and one reset draw per chunk,
    /// pieces paced by the rate limit.
    async fn deliver(&mut self, chunk: &Chunk) -> Result<(), End> {
        let mut rest: &[u8] = &chunk.bytes;
        let mut first = true;
        while !rest.is_empty() {
            let mut plan = self.wait_ready(chunk.arrived, chunk.jitter_unit).await?;
            if first {
                first = false;
                if plan.stall_prob > 0.0 && rand::random_bool(plan.stall_prob) {
                    tracing::trace!(dir = %self.dir, stall_ms = plan.stall.as_millis() as u64, "stall");
                    // A fault change (a heal above all) ends the stall early.
                    self.sleep_or_change(Instant::now() + plan.stall).await?;
                    plan = self.wait_ready(chunk.arrived, chunk.jitter_unit).await?;
                }
                if plan.reset_prob > 0.0 && rand::random_bool(plan.reset_prob) {
                    return Err(End::Reset);
                }
            }
            let n = plan.piece_len(rest.len());
            if plan.bytes_per_sec.is_some() {
                sleep_until(self.next_send).await;
            }
            self.dst.write_all(&rest[..n]).await.map_err(End::Failed)?;
            // Idle time earns no credit: the pace restarts from now, so no burst after a pause.
            self.next_send = self.next_send.max(Instant::now()) + plan.pace(n);
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Waits until this direction is not held and a chunk that arrived at `arrived` has served
    /// its latency, re-reading the faults on every change; returns the plan to write under.
    async fn wait_ready(&mut self, arrived: Instant, jitter_unit: f64) -> Result<Plan, End> {
        loop {
            let plan = self.faults.borrow_and_update().plan(self.dir);
            if plan.hold {
                self.faults.changed().await.map_err(|_| End::LinkGone)?;
                continue;
            }
            let due = arrived + plan.delay(jitter_unit);
            if due <= Instant::now() {
                return Ok(plan);
            }
            self.sleep_or_change(due).await?;
        }
    }

    /// Sleeps until `deadline` or until the fault set changes, whichever is first.
    async fn sleep_or_change(&mut self, deadline: Instant) -> Result<(), End> {
        tokio::select! {
            () = sleep_until(deadline) => Ok(()),
            changed = self.faults.changed() => changed.map_err(|_| End::LinkGone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::duplex;

    fn faults(f: Faults) -> (watch::Sender<Arc<Faults>>, watch::Receiver<Arc<Faults>>) {
        watch::channel(Arc::new(f))
    }

    #[tokio::test]
    async fn copies_bytes_in_order_and_passes_eof_on() {
        let (mut client, proxy_in) = duplex(64 * 1024);
        let (proxy_out, mut server) = duplex(64 * 1024);
        let (_tx, rx) = faults(Faults::none());
        let task = tokio::spawn(pump(proxy_in, proxy_out, rx, Direction::Upstream));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), server.read_to_end(&mut got)).await.unwrap().unwrap();
        writer.await.unwrap();
        assert_eq!(got, data);
        assert!(matches!(task.await.unwrap(), End::Finished));
    }

    // Real time, generous bounds: tokio's paused clock needs its `test-util` feature, which
    // would rebuild tokio's dependents for every test build of the workspace.

    #[tokio::test]
    async fn hold_keeps_bytes_until_the_fault_changes() {
        let (mut client, proxy_in) = duplex(1024);
        let (proxy_out, mut server) = duplex(1024);
        let (tx, rx) = faults(Faults { cut: Some(Direction::Upstream), ..Faults::none() });
        tokio::spawn(pump(proxy_in, proxy_out, rx, Direction::Upstream));
        client.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 4];
        assert!(tokio::time::timeout(Duration::from_millis(300), server.read_exact(&mut buf)).await.is_err());
        tx.send_replace(Arc::new(Faults::none()));
        tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"held");
    }

    #[tokio::test]
    async fn latency_delays_each_chunk_and_a_heal_releases_it() {
        let (mut client, proxy_in) = duplex(1024);
        let (proxy_out, mut server) = duplex(1024);
        let (tx, rx) = faults(Faults { latency_ms: Some(200), ..Faults::none() });
        tokio::spawn(pump(proxy_in, proxy_out, rx, Direction::Upstream));
        let start = Instant::now();
        client.write_all(b"a").await.unwrap();
        let mut buf = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut buf)).await.unwrap().unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(1_200), "{took:?}");

        tx.send_replace(Arc::new(Faults { latency_ms: Some(3_600_000), ..Faults::none() }));
        client.write_all(b"b").await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), server.read_exact(&mut buf)).await.is_err());
        tx.send_replace(Arc::new(Faults::none()));
        tokio::time::timeout(Duration::from_secs(1), server.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"b");
    }

    #[tokio::test]
    async fn rate_limit_paces_the_writes() {
        let (mut client, proxy_in) = duplex(64 * 1024);
        let (proxy_out, mut server) = duplex(64 * 1024);
        // 10 kB/s in 500-byte pieces: 5 kB take about 450 ms (the first piece goes at once).
        let (_tx, rx) = faults(Faults { bandwidth_kbps: Some(10), ..Faults::none() });
        tokio::spawn(pump(proxy_in, proxy_out, rx, Direction::Upstream));
        let start = Instant::now();
        client.write_all(&[7u8; 5_000]).await.unwrap();
        let mut buf = vec![0u8; 5_000];
        tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut buf)).await.unwrap().unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400) && took < Duration::from_millis(2_000), "{took:?}");
    }

    #[tokio::test]
    async fn certain_reset_ends_the_direction_with_reset() {
        let (mut client, proxy_in) = duplex(1024);
        let (proxy_out, _server) = duplex(1024);
        let (_tx, rx) = faults(Faults { reset_prob: Some(1.0), ..Faults::none() });
        let task = tokio::spawn(pump(proxy_in, proxy_out, rx, Direction::Upstream));
        client.write_all(b"x").await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert!(matches!(end, End::Reset), "{end:?}");
    }

    #[tokio::test]
    async fn removing_the_link_ends_a_held_direction() {
        let (mut client, proxy_in) = duplex(1024);
        let (proxy_out, _server) = duplex(1024);
        let (tx, rx) = faults(Faults { blackhole: true, ..Faults::none() });
        let task = tokio::spawn(pump(proxy_in, proxy_out, rx, Direction::Downstream));
        client.write_all(b"x").await.unwrap();
        drop(tx);
        let end = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert!(matches!(end, End::LinkGone), "{end:?}");
    }
}
