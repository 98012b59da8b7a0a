//! The cluster's own records around a run, so that what a load did to it cannot pass
//! unnoticed: its term (a change means an election), each replica's count of expired nodes,
//! the silences its followers saw between appends from the leader, and each replica
//! process's CPU time, memory and open descriptors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use plum_types::{ClusterStatus, ContactGaps};

use crate::{procfs, target};

#[derive(Debug, Clone)]
pub struct Marks {
    pub at: Instant,
    pub term: u64,
    pub nodes_expired: BTreeMap<u64, u64>,
    pub gaps: BTreeMap<u64, ContactGaps>,
    pub processes: BTreeMap<u64, Process>,
}

/// One replica's process, read from /proc through the PID file `scripts/cluster.sh` keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub cpu: Duration,
    pub rss_mib: u64,
    pub fds: usize,
}

impl Default for Marks {
    fn default() -> Self {
        Marks {
            at: Instant::now(),
            term: 0,
            nodes_expired: BTreeMap::new(),
            gaps: BTreeMap::new(),
            processes: BTreeMap::new(),
        }
    }
}

fn process(pid_dir: &Path, id: u64) -> Option<Process> {
    let pid = target::replica_pid(pid_dir, id).ok()?.to_string();
    Some(Process { cpu: procfs::cpu_time(&pid), rss_mib: procfs::rss_mib(&pid)?, fds: procfs::open_fds(&pid)? })
}

/// Reads the marks from every replica that answers (and its process, when `pid_dir` holds it).
pub async fn marks(urls: &[String]) -> Marks {
    let http = target::http_client(Duration::from_secs(2));
    let mut m = Marks::default();
    for status in target::cluster_statuses(&http, urls).await {
        m.record(&status);
        if let Some(p) = target::pid_dir().and_then(|dir| process(dir, status.replica_id)) {
            m.processes.insert(status.replica_id, p);
        }
    }
    m.at = Instant::now();
    m
}

/// Reads the marks once, halfway through a run of `duration`: open descriptors (mostly client
/// connections) are counted while the load is on, not after it closed them.
pub fn midway(urls: &[String], duration: Duration) -> tokio::task::JoinHandle<Marks> {
    let urls = urls.to_vec();
    tokio::spawn(async move {
        tokio::time::sleep(duration / 2).await;
        marks(&urls).await
    })
}

impl Marks {
    /// `fds_midway=<replica>:<n>,...` from marks read during the run.
    pub fn fds_line(&self) -> String {
        let fds: Vec<String> = self.processes.iter().map(|(id, p)| format!("{id}:{}", p.fds)).collect();
        format!("fds_midway={}", fds.join(","))
    }

    fn record(&mut self, status: &ClusterStatus) {
        self.term = self.term.max(status.term);
        self.nodes_expired.insert(status.replica_id, status.nodes_expired);
        if let Some(g) = &status.leader_contact_gaps {
            self.gaps.insert(status.replica_id, g.clone());
        }
    }

    /// Nodes expired between these marks and `after`, counted on a replica that answered both
    /// times (every replica applies every expiry); `None` if none did.
    pub fn expired_until(&self, after: &Marks) -> Option<u64> {
        self.nodes_expired
            .iter()
            .filter_map(|(id, before)| after.nodes_expired.get(id).and_then(|a| a.checked_sub(*before)))
            .max()
    }

    /// What changed between these marks and `after`.
    pub fn delta(&self, after: &Marks) -> Delta {
        let elapsed = after.at.saturating_duration_since(self.at).as_secs_f64().max(0.001);
        let mut d = Delta {
            term_start: self.term,
            term_end: after.term,
            nodes_expired: self.expired_until(after),
            ..Delta::default()
        };
        for (id, before) in &self.gaps {
            if let Some(g) = after.gaps.get(id).and_then(|a| gap_summary(before, a)) {
                d.leader_gaps.insert(*id, g);
            }
        }
        for (id, b) in &self.processes {
            if let Some(a) = after.processes.get(id) {
                d.cpu_pct.insert(*id, (100.0 * a.cpu.saturating_sub(b.cpu).as_secs_f64() / elapsed).round());
                d.rss_mib.insert(*id, a.rss_mib);
                d.fds.insert(*id, a.fds);
            }
        }
        d
    }

