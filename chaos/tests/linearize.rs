//! The linearizability checker on hand-written histories, on histories generated from real
//! sequential executions (proptest), within its budget, and the runner end to end against
//! an in-process fake KV server (a correct one and one that serves stale reads).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plum_chaos::linearize::{
    Budget, KeyVerdict, Kind, Op, Outcome, Report, RunOptions, Verdict, Violation, check, run,
};
use proptest::prelude::*;

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

fn op(client: u32, key: &str, kind: Kind, span: (u64, u64), outcome: Outcome) -> Op {
    Op { client, key: key.into(), kind, invoke: ms(span.0), complete: ms(span.1), outcome }
}

fn write(client: u32, value: &str, span: (u64, u64)) -> Op {
    op(client, "k", Kind::Write(value.into()), span, Outcome::Ok(None))
}

fn write_with(client: u32, value: &str, span: (u64, u64), outcome: Outcome) -> Op {
    op(client, "k", Kind::Write(value.into()), span, outcome)
}

fn read(client: u32, seen: Option<&str>, span: (u64, u64)) -> Op {
    op(client, "k", Kind::Read, span, Outcome::Ok(seen.map(str::to_string)))
}

fn verdict(history: &[Op]) -> Verdict {
    check(history, Budget::default()).verdict()
}

fn the_violation(report: &Report) -> &Violation {
    let violations: Vec<&Violation> = report.violations().collect();
    assert_eq!(violations.len(), 1, "{report:?}");
    violations[0]
}

