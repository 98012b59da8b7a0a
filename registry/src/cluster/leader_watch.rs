//! Fast failover when the leader's process is gone.
//!
//! openraft's followers wait out the leader lease (the election maximum) after the last
//! heartbeat and then a random election timeout: 450-600 ms at the defaults before anyone
//! campaigns. A killed process (crash, OOM, kill -9: the common case) is faster to tell:
//! its port refuses connections at once. So every follower that has not heard from its leader
//! for 1.5 heartbeat intervals probes the leader's port. If the connection is refused, it asks
//! the other voters whether they see the same; when a majority of the voters (itself
//! included) confirm, the one with the longest log campaigns at once (`elect` without
//! pre-vote), and each confirming voter grants its vote despite the lease (it marks the vote
//! request as if it came with the leader's blessing, which is what the lease check spares).
//!
//! Why this cannot disrupt a live leader: a refused connection means no process listens on
//! the leader's port, so no leader is serving there; a leader that is merely slow, paused
//! or cut off still has its listener (connections are accepted or time out, never refused), and
//! the normal timers decide. A voter grants the lease bypass only if it itself confirmed the
//! refusal within the last `VOUCH_FOR` and still names that leader. Safety (one leader per
//! term, logs matching) never depended on the lease: votes and log comparison are unchanged.
//! Linearizable reads use ReadIndex, not the lease.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Cluster, LeaderInfo, unix_now_ms};

