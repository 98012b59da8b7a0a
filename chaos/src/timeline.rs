//! A leader failover accounted step by step, from the surviving replicas' own records
//! (`/v1/cluster` → `failover`, unix ms on this machine's one clock) relative to the kill.

use std::fmt;

use plum_types::{ClusterStatus, FailoverTimeline};

/// Milliseconds after the kill (negative: before it) of each step; `None`: not seen.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Steps {
    /// The last heartbeat each surviving follower received from the old leader (the latest).
    pub last_contact: Option<i64>,
    /// The first survivor to find the old leader's port refusing connections.
    pub confirmed: Option<i64>,
    pub campaign: Option<i64>,
    /// The first survivor to grant the candidate a pre-vote (none when the campaign skipped
    /// pre-vote because its voters had confirmed the leader dead themselves).
    pub pre_vote: Option<i64>,
    /// The first survivor to grant the candidate its vote.
    pub vote_granted: Option<i64>,
    pub leader: Option<i64>,
    pub first_commit: Option<i64>,
    /// The last survivor to learn of the new leader.
    pub all_learned: Option<i64>,
    /// The first client write sent after the kill and acknowledged.
    pub client_ack: Option<i64>,
}

fn after(at_ms: u64, kill_ms: u64) -> Option<i64> {
    (at_ms > 0).then(|| at_ms as i64 - kill_ms as i64)
}

impl Steps {
    /// From each survivor's status, for a kill at `kill_ms` that made `new_leader` leader.
    pub fn from_statuses(statuses: &[ClusterStatus], kill_ms: u64, new_leader: u64) -> Steps {
        let timelines: Vec<(u64, &FailoverTimeline)> =
            statuses.iter().filter_map(|s| s.failover.as_ref().map(|f| (s.replica_id, f))).collect();
        // Only what happened around this kill: steps recorded before the previous trials'
        // are filtered out by requiring them near the kill.
        let near = |v: Option<i64>| v.filter(|ms| (-5_000..30_000).contains(ms));
        let each =
            |f: fn(&FailoverTimeline) -> u64| timelines.iter().filter_map(move |(_, t)| near(after(f(t), kill_ms)));
        let of_leader = |f: fn(&FailoverTimeline) -> u64| {
            timelines.iter().find(|(id, _)| *id == new_leader).and_then(|(_, t)| near(after(f(t), kill_ms)))
        };
        Steps {
            last_contact: each(|t| t.last_leader_contact_ms).filter(|ms| *ms <= 0).max(),
            confirmed: each(|t| t.leader_down_confirmed_ms).min(),
            campaign: of_leader(|t| t.campaign_started_ms),
            pre_vote: each(|t| t.pre_vote_granted_ms).filter(|ms| *ms >= 0).min(),
            vote_granted: each(|t| t.vote_granted_ms).filter(|ms| *ms >= 0).min(),
            leader: of_leader(|t| t.became_leader_ms),
            first_commit: of_leader(|t| t.first_commit_ms),
            all_learned: timelines
                .iter()
                .filter(|(_, t)| t.learned_leader_id == new_leader)
                .filter_map(|(_, t)| near(after(t.learned_leader_ms, kill_ms)))
                .max(),
            client_ack: None,
        }
    }
}

impl fmt::Display for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |x: Option<i64>| x.map(|ms| ms.to_string()).unwrap_or_else(|| "-".into());
        write!(
            f,
            "last_heartbeat={} leader_down_confirmed={} campaign={} pre_vote={} vote_granted={} new_leader={} first_commit={} all_learned={} client_ack={}",
            v(self.last_contact),
            v(self.confirmed),
            v(self.campaign),
            v(self.pre_vote),
            v(self.vote_granted),
            v(self.leader),
            v(self.first_commit),
            v(self.all_learned),
            v(self.client_ack)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: u64, t: FailoverTimeline) -> ClusterStatus {
        ClusterStatus {
            replica_id: id,
            leader_id: Some(2),
            term: 2,
            members: vec![],
            reschedule_paused: None,
            nodes_expired: 0,
            failover: Some(t),
            leader_contact_gaps: None,
        }
    }

    #[test]
    fn steps_are_relative_to_the_kill_and_taken_from_the_right_replica() {
        let kill = 1_000_000;
        let leader = FailoverTimeline {
            last_leader_contact_ms: kill - 20,
            leader_down_confirmed_ms: kill + 80,
            campaign_started_ms: kill + 82,
            became_leader_ms: kill + 95,
            first_commit_ms: kill + 101,
            learned_leader_ms: kill + 95,
            learned_leader_id: 2,
            ..FailoverTimeline::default()
        };
        let follower = FailoverTimeline {
            last_leader_contact_ms: kill - 5,
            leader_down_confirmed_ms: kill + 78,
            // From an earlier trial: ignored.
            campaign_started_ms: kill - 60_000,
            learned_leader_ms: kill + 99,
            learned_leader_id: 2,
            vote_granted_ms: kill + 90,
            // From an earlier trial: ignored.
            pre_vote_granted_ms: kill - 40_000,
            ..FailoverTimeline::default()
        };
        let steps = Steps::from_statuses(&[status(2, leader), status(3, follower)], kill, 2);
        assert_eq!(steps.last_contact, Some(-5));
        assert_eq!(steps.confirmed, Some(78));
        assert_eq!((steps.campaign, steps.leader, steps.first_commit), (Some(82), Some(95), Some(101)));
        assert_eq!(steps.all_learned, Some(99));
        assert_eq!((steps.pre_vote, steps.vote_granted), (None, Some(90)));
    }
}
