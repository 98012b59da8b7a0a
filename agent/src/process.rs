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
    program: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    log_dir: &Path,
    name: &str,
) -> std::io::Result<Child> {
    std::fs::create_dir_all(log_dir)?;
    let open =
        |ext: &str| std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("{name}.{ext}")));
    Command::new(program)
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
