//! The leader's liveness duties: keep the book of deadlines for the current term, replicate
//! coalesced heartbeats, expire the silent, forget instances dead for longer than the
//! retention period. Every loop idles unless this replica leads.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::mass_loss::{LossWindow, is_mass_loss};
use super::tracker::Tracker;
use crate::cluster::{Cluster, unix_now_ms};
use crate::scheduler::Scheduler;
use crate::state::{LeaseKind, Op, Placed, Takeover};
use plum_types::ReschedulePause;

/// At most this many expiries per Raft entry; more wait for the next entry, moments later.
const MAX_EXPIRIES_PER_ENTRY: usize = 4096;
/// The sweeper wakes this long after the earliest deadline, so records that fell silent
/// together leave in one entry rather than one entry each (thousands registered over a few
/// seconds expire over the same few seconds).
const EXPIRY_COALESCE: Duration = Duration::from_millis(10);
/// Ids named in an expiry log line; the rest are counted.
const LOGGED_IDS: usize = 10;

/// Aborts the duty loops when dropped.
pub struct LeaderDuties {
    loops: Vec<JoinHandle<()>>,
}

impl Drop for LeaderDuties {
    fn drop(&mut self) {
        self.loops.iter().for_each(JoinHandle::abort);
    }
}

pub fn start(cluster: Arc<Cluster>, tracker: Arc<Tracker>) -> LeaderDuties {
    let loops = vec![
        tokio::spawn(flush_renewals(cluster.clone(), tracker.clone())),
        tokio::spawn(expire_silent(cluster.clone(), tracker)),
        tokio::spawn(forget_dead(cluster.clone())),
        tokio::spawn(place_waiting(cluster.clone())),
        tokio::spawn(crate::rollout::drive(cluster)),
    ];
    LeaderDuties { loops }
}

/// Makes the tracker's book match this replica's leadership (`term`: the term it leads in, if
/// it leads): a new book when it starts leading (or leads in a new term), none when it does
/// not lead. Returns `term`.
fn follow_leadership(cluster: &Cluster, tracker: &Tracker, term: Option<u64>) -> Option<u64> {
    if tracker.term() == term {
        return term;
    }
    match term {
        Some(t) => {
            // Registry lock first, then the tracker's (the order apply uses too).
            cluster.with_registry(|r| tracker.lead(t, Instant::now(), r.leases()));
            tracing::info!(id = cluster.id, term = t, "leading: liveness clocks restart now");
        }
        None => {
            tracker.stop_leading();
            tracing::info!(id = cluster.id, "not leading: liveness duties paused");
        }
    }
    term
}

/// Sleeps until the earliest deadline, a new earlier deadline, or a change of leadership, and
/// expires what fell silent. The cost follows expiries, not the number of nodes.
async fn expire_silent(cluster: Arc<Cluster>, tracker: Arc<Tracker>) {
    let retry = cluster.config.liveness.sweep;
    let mut leadership = cluster.leadership_watch();
    let mut losses = LossWindow::default();
    loop {
        // Registered before looking, so a wake-up in between is not lost.
        let woken = tracker.woken();
        let leading = leadership.current().leading_term;
        let changed = leadership.changed();
        let Some(term) = follow_leadership(&cluster, &tracker, leading) else {
            losses.clear();
            changed.await;
            continue;
        };
        let (nodes, instances) = tracker.take_expired(Instant::now(), retry, MAX_EXPIRIES_PER_ENTRY);
        let expiry = Expiry { term, nodes, instances };
        propose_expiry(&cluster, &tracker, &mut losses, expiry).await;
        let next =
            tracker.next_deadline().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)) + EXPIRY_COALESCE;
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = woken => {}
            _ = changed => {}
        }
    }
}

/// One sweep's verdicts, from the book of `term`.
struct Expiry {
    term: u64,
    nodes: Vec<(String, u64)>,
    instances: Vec<(String, u64)>,
}

