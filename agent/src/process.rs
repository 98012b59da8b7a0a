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
