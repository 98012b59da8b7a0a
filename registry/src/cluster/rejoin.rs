//! A replica that lost its data does not vote until it has caught up (DESIGN.md, invariant 8).
//!
//! Raft's safety assumes that what a voter acknowledged stays on its disk. A replica whose data
//! directory was wiped comes back empty; if it granted votes at once, it could help elect a
//! replica that misses writes it had acknowledged before (the "lagging follower + wiped
//! follower + dead leader" sequence loses committed writes). So a replica that starts with an
//! empty store begins with its vote *withheld*:
//!
//! - **undecided** while it cannot tell a fresh cluster from a lost disk. It becomes **open**
//!   when every peer answers and none holds more than the entries a fresh cluster writes by
//!   itself: nothing has been acknowledged anywhere, so there is nothing to lose.
//! - **catching up** once a peer shows a cluster with history. It stays so until it has applied
//!   (a) the highest commit index its peers reported at start, and (b) a commit index that a
//!   leader announced *in its own term*. (b) is what makes it safe whoever answered at start:
//!   a leader elected without this replica's vote holds every committed entry (any two
//!   majorities that exclude this replica intersect in an intact one), and once it has
//!   committed in its own term, everything before that index is committed too. An entry
//!   acknowledged before the wipe therefore lies at or below that index.
//!
//! While withheld, the replica answers vote, pre-vote and leader-transfer requests with an
//! error (the candidate counts no vote) and does not campaign. Learners never vote anyway, so an
//! operator who re-adds the replica as a learner loses nothing: it catches up the same way.
//! A marker file in the data directory keeps the vote withheld across a restart in the middle
//! of catching up (the store is no longer empty then, but still incomplete).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openraft::ServerState;
use openraft::type_config::async_runtime::watch::WatchReceiver;
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::types::RaftMetrics;

const MARKER: &str = "REJOINING";

/// Where the replica stands; reported in `/v1/cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "state")]
pub enum VoteStanding {
    /// Votes and campaigns normally.
    Open,
    /// Empty store, and no peer has shown yet whether a cluster with history exists.
    Undecided,
    /// Lost its data: withholds its vote until applied >= max(floor, leader_commit).
    CatchingUp {
        /// Highest commit index the peers reported when this replica found its data lost.
        floor: u64,
        /// A commit index announced by a leader in its own term, once seen.
        leader_commit: Option<u64>,
    },
}

impl VoteStanding {
    pub fn open() -> VoteStanding {
        VoteStanding::Open
    }
}

pub struct RejoinGuard {
    marker: PathBuf,
    /// Mirrors `standing == Open`, read on every vote request without locking.
    open: AtomicBool,
    standing: Mutex<VoteStanding>,
}

impl RejoinGuard {
    /// Decides the starting standing. `store_empty`: the store holds no vote and no log.
    pub fn at_start(data_dir: &Path, store_empty: bool) -> std::io::Result<RejoinGuard> {
        let marker = data_dir.join(MARKER);
        let standing = if store_empty {
            write_marker(&marker)?;
            VoteStanding::Undecided
        } else if marker.exists() {
            // Restarted while catching up: the store is incomplete. The leader-commit rule
            // alone is enough to be safe, so the floor restarts at zero.
            VoteStanding::CatchingUp { floor: 0, leader_commit: None }
        } else {
            VoteStanding::Open
        };
        Ok(RejoinGuard {
            marker,
            open: AtomicBool::new(standing == VoteStanding::Open),
            standing: Mutex::new(standing),
        })
    }