/// Where the instances of the dying nodes go: new homes, in the same entry that declares the
/// nodes dead; none while rescheduling is paused, or when this expiry is a mass loss (then
/// the pause is proposed first).
async fn moves_for(
    cluster: &Cluster,
    tracker: &Tracker,
    losses: &mut LossWindow,
    dying: &BTreeSet<String>,
) -> (Vec<Placed>, Vec<Takeover>) {
    let share = cluster.config.liveness.mass_loss_share;
    let (moves, pause) = cluster.with_registry(|r| {
        if r.reschedule_pause().is_some() {
            return ((Vec::new(), Vec::new()), None);
        }
        let runnable = |id: &String| r.node_record(id).is_some_and(|n| n.can_run);
        let dying_runnable: Vec<String> = dying.iter().filter(|id| runnable(id)).cloned().collect();
        // "Within one TTL": the longest TTL among the nodes going now.
        let window = dying_runnable
            .iter()
            .filter_map(|id| r.node_record(id))
            .map(|n| tracker.ttl_of(LeaseKind::Node, n.ttl_ms))
            .max()
            .unwrap_or_default();
        let lost = losses.record(Instant::now(), window, &dying_runnable);
        let alive = r.node_records().filter(|n| n.alive && n.can_run).count();
        let lost_before = lost.iter().filter(|id| !dying.contains(*id)).count();
        let fleet = alive + lost_before;
        if !dying_runnable.is_empty() && is_mass_loss(fleet, lost.len(), share) {
            let reason = format!(
                "{} of {fleet} nodes that run work were lost within one TTL ({} ms): rescheduling paused until \
                 they come back or an operator confirms (POST /v1/cluster/reschedule)",
                lost.len(),
                window.as_millis()
            );
            let pause = ReschedulePause { since_ms: unix_now_ms(), nodes: lost, reason };
            return ((Vec::new(), Vec::new()), Some(pause));
        }
        let mut scheduler = Scheduler::new(r, BTreeSet::new());
        let takeovers = scheduler.takeovers(dying);
        ((scheduler.moves_off(dying, unix_now_ms()), takeovers), None)
    });
    if let Some(pause) = pause {
        tracing::error!(id = cluster.id, nodes = ?pause.nodes, reason = %pause.reason, "mass loss of nodes");
        if let Err(e) = cluster.propose_if_leader(Op::SetReschedulePause { pause: Some(pause) }).await {
            tracing::warn!(id = cluster.id, error = %e, "pausing rescheduling not committed; not moving anything");
        }
    }
    moves
}

/// Proposes the verdicts of the book of `term`, each only while this replica still leads in
/// that term (the first proposal may take long enough for leadership to move).
async fn propose_expiry(cluster: &Cluster, tracker: &Tracker, losses: &mut LossWindow, expiry: Expiry) {
    let Expiry { term, nodes, instances } = expiry;
    let still_leading = || cluster.leading_term() == Some(term);
    if !nodes.is_empty() && still_leading() {
        let ids: Vec<&str> = nodes.iter().take(LOGGED_IDS).map(|(id, _)| id.as_str()).collect();
        let dying: BTreeSet<String> = nodes.iter().map(|(id, _)| id.clone()).collect();
        // How long the longest-silent of them was last heard from ago: detection beyond its
        // TTL shows here.
        let silent_ms = nodes.iter().map(|(_, seen)| unix_now_ms().saturating_sub(*seen)).max().unwrap_or(0);
        let (moves, takeovers) = moves_for(cluster, tracker, losses, &dying).await;
        tracing::info!(id = cluster.id, term, count = nodes.len(), nodes = ?ids, silent_ms, moves = moves.len(), takeovers = takeovers.len(), "expiring silent nodes");
        if let Err(e) = cluster.propose_if_leader(Op::ExpireNodes { nodes, moves, takeovers }).await {
            tracing::warn!(id = cluster.id, term, error = %e, "node expiry not committed");
        }
    }
    if !instances.is_empty() && still_leading() {
        let ids: Vec<&str> = instances.iter().take(LOGGED_IDS).map(|(id, _)| id.as_str()).collect();
        tracing::info!(id = cluster.id, term, count = instances.len(), instances = ?ids, "expiring silent instances");
        if let Err(e) = cluster.propose_if_leader(Op::ExpireInstances { instances }).await {
            tracing::warn!(id = cluster.id, term, error = %e, "instance expiry not committed");
        }
    }
}