#[test]
fn concurrent_ops_may_take_effect_in_either_order() {
    let h = [
        read(0, None, (0, 1)),
        write(0, "a", (2, 10)),
        write(1, "b", (3, 12)),
        // Both writes are open: either order explains these two reads.
        read(2, Some("a"), (4, 5)),
        read(2, Some("b"), (6, 7)),
        read(1, Some("b"), (13, 14)),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
    assert_eq!(verdict(&[]), Verdict::Ok);
}

#[test]
fn a_stale_read_after_a_completed_write_is_a_violation() {
    let h = [write(0, "a", (0, 1)), write(0, "b", (2, 3)), read(1, Some("a"), (4, 5))];
    let report = check(&h, Budget::default());
    assert_eq!(report.verdict(), Verdict::Violation);
    let v = the_violation(&report);
    assert_eq!(v.key, "k");
    assert_eq!(v.value.as_deref(), Some("b"));
    assert_eq!(v.blocking.as_ref(), Some(&h[2]));
    assert_eq!(v.tail, vec![h[0].clone(), h[1].clone()]);
    let text = v.to_string();
    assert!(text.contains("key k: not linearizable; 2 of 3 ops linearized"), "{text}");
    assert!(text.contains("c1 read -> a [4.000ms..5.000ms] ok"), "{text}");
}

#[test]
fn a_read_of_a_value_never_written_is_a_violation() {
    let h = [write(0, "a", (0, 1)), read(1, Some("zzz"), (2, 3))];
    let report = check(&h, Budget::default());
    assert_eq!(the_violation(&report).never_written, vec!["zzz".to_string()]);
    // Also when it is the first op: the register starts absent.
    assert_eq!(verdict(&[read(1, Some("zzz"), (0, 1))]), Verdict::Violation);
    assert_eq!(verdict(&[read(1, None, (0, 1)), write(0, "a", (2, 3)), read(1, None, (4, 5))]), Verdict::Violation);
}

#[test]
fn two_reads_seeing_writes_in_opposite_orders_are_a_violation() {
    let both_open = [write(0, "a", (0, 100)), write(1, "b", (0, 100))];
    let h = [
        both_open[0].clone(),
        both_open[1].clone(),
        read(2, Some("a"), (10, 20)),
        read(2, Some("b"), (30, 40)),
        read(3, Some("b"), (10, 20)),
        read(3, Some("a"), (30, 40)),
    ];
    assert_eq!(verdict(&h), Verdict::Violation);
    // One reader alone seeing them in one order is fine.
    assert_eq!(verdict(&h[..4]), Verdict::Ok);
}

#[test]
fn an_unknown_write_may_explain_a_later_read() {
    let unknown = write_with(0, "a", (0, 5), Outcome::Unknown);
    assert_eq!(verdict(&[unknown.clone(), read(1, Some("a"), (10, 20))]), Verdict::Ok);
    // Its recorded completion bounds nothing: it may take effect long after.
    assert_eq!(verdict(&[unknown.clone(), read(1, None, (10, 20)), read(1, Some("a"), (30, 40))]), Verdict::Ok);
    // Or never.
    assert_eq!(verdict(&[unknown.clone(), read(1, None, (10, 20))]), Verdict::Ok);
    // But not before it was invoked.
    assert_eq!(
        verdict(&[read(1, Some("a"), (0, 1)), write_with(0, "a", (2, 5), Outcome::Unknown)]),
        Verdict::Violation
    );
    // And once seen, it cannot be undone.
    assert_eq!(verdict(&[unknown, read(1, Some("a"), (10, 20)), read(1, None, (30, 40))]), Verdict::Violation);
}

#[test]
fn a_failed_write_whose_value_is_read_is_a_violation() {
    let h = [write_with(0, "a", (0, 5), Outcome::Fail), read(1, Some("a"), (10, 20))];
    let report = check(&h, Budget::default());
    assert_eq!(report.verdict(), Verdict::Violation);
    assert_eq!(the_violation(&report).never_written, vec!["a".to_string()]);
    // A failed write read by no one is simply not there.
    let h = [write_with(0, "a", (0, 5), Outcome::Fail), read(1, None, (10, 20))];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn reads_that_ended_without_an_answer_say_nothing() {
    let h = [
        write(0, "a", (0, 1)),
        op(1, "k", Kind::Read, (2, 3), Outcome::Unknown),
        op(1, "k", Kind::Read, (4, 5), Outcome::Fail),
    ];
    assert_eq!(verdict(&h), Verdict::Ok);
}

#[test]
fn keys_are_checked_apart() {
    let h = [
        op(0, "x", Kind::Write("a".into()), (0, 1), Outcome::Ok(None)),
        op(1, "y", Kind::Read, (2, 3), Outcome::Ok(Some("a".into()))),
        op(1, "x", Kind::Read, (4, 5), Outcome::Ok(Some("a".into()))),
    ];
    let report = check(&h, Budget::default());
    assert_eq!(report.keys.len(), 2);
    assert_eq!(report.keys[0].verdict, KeyVerdict::Linearizable);
    assert_eq!(the_violation(&report).key, "y");
}

/// Many concurrent writes and a read of a value none wrote: exponential without a bound.
fn hard(key: &str) -> Vec<Op> {
    let mut h: Vec<Op> =
        (0..24).map(|i| op(i, key, Kind::Write(format!("v{i}")), (0, 100), Outcome::Ok(None))).collect();
    h.push(op(99, key, Kind::Read, (0, 100), Outcome::Ok(Some("nobody".into()))));
    h
}

#[test]
fn the_budget_bounds_the_search() {
    let report = check(&hard("k"), Budget { max_steps: 50_000, max_time: Duration::from_secs(30) });
    assert_eq!(report.verdict(), Verdict::Unknown);
    assert_eq!(report.keys[0].verdict, KeyVerdict::BudgetExceeded);
    assert!(report.steps <= 50_001, "{}", report.steps);

    let started = std::time::Instant::now();
    let report = check(&hard("k"), Budget { max_steps: u64::MAX, max_time: Duration::from_millis(200) });
    assert_eq!(report.verdict(), Verdict::Unknown);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_violation_found_within_the_budget_still_counts() {
    let mut h = hard("z");
    h.extend([write(0, "a", (0, 1)), read(1, Some("zzz"), (2, 3))]);
    let report = check(&h, Budget { max_steps: 50_000, max_time: Duration::from_secs(30) });
    // "k" comes first and is decided; "z" runs out of steps.
    assert_eq!(report.keys[1].verdict, KeyVerdict::BudgetExceeded);
    assert_eq!(report.verdict(), Verdict::Violation);
}

/// A history from a real sequential execution: op `i` takes effect at `10 * i` on its key;
/// its recorded interval is drawn around that instant, so intervals overlap at random. Some
/// writes end unknown (applied, or never), some fail (never applied), some reads are lost.
fn executed() -> impl Strategy<Value = Vec<Op>> {
    // (key, is_write, before, after, fate) per op
    let step = (0..3usize, any::<bool>(), 0..60u64, 0..60u64, 0..10u8);
    prop::collection::vec(step, 1..60).prop_map(|steps| {
        let mut register: HashMap<usize, Option<String>> = HashMap::new();
        let mut history = Vec::new();
        for (i, (key, is_write, before, after, fate)) in steps.into_iter().enumerate() {
            let at = 100 + 10 * i as u64;
            let span = (at - before, at + after);
            let client = (i % 5) as u32;
            let key_name = format!("k{key}");
            let value = format!("c{client}-{i}");
            if is_write {
                match fate {
                    // Never applied: refused, or lost before it reached the leader.
                    0 => history.push(op(client, &key_name, Kind::Write(value), span, Outcome::Fail)),
                    1 => history.push(op(client, &key_name, Kind::Write(value), span, Outcome::Unknown)),
                    // Applied, but the client never learned it (its "completion" says nothing).
                    2 => {
                        register.insert(key, Some(value.clone()));
                        let lost = (span.0, span.0 + after / 3);
                        history.push(op(client, &key_name, Kind::Write(value), lost, Outcome::Unknown));
                    }
                    _ => {
                        register.insert(key, Some(value.clone()));
                        history.push(op(client, &key_name, Kind::Write(value), span, Outcome::Ok(None)));
                    }
                }
            } else {
                let outcome =
                    if fate == 0 { Outcome::Unknown } else { Outcome::Ok(register.get(&key).cloned().flatten()) };
                history.push(op(client, &key_name, Kind::Read, span, outcome));
            }
        }
        history
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn an_executed_history_is_linearizable(history in executed()) {
        let report = check(&history, Budget::default());
        prop_assert_eq!(report.verdict(), Verdict::Ok, "{:?}", report);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_always_caught(history in executed(), pick in any::<prop::sample::Index>()) {
        let reads: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind == Kind::Read && matches!(o.outcome, Outcome::Ok(_)))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        let mut history = history;
        let i = reads[pick.index(reads.len())];
        history[i].outcome = Outcome::Ok(Some("never-written".into()));
        let report = check(&history, Budget::default());
        prop_assert_eq!(report.verdict(), Verdict::Violation);
        let violation = the_violation(&report);
        prop_assert_eq!(&violation.key, &history[i].key);
        prop_assert_eq!(&violation.never_written, &vec!["never-written".to_string()]);
    }
}

/// A KV server in this process, speaking the two routes the runner uses. `stale`: reads
/// answer the value before the last write (what a follower that lags would serve).
async fn fake_cluster(stale: bool) -> String {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::{Json, Router};
    use plum_types::{KvItem, KvPutRequest, KvType, KvWritten};

    type Store = Arc<Mutex<HashMap<(String, String), Vec<String>>>>;
    async fn put(
        State(store): State<Store>,
        Path((ns, key)): Path<(String, String)>,
        Json(req): Json<KvPutRequest>,
    ) -> Json<KvWritten> {
        let value = req.value.unwrap_or_default();
        let mut store = store.lock().unwrap();
        let values = store.entry((ns.clone(), key.clone())).or_default();
        values.push(value.clone());
        Json(KvWritten { namespace: ns, key, value, kind: KvType::String, version: values.len() as u64 })
    }
    async fn read(
        State((store, stale)): State<(Store, bool)>,
        Path((ns, key)): Path<(String, String)>,
    ) -> Result<Json<KvItem>, (StatusCode, Json<serde_json::Value>)> {
        let store = store.lock().unwrap();
        let values = store.get(&(ns.clone(), key.clone())).cloned().unwrap_or_default();
        let shown = if stale { values.len().checked_sub(1) } else { Some(values.len()) };
        match shown.filter(|&n| n > 0) {
            Some(n) => Ok(Json(KvItem {
                namespace: ns,
                key,
                value: values[n - 1].clone(),
                kind: KvType::String,
                updated_at: 0,
                version: n as u64,
                mod_index: n as u64,
            })),
            None => Err((
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({ "error": format!("key `{ns}/{key}` not found") })),
            )),
        }
    }
    let store: Store = Arc::default();
    let reads = Router::new().route("/v1/kv/{ns}/key/{key}", get(read)).with_state((store.clone(), stale));
    let writes = Router::new().route("/v1/kv/{ns}/key/{key}", axum::routing::put(put)).with_state(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, reads.merge(writes)).await });
    format!("http://{addr}")
}

fn run_options(url: String, clients: usize, keys: usize) -> RunOptions {
    RunOptions { urls: vec![url], clients, keys, duration: Duration::from_millis(400), budget: Budget::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_passes_a_correct_store() {
    let url = fake_cluster(false).await;
    let report = run(&run_options(url, 5, 3)).await.unwrap();
    assert_eq!(report.verdict(), Verdict::Ok, "{}", report.line());
    assert!(report.counts.ok > 20, "{}", report.line());
    assert_eq!((report.counts.fail, report.counts.unknown), (0, 0), "{}", report.line());
    assert!(report.ensure_no_violation().is_ok());
    let line = report.line();
    assert!(line.starts_with("linearizability ops=") && line.contains(" result=ok elapsed_ms="), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_catches_stale_reads() {
    let url = fake_cluster(true).await;
    // One client: every read after one of its own writes is stale, with nothing concurrent.
    let report = run(&run_options(url, 1, 1)).await.unwrap();
    assert_eq!(report.verdict(), Verdict::Violation, "{}", report.line());
    assert!(report.ensure_no_violation().is_err());
    assert!(report.line().contains(" result=violation "), "{}", report.line());
}

/// A long run's history (30 000 ops, about eight open at once on each of three keys) is
/// decided well within the default budget: the cache's compact sets keep it near linear.
#[test]
fn a_long_history_is_checked_quickly() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut register: HashMap<u64, String> = HashMap::new();
    let mut history = Vec::new();
    for i in 0..30_000u64 {
        let at = 1_000 + 10 * i;
        let span = (at - next(40), at + next(40));
        let (client, key) = ((i % 5) as u32, next(3));
        let kind = if next(2) == 0 {
            let value = format!("c{client}-{i}");
            register.insert(key, value.clone());
            Kind::Write(value)
        } else {
            Kind::Read
        };
        let outcome = match kind {
            Kind::Read => Outcome::Ok(register.get(&key).cloned()),
            Kind::Write(_) => Outcome::Ok(None),
        };
        history.push(op(client, &format!("k{key}"), kind, span, outcome));
    }
    let started = std::time::Instant::now();
    let report = check(&history, Budget::default());
    assert_eq!(report.verdict(), Verdict::Ok);
    assert!(report.steps < 2_000_000, "{}", report.steps);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}
