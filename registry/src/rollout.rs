//! Rolling updates, driven by the leader: one instance at a time, the next only after the new
//! one is ready. With R replicas: start one of the new generation (R+1 run); once it is ready,
//! stop one of the old and start the next new one; ...; once no old one is left, the update is
//! done. A new instance not ready within `READY_TIMEOUT` stops the update and says why (the
//! old instances left keep running their spec).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{Cluster, unix_now_ms};
use crate::scheduler::Scheduler;
use crate::state::{AssignmentRecord, Op, Placed, ROLLOUT_DONE, ROLLOUT_IN_PROGRESS, Registry, deps};

const STEP_EVERY: Duration = Duration::from_millis(100);
/// How long a new instance may take to become ready (leader time).
const READY_TIMEOUT_MS: u64 = 60_000;

/// The next step of every rolling update in progress.
pub fn next_steps(r: &Registry, now_ms: u64) -> Vec<Op> {
    let mut ops = Vec::new();
    let rolling: Vec<_> = r.deployment_records().filter(|d| d.rollout == ROLLOUT_IN_PROGRESS).collect();
    if rolling.is_empty() {
        // The common case, ten times a second: no counting of every assignment for nothing.
        return ops;
    }
    let mut scheduler = Scheduler::new(r, BTreeSet::new());
    for d in rolling {
        let generation = d.generation.max(1);
        let mine: Vec<&AssignmentRecord> =
            r.assignment_records().filter(|a| a.deployment_id == d.deployment_id).collect();
        // Active instances roll first; warm standbys are replaced after them, one per step.
        let (standbys, active): (Vec<&AssignmentRecord>, Vec<&AssignmentRecord>) = mine.iter().partition(|a| a.standby);
        let (new, old): (Vec<&AssignmentRecord>, Vec<&AssignmentRecord>) =
            active.iter().partition(|a| a.generation >= generation);
        let old_standby = standbys.iter().find(|a| a.generation < generation);
        let fresh = mine.iter().filter(|a| a.generation >= generation);
        // Ready: running and healthy, or (a one-shot job) completed.
        let waiting: Vec<_> =
            fresh.filter(|a| !(a.phase == "Running" && a.healthy) && a.phase != deps::COMPLETED).collect();
        let step = |remove: Option<String>, add: Option<Placed>, outcome: Option<String>, add_standby: bool| {
            Op::RolloutStep { deployment_id: d.deployment_id.clone(), remove, add, outcome, add_standby }
        };
        if let Some(late) = waiting.iter().find(|a| a.created_ms + READY_TIMEOUT_MS < now_ms) {
            let why = format!("Failed: instance {} not ready within {} s", late.instance_id, READY_TIMEOUT_MS / 1000);
            ops.push(step(None, None, Some(why), false));
            continue;
        }
        if !waiting.is_empty() {
            continue;
        }
        let replicas = d.spec.replicas as usize;
        let taken: BTreeSet<&str> = mine.iter().map(|a| a.instance_id.as_str()).collect();
        let fresh_id = || {
            (0..)
                .map(|n| format!("{}-g{generation}-{n}", d.deployment_id))
                .find(|id| !taken.contains(id.as_str()))
                .unwrap_or_default()
        };
        if old.is_empty() && new.len() >= replicas {
            match old_standby {
                Some(s) => {
                    let add = Placed {
                        instance_id: fresh_id(),
                        node_id: scheduler.place(&d.deployment_id, &d.spec.placement.labels),
                    };
                    ops.push(step(Some(s.instance_id.clone()), Some(add), None, true));
                }
                None => ops.push(step(None, None, Some(ROLLOUT_DONE.to_string()), false)),
            }
            continue;
        }
        // The first new instance starts beside all the old ones; every later step replaces one.
        let remove = (!new.is_empty()).then(|| old.first().map(|a| a.instance_id.clone())).flatten();
        let add = (new.len() < replicas).then(|| Placed {
            instance_id: fresh_id(),
            node_id: scheduler.place(&d.deployment_id, &d.spec.placement.labels),
        });
        ops.push(step(remove, add, None, false));
    }
    ops
}