    /// `term_start=.. term_end=.. nodes_expired=.. leader_gaps=.. cpu_pct=.. rss_mib=.. fds=..`.
    pub fn line(&self, after: &Marks) -> String {
        self.delta(after).to_string()
    }
}

/// The cluster between two readings: its term (a change means an election), expiries counted
/// on a replica that answered both times (every replica applies every expiry), the gaps its
/// followers saw, and each replica process's CPU (percent of one core), memory and descriptors.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Delta {
    pub term_start: u64,
    pub term_end: u64,
    pub nodes_expired: Option<u64>,
    pub leader_gaps: BTreeMap<u64, String>,
    pub cpu_pct: BTreeMap<u64, f64>,
    pub rss_mib: BTreeMap<u64, u64>,
    pub fds: BTreeMap<u64, usize>,
}

impl std::fmt::Display for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let expired = self.nodes_expired.map(|e| e.to_string()).unwrap_or_else(|| "unknown".into());
        write!(f, "term_start={} term_end={} nodes_expired={expired}", self.term_start, self.term_end)?;
        fn each<V: std::fmt::Display>(m: &BTreeMap<u64, V>) -> String {
            m.iter().map(|(id, v)| format!("{id}:{v}")).collect::<Vec<_>>().join(",")
        }
        if !self.leader_gaps.is_empty() {
            write!(f, " leader_gaps={}", each(&self.leader_gaps))?;
        }
        if !self.cpu_pct.is_empty() {
            write!(f, " cpu_pct={} rss_mib={} fds={}", each(&self.cpu_pct), each(&self.rss_mib), each(&self.fds))?;
        }
        Ok(())
    }
}

/// The gaps one follower saw between two readings: `n=<count>/p99<=<ms>/max<=<ms>` (bucket
/// bounds; `>1000` beyond the last), or `None` when it saw none (it was the leader).
fn gap_summary(before: &ContactGaps, after: &ContactGaps) -> Option<String> {
    if before.bucket_le_ms != after.bucket_le_ms || after.counts.len() != after.bucket_le_ms.len() + 1 {
        return None;
    }
    let during: Vec<u64> = after
        .counts
        .iter()
        .zip(before.counts.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let n: u64 = during.iter().sum();
    if n == 0 {
        return None;
    }
    let bound = |i: usize| match after.bucket_le_ms.get(i) {
        Some(le) => format!("<={le}"),
        None => format!(">{}", after.bucket_le_ms.last().copied().unwrap_or(0)),
    };
    let mut seen = 0;
    let p99 = during
        .iter()
        .position(|c| {
            seen += c;
            seen * 100 >= n * 99
        })
        .unwrap_or(during.len() - 1);
    let max = during.iter().rposition(|c| *c > 0).unwrap_or(0);
    Some(format!("n={n}/p99{}/max{}", bound(p99), bound(max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(counts: &[u64]) -> ContactGaps {
        ContactGaps { bucket_le_ms: vec![50, 100, 200], counts: counts.to_vec(), max_ms: 0 }
    }

    #[test]
    fn gaps_are_those_seen_between_the_readings() {
        // 1,000 gaps during the run: 990 under 50 ms, 9 under 100, one over 200.
        let before = gaps(&[5_000, 40, 3, 2]);
        let after = gaps(&[5_990, 49, 3, 3]);
        assert_eq!(gap_summary(&before, &after).as_deref(), Some("n=1000/p99<=50/max>200"));
        // 10 gaps, 2 of them (20%) in the second bucket: p99 falls there.
        let after = gaps(&[5_008, 42, 3, 2]);
        assert_eq!(gap_summary(&before, &after).as_deref(), Some("n=10/p99<=100/max<=100"));
        assert_eq!(gap_summary(&before, &before), None, "a leader sees no gaps");
    }

    #[test]
    fn the_line_shows_an_election_and_expiries() {
        let mut before = Marks::default();
        let mut after = Marks::default();
        before.term = 3;
        after.term = 4;
        before.nodes_expired.insert(1, 10);
        after.nodes_expired.insert(1, 12);
        before.gaps.insert(2, gaps(&[0, 0, 0, 0]));
        after.gaps.insert(2, gaps(&[20, 0, 0, 0]));
        let line = before.line(&after);
        assert!(
            line.starts_with("term_start=3 term_end=4 nodes_expired=2 leader_gaps=2:n=20/p99<=50/max<=50"),
            "{line}"
        );
        assert!(!line.contains("cpu_pct"), "no processes were read: {line}");
    }
}
