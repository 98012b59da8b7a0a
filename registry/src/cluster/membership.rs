//! Membership changes for operators, behind `Cluster` so the API never touches openraft.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};

use super::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("replica {0} is not a member")]
    NotMember(u64),
    #[error("replica {0} is not a voter")]
    NotVoter(u64),
    #[error("this replica is not the leader")]
    NotLeader,
    #[error("raft refused: {0}")]
    Raft(String),
}

/// Whether a new learner caught up within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnerAdded {
    CaughtUp,
    /// Added; still catching up when the wait ended.
    StillCatchingUp,
}

fn refused<E: std::fmt::Display>(e: E) -> MembershipError {
    MembershipError::Raft(e.to_string())
}

impl Cluster {
    /// Adds a non-voting member and waits (bounded) for it to catch up.
    pub async fn add_learner(&self, id: u64, addr: String, wait: Duration) -> Result<LearnerAdded, MembershipError> {
        let adding = self.raft.add_learner(id, BasicNode { addr }, true);
        match tokio::time::timeout(wait, adding).await {
            Ok(Ok(_)) => Ok(LearnerAdded::CaughtUp),
            Ok(Err(e)) => Err(refused(e)),
            Err(_) => Ok(LearnerAdded::StillCatchingUp),
        }
    }

    /// Makes a learner a voter.
    pub async fn promote(&self, id: u64) -> Result<(), MembershipError> {
        if !self.members().iter().any(|m| m.0 == id) {
            return Err(MembershipError::NotMember(id));
        }
        self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await.map_err(refused)?;
        Ok(())
    }

    /// Removes a voter or a learner.
    pub async fn remove_member(&self, id: u64) -> Result<(), MembershipError> {
        let member = self.members().into_iter().find(|m| m.0 == id).ok_or(MembershipError::NotMember(id))?;
        let change = if member.2 {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft.change_membership(change, false).await.map_err(refused)?;
        Ok(())
    }

    /// Asks this leader to hand leadership to voter `id`.
    pub async fn transfer_leader(&self, id: u64) -> Result<(), MembershipError> {
        if !self.members().iter().any(|m| m.0 == id && m.2) {
            return Err(MembershipError::NotVoter(id));
        }
        if !self.is_leader() {
            return Err(MembershipError::NotLeader);
        }
        if id == self.id {
            // Already there. Handing leadership to itself made openraft step down, and a single
            // replica was seen to stay without a leader (every write "not leader").
            return Ok(());
        }
        self.raft.trigger().transfer_leader(id).await.map_err(refused)
    }
}
