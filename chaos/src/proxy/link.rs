//! One link at run time: the accept loop on its listener, and per connection the dial to the
//! upstream and the two pumps, ended together by a reset.
//!
//! Every connection task lives in the accept loop's `JoinSet`, so aborting the accept task (link
//! removed, proxy dropped) closes the listener and every connection of the link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::faults::{Direction, Faults};
use super::pump::{End, pump};

/// A dial to the upstream that takes longer than this fails like a refused one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connection counters of one link, shared by its accept loop and the control API.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    active: AtomicU64,
    total: AtomicU64,
    refused: AtomicU64,
    resets: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Connections {
        Connections {
            active: self.active.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
        }
    }
}

/// Connection counts as the control API shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Open now (including those waiting behind a black hole).
    pub active: u64,
    /// Accepted since the link was created (refused ones not included).
    pub total: u64,
    /// Closed at once by the `refuse` fault.
    pub refused: u64,
    /// Aborted by the `reset_prob` fault.
    pub resets: u64,
}

/// Counts a connection as active for as long as it lives.
struct ActiveGuard(Arc<Counters>);

impl ActiveGuard {
    fn new(counters: Arc<Counters>) -> Self {
        counters.active.fetch_add(1, Ordering::Relaxed);
        counters.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(counters)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an accept loop needs besides its listener.
pub(crate) struct LinkContext {
    pub(crate) name: Arc<str>,
    pub(crate) upstream: SocketAddr,
    pub(crate) faults: watch::Receiver<Arc<Faults>>,
    pub(crate) counters: Arc<Counters>,
}

/// Accepts until aborted; each connection runs in its own task, owned by this one.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: LinkContext) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    if ctx.faults.borrow().refuse {
                        ctx.counters.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(link = %ctx.name, %peer, "refused");
                        abort(&client);
                        continue;
                    }
                    let span = tracing::debug_span!("conn", link = %ctx.name, %peer);
                    let guard = ActiveGuard::new(ctx.counters.clone());
                    conns.spawn(
                        serve(client, ctx.upstream, ctx.faults.clone(), ctx.counters.clone(), guard).instrument(span),
                    );
                }
                Err(e) => {
                    tracing::warn!(link = %ctx.name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reaps finished connections so the set does not grow; disabled while it is empty.
            Some(_) = conns.join_next() => {}
        }
    }
}

/// One connection, from the dial to the last byte.
async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Arc<Faults>>,
    counters: Arc<Counters>,
    _active: ActiveGuard,
) {
    // Small writes must not wait for Nagle: the faults decide the delays here.
    let _ = client.set_nodelay(true);
    // The upstream sees no handshake behind a black hole or a cut, as behind a real partition.
    if faults.wait_for(|f| !f.holds_handshake()).await.is_err() {
        return;
    }
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => {
            tracing::info!(%upstream, error = %e, "upstream dial failed; resetting the client");
            abort(&client);
            return;
        }
        Err(_) => {
            tracing::info!(%upstream, "upstream dial timed out; resetting the client");
            abort(&client);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    tracing::debug!(%upstream, "connected");
    match relay(client, server, faults).await {
        Ok(()) => tracing::debug!("closed"),
        Err(Aborted::Fault) => {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            tracing::info!("reset by fault");
        }
        Err(Aborted::Failed(e)) => tracing::debug!(error = %e, "aborted after an error"),
        Err(Aborted::LinkGone) => tracing::debug!("link removed"),
    }
}

/// Why a connection was aborted rather than closed.
enum Aborted {
    Fault,
    Failed(std::io::Error),
    LinkGone,
}

/// Runs both directions. Each ends on its own at EOF (the FIN is passed on, so half-closed
/// connections work); a reset or an error in either aborts both sockets with RST.
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    faults: watch::Receiver<Arc<Faults>>,
) -> Result<(), Aborted> {
    let result = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(client_read, server_write, faults.clone(), Direction::Upstream);
        let down = pump(server_read, client_write, faults, Direction::Downstream);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let end = tokio::select! {
                end = &mut up, if !up_done => { up_done = true; end }
                end = &mut down, if !down_done => { down_done = true; end }
            };
            match end {
                End::Finished if up_done && down_done => break Ok(()),
                End::Finished => {}
                End::Reset => break Err(Aborted::Fault),
                End::Failed(e) => break Err(Aborted::Failed(e)),
                End::LinkGone => break Err(Aborted::LinkGone),
            }
        }
    };
    if result.is_err() {
        abort(&client);
        abort(&server);
    }
    result
}

/// Makes the coming close send RST instead of FIN. `set_zero_linger` cannot block here: the
/// sockets are non-blocking and, with linger 0, close discards unsent data at once.
fn abort(stream: &TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "SO_LINGER 0 failed; the close will be a FIN");
    }
}
