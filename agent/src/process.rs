//! Everything OS-specific about running an instance (Linux): its own process group, output to
//! files, signals to the whole group, free ports.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Starts `program` in a process group of its own, stdout and stderr appended to
/// `{log_dir}/{name}.out` / `.err`.
pub fn spawn(
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    log_dir: &Path,
    name: &str,
) -> std::io::Result<Child> {
    std::fs::create_dir_all(log_dir)?;
    let open =
        |ext: &str| std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("{name}.{ext}")));
    let mut command = Command::new(program);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    command
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(open("out")?)
        .stderr(open("err")?)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
}

/// An instance's process: started by this run of the agent, or adopted from a previous run
/// (then it is not our child: it is watched through /proc and signalled by process group).
pub enum Proc {
    Child(Child),
    Adopted { pid: u32, started: u64 },
}

impl Proc {
    pub fn id(&self) -> Option<u32> {
        match self {
            Proc::Child(c) => c.id(),
            Proc::Adopted { pid, .. } => Some(*pid),
        }
    }

    /// Resolves when the process ends, with its exit code when known.
    pub async fn wait(&mut self) -> Option<i32> {
        match self {
            Proc::Child(c) => c.wait().await.ok().and_then(|s| s.code()),
            Proc::Adopted { pid, started } => {
                while start_time(*pid) == Some(*started) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None
            }
        }
    }

    /// SIGTERM to the group, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        match self {
            Proc::Child(c) => {
                stop(c, grace).await;
            }
            Proc::Adopted { pid, .. } => stop_group(*pid, grace).await,
        }
    }
}

/// When the process started (clock ticks since boot, field 22 of /proc/PID/stat): with the
/// pid, it tells a process apart from a later one that reuses the pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Output files grow to this size, then rotate.
const LOG_LIMIT: u64 = 10 * 1024 * 1024;
/// Rotated files kept: `.1` (newest) .. `.N`.
const LOGS_KEPT: u32 = 3;

/// Rotates `{log_dir}/{name}.out` / `.err` that grew past the limit: copy, then truncate in
/// place (the instance writes with O_APPEND, so it goes on at the start of the emptied file,
/// and nothing needs to pass through the agent, which may restart while the instance runs).
pub fn rotate_logs(log_dir: &Path, name: &str) {
    for ext in ["out", "err"] {
        let path = log_dir.join(format!("{name}.{ext}"));
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) <= LOG_LIMIT {
            continue;
        }
        for n in (1..LOGS_KEPT).rev() {
            let _ = std::fs::rename(
                log_dir.join(format!("{name}.{ext}.{n}")),
                log_dir.join(format!("{name}.{ext}.{}", n + 1)),
            );
        }
        if std::fs::copy(&path, log_dir.join(format!("{name}.{ext}.1"))).is_ok()
            && let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path)
        {
            let _ = f.set_len(0);
        }
    }
}

/// Sends `signal` to the process group led by `pid`.
fn signal_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the group; no memory is involved.
    unsafe { libc::kill(-(pid as i32), signal) };
}

/// SIGTERM to the group, then SIGKILL after `grace` if it is still running.
pub async fn stop(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id()?;
    signal_group(pid, libc::SIGTERM);
    if let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await {
        return Some(status);
    }
    signal_group(pid, libc::SIGKILL);
    child.wait().await.ok()
}

/// Stops a process group this agent did not spawn in this run (no child handle): SIGTERM,
/// then SIGKILL after `grace` if the leader is still alive.
pub async fn stop_group(pid: u32, grace: Duration) {
    let alive = |pid: u32| {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as i32, 0) == 0 }
    };
    if !alive(pid) {
        return;
    }
    signal_group(pid, libc::SIGTERM);
    let deadline = std::time::Instant::now() + grace;
    while alive(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_group(pid, libc::SIGKILL);
}

/// A TCP port free on loopback right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_limit_rotates_and_old_files_shift() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("i.out");
        std::fs::write(&out, vec![b'a'; LOG_LIMIT as usize + 1]).unwrap();
        std::fs::write(dir.path().join("i.out.1"), b"older").unwrap();
        rotate_logs(dir.path(), "i");
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(dir.path().join("i.out.1")).unwrap().len(), LOG_LIMIT + 1);
        assert_eq!(std::fs::read(dir.path().join("i.out.2")).unwrap(), b"older");
        // Small files stay as they are.
        std::fs::write(&out, b"small").unwrap();
        rotate_logs(dir.path(), "i");
        assert_eq!(std::fs::read(&out).unwrap(), b"small");
    }
}