/// One `Renew` entry per interval carries every heartbeat received meanwhile.
async fn flush_renewals(cluster: Arc<Cluster>, tracker: Arc<Tracker>) {
    let mut tick = tokio::time::interval(cluster.config.liveness.renew_flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tracker.term().is_none() {
            continue;
        }
        let (nodes, instances) = tracker.take_pending();
        if nodes.is_empty() && instances.is_empty() {
            continue;
        }
        let count = nodes.len() + instances.len();
        let op = Op::Renew { nodes, instances };
        if let Err(e) = cluster.propose_if_leader(op.clone()).await {
            tracing::debug!(id = cluster.id, count, error = %e, "renewal not replicated; keeping it for the next flush");
            if let Op::Renew { nodes, instances } = op {
                tracker.restore_pending(nodes, instances);
            }
        }
    }
}

/// How often the leader looks for instances without a live node (none could take them when
/// they were created or moved, or their node died under an earlier leader).
const PLACE_WAITING_EVERY: Duration = Duration::from_secs(1);

/// Finds homes for instances that wait for a node or sit on a dead one; when none do, moves
/// warm standbys off nodes they share with an active instance (a node that came back after its
/// work moved away is where they belong).
async fn place_waiting(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(PLACE_WAITING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.leading_term().is_none() {
            continue;
        }
        let share = cluster.config.liveness.mass_loss_share;
        let (moves, resume) = cluster.with_registry(|r| {
            let dead: BTreeSet<String> = r.node_records().filter(|n| !n.alive).map(|n| n.node_id.clone()).collect();
            if r.reschedule_pause().is_some() {
                // Resume once the nodes that run work are back above the share.
                let fleet = r.node_records().filter(|n| n.can_run).count();
                let down = r.node_records().filter(|n| n.can_run && !n.alive).count();
                return (Vec::new(), !is_mass_loss(fleet, down, share));
            }
            let homeless = r.assignment_records().any(|a| a.node_id.is_empty() || dead.contains(&a.node_id));
            let standbys = r.assignment_records().any(|a| a.standby);
            if !homeless && !standbys {
                return (Vec::new(), false);
            }
            let mut scheduler = Scheduler::new(r, BTreeSet::new());
            let mut moves = if homeless { scheduler.moves_off(&dead, unix_now_ms()) } else { Vec::new() };
            if moves.is_empty() {
                moves = scheduler.spread_standbys();
            }
            (moves, false)
        });
        if resume {
            tracing::info!(id = cluster.id, "enough nodes are back: rescheduling resumes");
            if let Err(e) = cluster.propose_if_leader(Op::SetReschedulePause { pause: None }).await {
                tracing::warn!(id = cluster.id, error = %e, "resuming rescheduling not committed");
            }
            continue;
        }
        if moves.is_empty() {
            continue;
        }
        let count = moves.len();
        match cluster.propose_if_leader(Op::Reassign { moves }).await {
            Ok(_) => tracing::info!(id = cluster.id, count, "placed waiting instances (or spread standbys)"),
            Err(e) => tracing::warn!(id = cluster.id, count, error = %e, "placing instances not committed"),
        }
    }
}

/// Dead instance records are kept for the retention period (operators see what died and
/// when), then forgotten through one replicated entry.
async fn forget_dead(cluster: Arc<Cluster>) {
    let retention = cluster.config.liveness.dead_retention;
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.leading_term().is_none() {
            continue;
        }
        let cutoff = unix_now_ms().saturating_sub(retention.as_millis() as u64);
        let dead: Vec<(String, u64)> = cluster.with_registry(|r| {
            r.instance_records()
                .filter(|i| !i.alive && i.last_seen_ms < cutoff)
                .take(1000)
                .map(|i| (i.instance_id.clone(), i.last_seen_ms))
                .collect()
        });
        if dead.is_empty() {
            continue;
        }
        let count = dead.len();
        match cluster.propose_if_leader(Op::ForgetInstances { instances: dead }).await {
            Ok(_) => tracing::info!(id = cluster.id, count, "forgot instances dead beyond the retention period"),
            Err(e) => tracing::warn!(id = cluster.id, count, error = %e, "forgetting dead instances not committed"),
        }
    }
}
