//! Raft RPCs to peers over HTTP: pooled keep-alive connections, TCP_NODELAY, MessagePack
//! bodies, timeouts from openraft's per-RPC deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, PeerError};
use super::peer_auth::PeerAuth;
use super::types::TypeConfig;
use crate::config::ControllerConfig;

/// Builds the HTTP client used between replicas (Raft and forwarding alike).
/// With `tls`, peers are reached over `https://` and their certificates checked with it.
pub fn peer_http_client(tls: Option<rustls::ClientConfig>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = tls {
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder
        .no_proxy()
        .tcp_nodelay(true)
        // Below the header timeout a replica closes idle connections after (`serve`).
        .pool_idle_timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(32)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("HTTP client builds with static settings")
}

pub struct NetworkFactory {
    client: reqwest::Client,
    config: Arc<ControllerConfig>,
}

impl NetworkFactory {
    pub fn new(client: reqwest::Client, config: Arc<ControllerConfig>) -> Self {
        NetworkFactory { client, config }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            base: format!("{}/raft", self.config.url_of(self.config.dial(&node.addr))),
            client: self.client.clone(),
            auth: self.config.peer_auth.clone(),
        }
    }
}

pub struct PeerClient {
    target: u64,
    base: String,
    client: reqwest::Client,
    auth: Arc<PeerAuth>,
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Network(String),
    #[error("remote raft error: {0}")]
    Remote(String),
}

impl From<CallError> for RPCError<TypeConfig> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            // A remote fatal error means that peer's Raft stopped: treat it as unreachable.
            CallError::Remote(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            CallError::Network(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }
}

impl From<CallError> for StreamingError<TypeConfig> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(m) | CallError::Remote(m) => {
                StreamingError::Unreachable(Unreachable::from_string(m))
            }
            CallError::Network(m) => StreamingError::Network(NetworkError::from_string(m)),
        }
    }
}

impl PeerClient {
    async fn call<Req, Resp>(&self, route: &str, req: &Req, timeout: Duration) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let url = format!("{}/{route}", self.base);
        let result: Result<Resp, RaftError<TypeConfig>> =
            codec::post(&self.client, &self.auth, &url, req, timeout, None).await.map_err(|e| match e {
                PeerError::Connect(m) => CallError::Unreachable(m),
                PeerError::Other(m) => CallError::Network(m),
            })?;
        result.map_err(|e| CallError::Remote(e.to_string()))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call("append", &rpc, option.hard_ttl()).await?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call("vote", &rpc, option.hard_ttl()).await?)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call("pre-vote", &rpc, option.hard_ttl()).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tracing::info!(target_id = self.target, bytes = snapshot.snapshot.len(), "sending snapshot");
        let req = SnapshotTransfer { vote, meta: snapshot.meta, data: snapshot.snapshot };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.call("snapshot", &req, option.hard_ttl()) => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call("transfer-leader", &req, option.hard_ttl()).await?)
    }
}

/// Body of the snapshot RPC.
#[derive(Serialize, serde::Deserialize)]
#[serde(bound = "")]
pub struct SnapshotTransfer {
    pub vote: VoteOf<TypeConfig>,
    pub meta: openraft::type_config::alias::SnapshotMetaOf<TypeConfig>,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
