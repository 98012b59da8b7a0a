//! Crash test: a child process appends and applies entries and is killed with SIGKILL at random
//! moments; after each kill a fresh process reopens the store and must find every acknowledged
//! append and every applied entry, with vote, committed and last-applied consistent.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

const ROUNDS: usize = 10;
const CHILD: &str = env!("CARGO_BIN_EXE_raft-store-crash-child");

#[derive(Default, Debug)]
struct Acknowledged {
    appended: Option<u64>,
    applied: Option<u64>,
    vote: Option<u64>,
}

fn run_and_kill(dir: &std::path::Path, kill_after: Duration) -> Acknowledged {
    let mut child = Command::new(CHILD)
        .arg("run")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash child");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until it is really writing, then let it run a random while and kill it.
    let first = lines.recv_timeout(Duration::from_secs(60)).expect("child started");
    assert!(first.starts_with("started"), "unexpected first line {first}");
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL child"); // Child::kill sends SIGKILL on Unix.
    child.wait().expect("reap child");
    reader.join().expect("reader thread");

    let mut ack = Acknowledged::default();
    for line in lines.try_iter() {
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(n)) = (parts.next(), parts.next().and_then(|n| n.parse::<u64>().ok())) else {
            continue;
        };
        match kind {
            "appended" => ack.appended = ack.appended.max(Some(n)),
            "applied" => ack.applied = ack.applied.max(Some(n)),
            "vote" => ack.vote = ack.vote.max(Some(n)),
            _ => {}
        }
    }
    ack
}

fn inspect(dir: &std::path::Path) -> Value {
    let out = Command::new(CHILD).arg("inspect").arg(dir).output().expect("run inspect");
    assert!(out.status.success(), "inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut rng = rand::rng();
    let mut highest_ack = Acknowledged::default();
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(rng.random_range(20..400));
        let ack = run_and_kill(dir.path(), kill_after);
        highest_ack.appended = highest_ack.appended.max(ack.appended);
        highest_ack.applied = highest_ack.applied.max(ack.applied);
        highest_ack.vote = highest_ack.vote.max(ack.vote);

        let state = inspect(dir.path());
        eprintln!("round {round}: killed after {kill_after:?}, acknowledged {ack:?}, found {state}");
        assert_eq!(state["contiguous"], Value::Bool(true), "hole in the log: {state}");
        assert_eq!(num(&state, "first"), Some(1).filter(|_| num(&state, "count") > Some(0)), "log does not start at 1");
        let last = num(&state, "last");
        assert!(
            last >= highest_ack.appended,
            "acknowledged append {:?} lost, log ends at {last:?}",
            highest_ack.appended
        );
        let applied = num(&state, "applied");
        assert!(applied >= highest_ack.applied, "applied {:?} lost, store has {applied:?}", highest_ack.applied);
        assert!(applied <= last, "applied {applied:?} beyond the log {last:?}");
        assert_eq!(state["view_ok"], Value::Bool(true), "view misses applied entries: {state}");
        assert_eq!(num(&state, "view_applied_index"), applied.or(Some(0)));
        assert!(num(&state, "vote_term") >= highest_ack.vote, "saved vote {:?} lost: {state}", highest_ack.vote);
        assert!(num(&state, "committed") <= last, "committed beyond the log: {state}");
    }
    assert!(highest_ack.appended.unwrap_or(0) > 0, "the child never acknowledged an append");
}
