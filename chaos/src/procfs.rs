//! CPU time and resident memory of a process, from /proc (Linux): the bench's own share of
//! the machine, and each controller replica's.

use std::time::Duration;

/// CPU time (user + system) the process (`"self"` or a PID) used so far; zero if unreadable.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    // Linux reports them in USER_HZ, 100 on every platform it runs on.
    let tick = Duration::from_secs(1) / 100;
    tick * (ticks(11) + ticks(12)) as u32
}

/// Whether the process exists and has not finished exiting. Its main thread turns zombie
/// first; the process's files (its listening socket) are released only when the last of its
/// other threads has gone too.
pub fn alive(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
    !rest.starts_with('Z') || threads > 1
}

/// Resident memory in MiB (`VmRSS`), if the process exists.
pub fn rss_mib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024)
}

/// Open file descriptors (sockets included), if the process exists.
pub fn open_fds(pid: &str) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measurable() {
        // Burn a little CPU so the counter moves past one tick.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(cpu_time("self") > Duration::ZERO);
        assert!(rss_mib("self").is_some());
        assert!(open_fds("self").is_some_and(|n| n >= 3));
        assert_eq!(rss_mib("0"), None, "PID 0 has no /proc entry");
        assert!(alive("self") && !alive("0"));
    }
}