/// How long a confirmed refusal lets this voter vote despite the lease.
const VOUCH_FOR: Duration = Duration::from_secs(2);
/// How long a probe may take (on a live host a refusal takes microseconds).
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// How long to wait for the other voters' confirmations.
const ASK_TIMEOUT: Duration = Duration::from_millis(150);
/// At most one probe per this interval.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// `/internal/v1/leader-down`: "I cannot connect to leader `leader` (term `term`); can you?"
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderDownRequest {
    pub leader: u64,
    pub term: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderDownReply {
    /// This replica also finds the leader's port refusing connections.
    pub agrees: bool,
    pub last_log_index: Option<u64>,
}

/// When this replica saw each step of its last failover (unix ms; 0: not yet). Shown in
/// `/v1/cluster` (`failover`) so a benchmark can account for every millisecond.
#[derive(Debug, Default)]
pub struct Timeline {
    pub last_leader_contact_ms: AtomicU64,
    pub leader_down_confirmed_ms: AtomicU64,
    pub campaign_started_ms: AtomicU64,
    pub became_leader_ms: AtomicU64,
    pub first_commit_ms: AtomicU64,
    pub learned_leader_ms: AtomicU64,
    pub learned_leader_id: AtomicU64,
    pub pre_vote_granted_ms: AtomicU64,
    pub vote_granted_ms: AtomicU64,
    /// When this replica last learned of a leader (not of "no leader"): the end of a change.
    change_ended_ms: AtomicU64,
}

impl Timeline {
    /// Records that this replica learned its leader is `leader` (`None`: it knows of none, as
    /// when a vote request arrives; that is within a change, not its end).
    pub fn learned(&self, leader: Option<u64>, now: u64) {
        self.learned_leader_ms.store(now, Ordering::Relaxed);
        self.learned_leader_id.store(leader.unwrap_or(0), Ordering::Relaxed);
        if leader.is_some() {
            self.change_ended_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Records that a step of a leader change happened now. The first step after the last
    /// change ended (a leader was learned) starts a new change and clears the earlier one's
    /// steps, so the timeline never mixes two changes.
    pub fn note(&self, step: &AtomicU64) {
        let now = unix_now_ms();
        let learned = self.change_ended_ms.load(Ordering::Relaxed);
        let opening = [
            &self.leader_down_confirmed_ms,
            &self.campaign_started_ms,
            &self.pre_vote_granted_ms,
            &self.vote_granted_ms,
        ];
        if opening.iter().all(|s| s.load(Ordering::Relaxed) <= learned) {
            let later = [&self.became_leader_ms, &self.first_commit_ms];
            for s in opening.into_iter().chain(later).filter(|s| !std::ptr::eq(*s, step)) {
                s.store(0, Ordering::Relaxed);
            }
        }
        step.store(now, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> plum_types::FailoverTimeline {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        plum_types::FailoverTimeline {
            last_leader_contact_ms: get(&self.last_leader_contact_ms),
            leader_down_confirmed_ms: get(&self.leader_down_confirmed_ms),
            campaign_started_ms: get(&self.campaign_started_ms),
            became_leader_ms: get(&self.became_leader_ms),
            first_commit_ms: get(&self.first_commit_ms),
            learned_leader_ms: get(&self.learned_leader_ms),
            learned_leader_id: get(&self.learned_leader_id),
            pre_vote_granted_ms: get(&self.pre_vote_granted_ms),
            vote_granted_ms: get(&self.vote_granted_ms),
        }
    }
}

#[derive(Debug, Default)]
pub struct LeaderWatch {
    /// When an append (entries or heartbeat) last arrived from a leader.
    last_contact: Mutex<Option<Instant>>,
    /// The leader whose port this replica found refusing connections, and when.
    confirmed_dead: Mutex<Option<(u64, Instant)>>,
    last_probe: Mutex<Option<Instant>>,
    /// The dead leader this replica last campaigned to replace, and when: one campaign per
    /// election timeout, not one per tick.
    campaigned: Mutex<Option<(u64, Instant)>>,
    pub timeline: Timeline,
    /// The silences between appends from the leader.
    pub gaps: super::contact_gaps::ContactGaps,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether nothing listens at `addr`: the connection is refused (not: it timed out, or the
/// address does not resolve, which say nothing about the process).
async fn refuses_connections(addr: &str) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

impl LeaderWatch {
    /// An append arrived from `leader` in `term`.
    pub fn heard_from_leader(&self, leader: u64, term: u64) {
        self.gaps.record(leader, term);
        *lock(&self.last_contact) = Some(Instant::now());
        self.timeline.last_leader_contact_ms.store(unix_now_ms(), Ordering::Relaxed);
    }

    fn silent_for(&self) -> Option<Duration> {
        lock(&self.last_contact).map(|at| at.elapsed())
    }

    /// Whether this replica confirmed (recently) that `leader`'s port refuses connections.
    pub fn vouches_dead(&self, leader: u64) -> bool {
        lock(&self.confirmed_dead).is_some_and(|(id, at)| id == leader && at.elapsed() < VOUCH_FOR)
    }

    /// Probes `leader` if it has been silent for `silence`; records a refusal.
    async fn confirm_dead(&self, leader: &LeaderInfo, silence: Duration, rate_limited: bool) -> bool {
        if self.vouches_dead(leader.id) {
            return true;
        }
        if self.silent_for().is_none_or(|s| s < silence) {
            return false;
        }
        if rate_limited {
            let mut last = lock(&self.last_probe);
            if last.is_some_and(|at| at.elapsed() < PROBE_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        // The leader's own address, not its `--peer-via` path: a proxy in between accepts
        // connections for a process that is gone, so only the address itself can tell.
        if !refuses_connections(&leader.addr).await {
            return false;
        }
        *lock(&self.confirmed_dead) = Some((leader.id, Instant::now()));
        self.timeline.note(&self.timeline.leader_down_confirmed_ms);
        true
    }
}

/// What a voting follower knows of its leader.
struct FollowerView {
    leader: LeaderInfo,
    term: u64,
    /// Every voter: (id, address).
    voters: Vec<(u64, String)>,
    last_log_index: Option<u64>,
}

impl Cluster {
    /// Silence after which a follower probes its leader: one and a half heartbeat intervals.
    fn suspect_after(&self) -> Duration {
        Duration::from_millis(self.config.raft.heartbeat_ms * 3 / 2)
    }

    /// The follower's view, when this replica is a voting follower of a known other leader.
    fn follower_view(&self) -> Option<FollowerView> {
        let leader = self.leader().filter(|l| l.id != self.id)?;
        self.with_metrics(|m| {
            let membership = m.membership_config.membership();
            let voters: Vec<(u64, String)> = membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect();
            let me = voters.iter().any(|(id, _)| *id == self.id);
            me.then_some(FollowerView { leader, term: m.current_term, voters, last_log_index: m.last_log_index })
        })
    }

    /// `/internal/v1/leader-down`: agrees when this replica names the same leader in the same
    /// term, has not heard from it either, and finds its port refusing connections.
    pub async fn handle_leader_down(&self, req: LeaderDownRequest) -> LeaderDownReply {
        let Some(FollowerView { leader, term, last_log_index, .. }) = self.follower_view() else {
            return LeaderDownReply { agrees: false, last_log_index: None };
        };
        let same = leader.id == req.leader && term == req.term;
        let agrees = same
            && self.rejoin.votes_allowed()
            && self.leader_watch.confirm_dead(&leader, self.suspect_after(), false).await;
        LeaderDownReply { agrees, last_log_index }
    }

    /// A vote request may skip the lease check when this replica itself confirmed that the
    /// leader it follows is gone.
    pub fn lease_bypass_for_vote(&self) -> bool {
        self.config.raft.fast_failover
            && self.leader().is_some_and(|l| l.id != self.id && self.leader_watch.vouches_dead(l.id))
    }

    /// One round of the watch: probe, confirm with the others, campaign if this replica is
    /// the one to.
    async fn watch_leader_once(self: &Arc<Self>) {
        let Some(FollowerView { leader, term, voters, last_log_index: my_log }) = self.follower_view() else { return };
        if !self.rejoin.votes_allowed() || !self.leader_watch.confirm_dead(&leader, self.suspect_after(), true).await {
            return;
        }
        let others: Vec<(u64, String)> =
            voters.iter().filter(|(id, _)| *id != self.id && *id != leader.id).cloned().collect();
        let req = LeaderDownRequest { leader: leader.id, term };
        let asks = others.iter().map(|(id, addr)| {
            let req = req.clone();
            async move {
                let reply: Result<LeaderDownReply, _> = self.call_peer(addr, "leader-down", &req, ASK_TIMEOUT).await;
                (*id, reply.ok().filter(|r| r.agrees))
            }
        });
        let agreeing: Vec<(u64, Option<u64>)> = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|(id, reply)| reply.map(|r| (id, r.last_log_index)))
            .chain(std::iter::once((self.id, my_log)))
            .collect();
        let quorum = voters.len() / 2 + 1;
        if agreeing.len() < quorum {
            tracing::debug!(
                id = self.id,
                leader = leader.id,
                agreeing = agreeing.len(),
                quorum,
                "leader port refused, no quorum agrees yet"
            );
            return;
        }
        // The longest log campaigns (it can win every vote); ties go to the lowest id.
        let best = agreeing.iter().max_by_key(|(id, log)| (*log, std::cmp::Reverse(*id))).map(|(id, _)| *id);
        if best != Some(self.id) {
            return;
        }
        let again_after = Duration::from_millis(self.config.raft.election_max_ms);
        {
            let mut campaigned = lock(&self.leader_watch.campaigned);
            if campaigned.is_some_and(|(id, at)| id == leader.id && at.elapsed() < again_after) {
                return;
            }
            *campaigned = Some((leader.id, Instant::now()));
        }
        let t = &self.leader_watch.timeline;
        t.note(&t.campaign_started_ms);
        tracing::info!(
            id = self.id,
            dead_leader = leader.id,
            term,
            agreeing = agreeing.len(),
            "leader's port refuses connections and a quorum agrees: campaigning now"
        );
        if let Err(e) = self.raft.trigger().elect(false).await {
            tracing::warn!(id = self.id, error = %e, "could not start an election");
        }
    }

    /// Records when this replica became leader, its first commit as leader, and when it
    /// learned of a new leader.
    async fn record_leadership(self: Arc<Self>) {
        let mut watch = self.leadership_watch();
        let mut known = watch.current().leader;
        loop {
            watch.changed().await;
            let now_leader = watch.current().leader;
            if now_leader == known {
                continue;
            }
            known = now_leader;
            let t = &self.leader_watch.timeline;
            let now = unix_now_ms();
            t.learned(now_leader, now);
            if now_leader == Some(self.id) {
                t.became_leader_ms.store(now, Ordering::Relaxed);
                // The new leader's first entry (the blank one of its term) comes right after
                // what it had.
                let last = self.with_metrics(|m| m.last_log_index).unwrap_or(0);
                let mut applied = self.applied_watch();
                let this = self.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|i| *i > last)).await;
                    this.leader_watch.timeline.first_commit_ms.store(unix_now_ms(), Ordering::Relaxed);
                });
            }
        }
    }
}

/// The watch loop (every replica; only followers act) and the timeline recorder.
pub fn start(cluster: Arc<Cluster>) {
    tokio::spawn(cluster.clone().record_leadership());
    if !cluster.config.raft.fast_failover {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if cluster.with_metrics(|m| m.state == openraft::ServerState::Shutdown) {
                return;
            }
            cluster.watch_leader_once().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    #[test]
    fn a_new_change_clears_the_steps_of_the_last_one_and_keeps_its_own() {
        let t = Timeline::default();
        // A first change, complete: the vote granted, the leader learned a little later.
        t.note(&t.vote_granted_ms);
        t.became_leader_ms.store(get(&t.vote_granted_ms), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(3));
        t.learned(Some(2), unix_now_ms());
        std::thread::sleep(Duration::from_millis(3));

        // The next change opens with a pre-vote: the first change's steps go.
        t.note(&t.pre_vote_granted_ms);
        assert!(get(&t.pre_vote_granted_ms) > get(&t.learned_leader_ms));
        assert_eq!(get(&t.vote_granted_ms), 0, "an earlier change's vote is not shown as this one's");
        assert_eq!(get(&t.became_leader_ms), 0);

        // Later steps of the same change keep the earlier ones.
        let pre_vote = get(&t.pre_vote_granted_ms);
        t.note(&t.vote_granted_ms);
        t.note(&t.campaign_started_ms);
        assert_eq!(get(&t.pre_vote_granted_ms), pre_vote);
        assert!(get(&t.vote_granted_ms) >= pre_vote && get(&t.campaign_started_ms) >= pre_vote);
    }

    #[test]
    fn losing_sight_of_the_leader_mid_change_keeps_the_change_open() {
        let t = Timeline::default();
        t.learned(Some(1), unix_now_ms());
        std::thread::sleep(Duration::from_millis(3));
        t.note(&t.leader_down_confirmed_ms);
        let confirmed = get(&t.leader_down_confirmed_ms);
        std::thread::sleep(Duration::from_millis(3));
        // A candidate's vote request: this replica now knows of no leader.
        t.learned(None, unix_now_ms());
        std::thread::sleep(Duration::from_millis(3));
        t.note(&t.vote_granted_ms);
        assert_eq!(get(&t.leader_down_confirmed_ms), confirmed, "the confirmation belongs to this change");
        assert!(get(&t.vote_granted_ms) > confirmed);
    }
}
