//! Raft's own thread. The Raft core, its replication streams (heartbeats among them) and the
//! state machine run on a single-threaded runtime of their own, so client requests queued on
//! the API's runtime cannot delay a heartbeat past an election timeout: the OS schedules this
//! thread beside the API's workers whatever their queue holds. Log syncs already run on the
//! store's group-commit thread, so nothing here blocks for a disk flush.

use std::future::Future;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinError;

/// How long the runtime's remaining tasks get to finish when the replica stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct RaftThread {
    handle: Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RaftThread {
    /// Starts the thread `plum-raft-{id}` and its runtime.
    pub fn start(id: u64) -> std::io::Result<RaftThread> {
        let runtime = Builder::new_current_thread().enable_all().thread_name(format!("plum-raft-{id}")).build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(format!("plum-raft-{id}")).spawn(move || {
            // Tasks spawned on `handle` run while this thread waits here.
            let _ = runtime.block_on(stopped);
            runtime.shutdown_timeout(STOP_GRACE);
        })?;
        Ok(RaftThread { handle, stop: Mutex::new(Some(stop)), thread: Mutex::new(Some(thread)) })
    }

    /// Runs `work` on the Raft runtime: whatever it spawns (openraft's core and workers)
    /// stays there. The caller awaits the result from its own runtime.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work).await
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops the runtime (after Raft itself has shut down) and waits for the thread.
    pub async fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for RaftThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_and_what_it_spawns_run_on_the_raft_thread() {
        let raft_thread = RaftThread::start(7).expect("start");
        let names = raft_thread
            .run(async {
                let outer = std::thread::current().name().map(str::to_string);
                let inner = tokio::spawn(async { std::thread::current().name().map(str::to_string) }).await;
                (outer, inner.ok().flatten())
            })
            .await
            .expect("ran");
        assert_eq!(names, (Some("plum-raft-7".to_string()), Some("plum-raft-7".to_string())));
        raft_thread.stop().await;
        assert!(raft_thread.run(async {}).await.is_err(), "a stopped runtime runs nothing");
    }
}