/// Config rolls to start: deployments that opted in (`rollOnConfigChange`), not updating now,
/// whose config keys changed since their current generation started. The roll itself is a
/// rolling update (`next_steps`); apply checks the keys again.
pub fn config_rolls(r: &Registry) -> Vec<Op> {
    r.deployment_records()
        .filter(|d| d.spec.roll_on_config_change && d.rollout != ROLLOUT_IN_PROGRESS)
        .filter(|d| {
            // A referenced key that is gone would fail every new instance: no roll until it is back.
            let stamp = deps::config_stamp(r, &d.spec);
            stamp != d.config_stamp && stamp.values().all(|index| *index > 0)
        })
        .map(|d| Op::RollConfig { deployment_id: d.deployment_id.clone() })
        .collect()
}

/// The leader's loop.
pub async fn drive(cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(STEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.leading_term().is_none() {
            continue;
        }
        let ops = cluster.with_registry(|r| {
            let mut ops = config_rolls(r);
            ops.extend(next_steps(r, unix_now_ms()));
            ops
        });
        for op in ops {
            tracing::info!(id = cluster.id, step = %crate::state::Command { now_ms: 0, op: op.clone() }, "rolling update");
            if let Err(e) = cluster.propose_if_leader(op).await {
                tracing::warn!(id = cluster.id, error = %e, "rolling update step not committed");
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use plum_raft_store::DataWrites;
    use plum_types::DeploymentRequest;

    use super::*;
    use crate::state::{Command, CommandResult, InstanceReport};

    fn apply(r: &mut Registry, now_ms: u64, op: Op) -> CommandResult {
        let index = r.applied_index() + 1;
        r.apply(index, &Command { now_ms, op }, &mut DataWrites::default())
    }

    fn ready(r: &mut Registry, id: &str) {
        let report = InstanceReport {
            instance_id: id.into(),
            node_id: String::new(),
            phase: "Running".into(),
            port: 1,
            healthy: true,
            exit_code: None,
        };
        apply(r, 0, Op::ReportInstance { report });
    }

    /// Generation of every instance, sorted by id.
    fn generations(r: &Registry) -> Vec<(String, u64)> {
        r.assignment_records().map(|a| (a.instance_id.clone(), a.generation)).collect()
    }

    fn setup() -> Registry {
        let mut r = Registry::default();
        for n in ["a", "b"] {
            apply(&mut r, 0, Op::test_node(n, 0));
        }
        let spec = DeploymentRequest { name: "d".into(), version: "1".into(), replicas: 2, ..Default::default() };
        let placements = vec![
            Placed { instance_id: "d-0".into(), node_id: "a".into() },
            Placed { instance_id: "d-1".into(), node_id: "b".into() },
        ];
        let op = Op::CreateDeployment {
            deployment_id: "d".into(),
            spec: Box::new(spec.clone()),
            placements,
            standby: Vec::new(),
        };
        apply(&mut r, 0, op);
        let v2 = DeploymentRequest { version: "2".into(), ..spec };
        assert_eq!(
            apply(&mut r, 0, Op::UpdateDeployment { deployment_id: "d".into(), spec: Box::new(v2), in_place: false }),
            CommandResult::Done
        );
        r
    }

    fn step(r: &mut Registry, now_ms: u64) -> usize {
        let ops = next_steps(r, now_ms);
        let n = ops.len();
        for op in ops {
            apply(r, now_ms, op);
        }
        n
    }

    #[test]
    fn one_at_a_time_and_the_next_only_after_the_new_one_is_ready() {
        let mut r = setup();
        step(&mut r, 1);
        assert_eq!(generations(&r), vec![("d-0".into(), 1), ("d-1".into(), 1), ("d-g2-0".into(), 2)], "surge by one");
        assert_eq!(step(&mut r, 2), 0, "waits while the new one is not ready");
        ready(&mut r, "d-g2-0");
        step(&mut r, 3);
        assert_eq!(generations(&r), vec![("d-1".into(), 1), ("d-g2-0".into(), 2), ("d-g2-1".into(), 2)]);
        ready(&mut r, "d-g2-1");
        step(&mut r, 4);
        assert_eq!(generations(&r), vec![("d-g2-0".into(), 2), ("d-g2-1".into(), 2)]);
        step(&mut r, 5);
        let d = r.deployment("d", 0).unwrap();
        assert_eq!((d.rollout.as_str(), d.spec.version.as_str()), ("Done", "2"));
        assert!(r.assignments_of("a").iter().chain(r.assignments_of("b").iter()).all(|i| i.app_version == "2"));
        // The spec it replaced stays, for a rollback, after the older instances are gone.
        assert_eq!(d.rollback_to.map(|s| s.version), Some("1".to_string()));
        assert!(r.deployment_record("d").is_some_and(|d| d.previous.is_none()));
    }

    #[test]
    fn an_instance_never_ready_stops_the_update_and_old_ones_keep_their_version() {
        let mut r = setup();
        step(&mut r, 1);
        step(&mut r, 1 + READY_TIMEOUT_MS + 1);
        let d = r.deployment("d", 0).unwrap();
        assert!(d.rollout.starts_with("Failed: instance d-g2-0"), "{}", d.rollout);
        let old: Vec<String> =
            r.assignments_of("a").iter().filter(|i| i.instance_id == "d-0").map(|i| i.app_version.clone()).collect();
        assert_eq!(old, vec!["1".to_string()]);
        assert_eq!(step(&mut r, 2 * READY_TIMEOUT_MS), 0, "a failed update takes no more steps");
    }

    fn put_config(r: &mut Registry, value: &str) {
        let write = crate::state::KvWrite { key: "url".into(), value: value.into(), kind: plum_types::KvType::String };
        apply(r, 0, Op::KvPut { ns: "prod".into(), write, expect_version: None, request_id: None });
    }

    #[test]
    fn a_config_change_rolls_only_what_opted_in_and_only_once_per_change() {
        let mut r = Registry::default();
        apply(&mut r, 0, Op::test_node("a", 0));
        put_config(&mut r, "one");
        let config_refs = vec![plum_types::ConfigRef {
            namespace: "prod".into(),
            key: "url".into(),
            env: Some("URL".into()),
            file: None,
        }];
        for (id, roll, node) in [("rolls", true, "a"), ("stays", false, "a"), ("unplaced", true, "")] {
            let spec = DeploymentRequest {
                name: id.into(),
                replicas: 1,
                config_refs: config_refs.clone(),
                roll_on_config_change: roll,
                ..Default::default()
            };
            let placements = vec![Placed { instance_id: format!("{id}-0"), node_id: node.into() }];
            let op =
                Op::CreateDeployment { deployment_id: id.into(), spec: Box::new(spec), placements, standby: vec![] };
            apply(&mut r, 0, op);
        }
        assert!(config_rolls(&r).is_empty(), "nothing changed since they were made");
        put_config(&mut r, "two");
        let rolls = config_rolls(&r);
        assert_eq!(
            rolls,
            [Op::RollConfig { deployment_id: "rolls".into() }, Op::RollConfig { deployment_id: "unplaced".into() }]
        );
        for op in rolls {
            apply(&mut r, 0, op);
        }
        let generation = |id: &str| r.deployment_record(id).map(|d| (d.generation, d.rollout.clone()));
        assert_eq!(generation("rolls"), Some((2, ROLLOUT_IN_PROGRESS.to_string())));
        assert_eq!(generation("unplaced"), Some((1, String::new())), "nothing ran: it starts with the new value");
        assert_eq!(generation("stays"), Some((1, String::new())));
        assert!(config_rolls(&r).is_empty(), "one roll per change");
        let again = apply(&mut r, 0, Op::RollConfig { deployment_id: "rolls".into() });
        assert_eq!(again, CommandResult::Changed { count: 0 }, "a repeated entry changes nothing");
        // Opting out is the controller's business: in place, also during the roll, nothing restarts.
        let spec =
            DeploymentRequest { roll_on_config_change: false, ..r.deployment_record("rolls").unwrap().spec.clone() };
        let op = Op::UpdateDeployment { deployment_id: "rolls".into(), spec: Box::new(spec), in_place: true };
        assert_eq!(apply(&mut r, 0, op), CommandResult::Done);
        let d = r.deployment_record("rolls").unwrap();
        assert_eq!((d.generation, d.spec.roll_on_config_change, d.spec.replicas), (2, false, 1));
    }
}