    pub fn votes_allowed(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub fn standing(&self) -> VoteStanding {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VoteStanding> {
        self.standing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every peer answered and none has history: a fresh cluster is forming.
    pub fn fresh_cluster(&self, id: u64) {
        let mut s = self.lock();
        if *s == VoteStanding::Undecided {
            self.open_up(&mut s, id, "fresh cluster: every peer is empty");
        }
    }

    /// A peer shows a cluster with history that lists this replica: its data was lost.
    pub fn data_lost(&self, id: u64, floor: u64) {
        let mut s = self.lock();
        match *s {
            VoteStanding::Undecided => {
                tracing::error!(
                    id,
                    floor,
                    "this replica's data was lost: it withholds its vote and does not campaign until it has \
                     caught up with the cluster"
                );
                *s = VoteStanding::CatchingUp { floor, leader_commit: None };
            }
            VoteStanding::CatchingUp { floor: old, leader_commit } if floor > old => {
                *s = VoteStanding::CatchingUp { floor, leader_commit };
            }
            _ => {}
        }
    }

    /// Moves towards open as the replica learns and applies. Returns true once open.
    pub fn observe(&self, id: u64, m: &RaftMetrics) -> bool {
        let mut s = self.lock();
        let VoteStanding::CatchingUp { floor, leader_commit } = *s else {
            return *s == VoteStanding::Open;
        };
        let leader_commit = leader_commit.or_else(|| own_term_commit(m));
        *s = VoteStanding::CatchingUp { floor, leader_commit };
        let applied = m.last_applied.as_ref().map(|l| l.index).unwrap_or(0);
        match leader_commit {
            Some(target) if applied >= target.max(floor) => {
                self.open_up(&mut s, id, "caught up with the cluster");
                true
            }
            _ => false,
        }
    }

    fn open_up(&self, s: &mut VoteStanding, id: u64, why: &str) {
        if let Err(e) = std::fs::remove_file(&self.marker)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            // Keeping the vote withheld is the safe side: stay closed, try again next time.
            tracing::error!(id, error = %e, marker = %self.marker.display(), "cannot remove the rejoin marker");
            return;
        }
        *s = VoteStanding::Open;
        self.open.store(true, Ordering::Release);
        tracing::info!(id, why, "vote and elections enabled");
    }
}

/// The cluster-committed index a follower learned from a leader that has committed in its own
/// term, if that is what the metrics show.
fn own_term_commit(m: &RaftMetrics) -> Option<u64> {
    if !matches!(m.state, ServerState::Follower | ServerState::Learner) || m.current_leader.is_none() {
        return None;
    }
    let c = m.cluster_committed.as_ref()?;
    (c.leader_id.term == m.current_term && m.vote.leader_id.term == m.current_term).then_some(c.index)
}

fn write_marker(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(b"this replica started empty; it votes once it has caught up with the cluster\n")?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Opens the guard once caught up, and turns elections on then (Raft starts with them off
/// while the vote is withheld).
pub fn spawn_watch(cluster: Arc<Cluster>) {
    if cluster.rejoin.votes_allowed() {
        return;
    }
    tokio::spawn(async move {
        let mut metrics = cluster.raft.metrics();
        loop {
            let open = {
                let m = metrics.borrow_watched();
                cluster.rejoin.observe(cluster.id, &m)
            };
            if open {
                cluster.raft.runtime_config().elect(true);
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_store_withholds_its_vote_until_decided() {
        let dir = tempfile::tempdir().unwrap();
        let g = RejoinGuard::at_start(dir.path(), true).unwrap();
        assert!(!g.votes_allowed());
        assert!(dir.path().join(MARKER).exists());
        g.fresh_cluster(1);
        assert!(g.votes_allowed());
        assert!(!dir.path().join(MARKER).exists());
    }

    #[test]
    fn lost_data_is_not_mistaken_for_a_fresh_cluster_later() {
        let dir = tempfile::tempdir().unwrap();
        let g = RejoinGuard::at_start(dir.path(), true).unwrap();
        g.data_lost(3, 40);
        g.fresh_cluster(3);
        assert!(!g.votes_allowed());
        assert_eq!(g.standing(), VoteStanding::CatchingUp { floor: 40, leader_commit: None });
    }

    #[test]
    fn a_restart_while_catching_up_keeps_the_vote_withheld() {
        let dir = tempfile::tempdir().unwrap();
        drop(RejoinGuard::at_start(dir.path(), true).unwrap());
        let g = RejoinGuard::at_start(dir.path(), false).unwrap();
        assert!(!g.votes_allowed());
        assert_eq!(g.standing(), VoteStanding::CatchingUp { floor: 0, leader_commit: None });
    }

    fn follower_metrics(term: u64, leader_commit: (u64, u64), applied: u64) -> RaftMetrics {
        use openraft::vote::RaftLeaderId;
        use openraft::vote::leader_id_adv::LeaderId;
        let log_id = |term, index| openraft::LogId::new(LeaderId::new(term, 1), index);
        let mut m = RaftMetrics::new_initial(3);
        m.state = ServerState::Follower;
        m.current_term = term;
        m.current_leader = Some(1);
        m.vote = openraft::Vote::new_committed(term, 1);
        m.cluster_committed = Some(log_id(leader_commit.0, leader_commit.1));
        m.last_applied = Some(log_id(leader_commit.0, applied));
        m
    }

    #[test]
    fn catching_up_needs_a_commit_the_leader_made_in_its_own_term() {
        let dir = tempfile::tempdir().unwrap();
        let g = RejoinGuard::at_start(dir.path(), true).unwrap();
        g.data_lost(3, 10);
        // The new leader has not committed in its term 5 yet: what it reports proves nothing.
        assert!(!g.observe(3, &follower_metrics(5, (4, 50), 50)));
        assert_eq!(g.standing(), VoteStanding::CatchingUp { floor: 10, leader_commit: None });
        // It has now (index 60, term 5); this replica has applied only 55.
        assert!(!g.observe(3, &follower_metrics(5, (5, 60), 55)));
        assert_eq!(g.standing(), VoteStanding::CatchingUp { floor: 10, leader_commit: Some(60) });
        // The target stays where it was first seen, though the cluster moves on.
        assert!(g.observe(3, &follower_metrics(5, (5, 90), 60)));
        assert!(g.votes_allowed());
        assert!(!dir.path().join(MARKER).exists());
    }

    #[test]
    fn the_floor_learned_from_peers_counts_too() {
        let dir = tempfile::tempdir().unwrap();
        let g = RejoinGuard::at_start(dir.path(), true).unwrap();
        g.data_lost(3, 100);
        assert!(!g.observe(3, &follower_metrics(5, (5, 60), 60)));
        assert!(g.observe(3, &follower_metrics(5, (5, 120), 100)));
    }

    #[test]
    fn a_store_with_data_and_no_marker_votes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RejoinGuard::at_start(dir.path(), false).unwrap().votes_allowed());
    }
}
