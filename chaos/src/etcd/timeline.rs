//! An etcd leader failover step by step, from the surviving members' own logs (zap, one JSON
//! object a line, `ts` on this machine's clock), relative to the kill: what Plum's trial line
//! shows from `/v1/cluster`, as far as etcd logs it.

use serde_json::Value;

use crate::timeline::Steps;

/// Unix ms of a zap timestamp (`2026-11-29T08:56:18.310Z`, or with `+0100` for `Z`).
pub fn unix_ms(ts: &str) -> Option<i64> {
    let num = |from: usize, len: usize| ts.get(from..from + len)?.parse::<i64>().ok();
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second, milli) = (num(11, 2)?, num(14, 2)?, num(17, 2)?, num(20, 3)?);
    let offset_min = match ts.get(23..)? {
        "Z" => 0,
        zone => {
            let zone = zone.replace(':', "");
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (zone.get(1..3)?.parse::<i64>().ok()? * 60 + zone.get(3..5)?.parse::<i64>().ok()?)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + (minute - offset_min) * 60 + second;
    Some(seconds * 1000 + milli)
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The messages of a member's log from `kill_ms` on (within 30 s), each with its ms after the kill.
fn after_kill(log: &str, kill_ms: u64) -> Vec<(i64, String)> {
    log.lines()
        .filter_map(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            let at = unix_ms(entry.get("ts")?.as_str()?)? - kill_ms as i64;
            let msg = entry.get("msg")?.as_str()?;
            (0..30_000).contains(&at).then(|| (at, msg.to_string()))
        })
        .collect()
}

/// From the logs of the members that survived a kill at `kill_ms`: the new leader's campaign
/// and election, the first pre-vote and vote a survivor cast, and when the last survivor
/// learned the new leader. etcd logs nothing of the rest (`-`).
pub fn steps(survivor_logs: &[String], kill_ms: u64) -> Steps {
    let logs: Vec<Vec<(i64, String)>> = survivor_logs.iter().map(|l| after_kill(l, kill_ms)).collect();
    let first = |pattern: &str| logs.iter().flatten().filter(|(_, m)| m.contains(pattern)).map(|(at, _)| *at).min();
    // "<id> became leader at term <t>": the new leader and when.
    let elected =
        logs.iter().flatten().filter(|(_, m)| m.contains(" became leader at term ")).min_by_key(|(at, _)| *at);
    let new_id = elected.and_then(|(_, m)| m.split(' ').next());
    let learned = |log: &Vec<(i64, String)>| {
        let needle = format!(" elected leader {} at term ", new_id?);
        log.iter().find(|(_, m)| m.contains(&needle)).map(|(at, _)| *at)
    };
    Steps {
        campaign: new_id.and_then(|id| first(&format!("{id} is starting a new election at term"))),
        pre_vote: first(" cast MsgPreVote for "),
        vote_granted: first(" cast MsgVote for "),
        leader: elected.map(|(at, _)| *at),
        // Every survivor must have logged it.
        all_learned: logs.iter().map(learned).collect::<Option<Vec<i64>>>().and_then(|a| a.into_iter().max()),
        ..Steps::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zap_timestamps_are_unix_ms() {
        assert_eq!(unix_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(unix_ms("2026-11-29T08:56:18.310Z"), Some(1_795_942_578_310));
        assert_eq!(unix_ms("2000-02-29T23:59:59.999Z"), Some(951_868_799_999));
        assert_eq!(unix_ms("2026-11-29T09:56:18.310+0100"), Some(1_795_942_578_310));
        assert_eq!(unix_ms("2026-11-29T07:26:18.310-01:30"), Some(1_795_942_578_310));
        assert_eq!(unix_ms("yesterday"), None);
    }

    fn line(ts: &str, msg: &str) -> String {
        format!(r#"{{"level":"info","ts":"2026-11-29T08:56:{ts}Z","caller":"raft/raft.go:1","msg":"{msg}"}}"#)
    }

    /// Lines of etcd 3.4.23 from a leader kill at 08:56:18.000 (m1 = ad89.. killed).
    #[test]
    fn steps_come_from_the_survivors_logs() {
        let m2 = [
            line(
                "17.532",
                "5c2b [logterm: 1, index: 3, vote: 0] cast MsgVote for ad89 [logterm: 1, index: 3] at term 2",
            ),
            line("18.310", "5c2b is starting a new election at term 2"),
            line("18.310", "5c2b became candidate at term 3"),
            line("18.311", "5c2b became leader at term 3"),
            line("18.311", "raft.node: 5c2b elected leader 5c2b at term 3"),
        ]
        .join("\n");
        let m3 = [
            "not json".to_string(),
            line(
                "18.311",
                "6f9d [logterm: 2, index: 601, vote: 0] cast MsgVote for 5c2b [logterm: 2, index: 601] at term 3",
            ),
            line("18.313", "raft.node: 6f9d elected leader 5c2b at term 3"),
        ]
        .join("\n");
        let kill = unix_ms("2026-11-29T08:56:18.000Z").unwrap() as u64;
        let steps = steps(&[m2.clone(), m3], kill);
        assert_eq!((steps.campaign, steps.pre_vote, steps.vote_granted), (Some(310), None, Some(311)));
        assert_eq!((steps.leader, steps.all_learned), (Some(311), Some(313)));
        assert_eq!((steps.last_contact, steps.confirmed, steps.first_commit), (None, None, None));
        // A survivor that has not logged the new leader yet: not all learned.
        assert_eq!(super::steps(&[m2, String::new()], kill).all_learned, None);
    }
}
