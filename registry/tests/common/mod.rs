//! A single replica run in-process on a port the OS picks (authentication off unless asked),
//! for tests about one replica's behaviour. Dropping it stops the replica and removes its
//! data. Each test binary uses its own subset of it.
#![allow(dead_code)]

use std::net::SocketAddr;

use plum_registry::config::{Args, ControllerConfig};

pub struct Replica {
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), plum_registry::server::ServerError>>,
}

impl Replica {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the replica and waits (bounded) until it has, Raft's thread and RocksDB included.
    /// Call it last in every test: a replica merely dropped leaves Raft's thread running, and
    /// a test process that exits meanwhile can abort in RocksDB ("pthread lock: Invalid
    /// argument").
    pub async fn close(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), self.server).await;
    }

    /// Asks the replica to stop and waits (bounded) for `server::run` to return.
    pub async fn stop(self) -> Result<(), plum_registry::server::ServerError> {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(std::time::Duration::from_secs(15), self.server).await;
        ended.expect("stops when asked").expect("task")
    }
}

/// Starts a replica with `args` filled in where they name nothing of their own (id, address,
/// data directory, peers; no peer or client authentication).
pub async fn start(args: Args) -> Replica {
    start_with(Args { insecure_no_client_auth: true, ..args }).await
}

/// The same with client authentication on (the default a deployment gets).
pub async fn start_authenticated(args: Args) -> Replica {
    start_with(args).await
}

async fn start_with(args: Args) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let args = Args {
        id: Some(1),
        listen: Some(addr),
        data_dir: Some(dir.path().to_path_buf()),
        peers: Some(format!("1={addr}")),
        insecure_no_peer_auth: true,
        ..args
    };
    let config = ControllerConfig::from_args(args).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(plum_registry::server::run(config, listener, async {
        let _ = stopped.await;
    }));
    Replica { addr, _dir: dir, stop, server }
}
