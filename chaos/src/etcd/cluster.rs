//! A 3-member etcd cluster of this process's own on loopback: its data and logs in a fresh
//! directory, its members this process's children. Only those children are ever signalled,
//! by their PIDs; dropping the [`Cluster`] (an error, a panic, an interrupted run) kills the
//! ones still running, and each member also dies with this process (`PR_SET_PDEATHSIG`).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::EtcdError;
use super::gateway::{self, Status};

/// Members of the cluster, named `m1`, `m2`, `m3`.
pub const MEMBERS: usize = 3;
/// How long a SIGKILLed member may take to be gone.
const REAP_BOUND: Duration = Duration::from_secs(5);
/// Between two looks at the members' status.
const POLL: Duration = Duration::from_millis(50);

/// How the cluster runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The etcd binary.
    pub binary: PathBuf,
    /// Member `n` serves clients on `base_port + 2(n - 1)`, its peers on the port after.
    pub base_port: u16,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// etcd's `--pre-vote` (off by default in 3.4).
    pub pre_vote: bool,
    /// Where the cluster's own directory is made.
    pub parent_dir: PathBuf,
}

impl Settings {
    pub fn client_port(&self, n: usize) -> u16 {
        self.base_port + 2 * (n as u16 - 1)
    }

    pub fn peer_port(&self, n: usize) -> u16 {
        self.client_port(n) + 1
    }

    /// Every port the members use fits below 65536.
    fn check_ports(&self) -> Result<(), EtcdError> {
        let (first, last) = (self.base_port as u32, self.base_port as u32 + 2 * MEMBERS as u32 - 1);
        if last > u16::MAX as u32 { Err(EtcdError::Ports { first, last }) } else { Ok(()) }
    }
}

/// etcd's flags for member `n` (1-based) of the cluster in `dir`.
pub fn member_args(s: &Settings, dir: &Path, token: &str, n: usize) -> Vec<String> {
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let (client, peer) = (url(s.client_port(n)), url(s.peer_port(n)));
    let initial: Vec<String> = (1..=MEMBERS).map(|m| format!("m{m}={}", url(s.peer_port(m)))).collect();
    let mut args: Vec<String> = [
        ("--name", format!("m{n}")),
        ("--data-dir", dir.join(format!("m{n}.etcd")).display().to_string()),
        ("--listen-client-urls", client.clone()),
        ("--advertise-client-urls", client),
        ("--listen-peer-urls", peer.clone()),
        ("--initial-advertise-peer-urls", peer),
        ("--initial-cluster", initial.join(",")),
        ("--initial-cluster-state", "new".into()),
        ("--initial-cluster-token", token.into()),
        ("--heartbeat-interval", s.heartbeat_ms.to_string()),
        ("--election-timeout", s.election_ms.to_string()),
        ("--logger", "zap".into()),
        ("--log-outputs", "stderr".into()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect();
    if s.pre_vote {
        args.push("--pre-vote".into());
    }
    args
}

/// The member (1-based) all of `statuses` name as leader, when every member answered, they
/// agree on a leader that is one of them, and each has applied the same, committed index.
pub fn healthy_leader(statuses: &[Option<Status>]) -> Option<usize> {
    let all: Vec<Status> = statuses.iter().copied().collect::<Option<_>>()?;
    let first = all.first()?;
    let agreed = first.leader != 0
        && all.iter().all(|s| s.leader == first.leader && s.raft_index == first.raft_index)
        && all.iter().all(|s| s.applied_index == s.raft_index);
    Some(all.iter().position(|s| s.member_id == first.leader)? + 1).filter(|_| agreed)
}

/// `m1: leader=… term=… index=… applied=…; m2: <error>; …` for an error message.
fn describe(statuses: &[Result<Status, EtcdError>]) -> String {
    let one = |(i, s): (usize, &Result<Status, EtcdError>)| match s {
        Ok(s) => format!(
            "m{}: id={:x} leader={:x} term={} index={} applied={}",
            i + 1,
            s.member_id,
            s.leader,
            s.raft_term,
            s.raft_index,
            s.applied_index
        ),
        Err(e) => format!("m{}: {e}", i + 1),
    };
    statuses.iter().enumerate().map(one).collect::<Vec<_>>().join("; ")
}

/// The cluster's members, running or not, and its directory.
pub struct Cluster {
    settings: Settings,
    dir: PathBuf,
    token: String,
    /// Each member's process while it runs (index `n - 1`).
    children: Vec<Option<Child>>,
    /// Each member's id, once it has told it.
    ids: Vec<Option<u64>>,
    keep: bool,
}

impl Cluster {
    /// Makes the cluster's directory and starts its members (not waiting for them).
    pub fn start(settings: &Settings) -> Result<Cluster, EtcdError> {
        settings.check_ports()?;
        for n in 1..=MEMBERS {
            for port in [settings.client_port(n), settings.peer_port(n)] {
                std::net::TcpListener::bind(("127.0.0.1", port))
                    .map_err(|source| EtcdError::PortInUse { port, source })?;
            }
        }
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let dir = settings.parent_dir.join(format!("plum-bench-etcd-{}-{}", std::process::id(), stamp.as_millis()));
        std::fs::create_dir(&dir).map_err(|source| EtcdError::Files { what: "create", path: dir.clone(), source })?;
        let mut cluster = Cluster {
            settings: settings.clone(),
            dir,
            token: format!("plum-bench-{}", std::process::id()),
            children: (0..MEMBERS).map(|_| None).collect(),
            ids: vec![None; MEMBERS],
            keep: false,
        };
        for n in 1..=MEMBERS {
            cluster.spawn(n)?;
        }
        Ok(cluster)
    }

    pub fn client_urls(&self) -> Vec<String> {
        (1..=MEMBERS).map(|n| format!("http://127.0.0.1:{}", self.settings.client_port(n))).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps the directory (data and logs) when the cluster is dropped: a run that failed.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("m{n}.log"))
    }

    /// Member `n`'s log so far (empty if unreadable).
    pub fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// Starts member `n` (its earlier data, if any, is its state), logging to `m{n}.log`.
    fn spawn(&mut self, n: usize) -> Result<(), EtcdError> {
        let path = self.log_path(n);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|source| EtcdError::Files { what: "open", path, source })?;
        let mut cmd = Command::new(&self.settings.binary);
        cmd.args(member_args(&self.settings, &self.dir, &self.token, n))
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| EtcdError::Spawn { binary: self.settings.binary.clone(), source })?;
        self.children[n - 1] = Some(child);
        Ok(())
    }

    /// SIGKILLs member `n` (by the PID of the child this cluster started); returns at once.
    pub fn kill(&mut self, n: usize) -> Result<(), EtcdError> {
        let child = self.children[n - 1].as_mut();
        let pid = child.as_ref().map_or(0, |c| c.id());
        let killed = child.map_or_else(|| Err(io::Error::other("not running")), Child::kill);
        killed.map_err(|source| EtcdError::Kill { member: n, pid, source })
    }

    /// Waits (bounded) until the killed member `n` is gone, and collects its exit.
    async fn reap(&mut self, n: usize) -> Result<(), EtcdError> {
        let deadline = Instant::now() + REAP_BOUND;
        while let Some(child) = self.children[n - 1].as_mut() {
            let pid = child.id();
            if child.try_wait().map_err(|source| EtcdError::Kill { member: n, pid, source })?.is_some() {
                self.children[n - 1] = None;
            } else if Instant::now() > deadline {
                return Err(EtcdError::NotDead { member: n, pid, bound: REAP_BOUND });
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    /// Restarts the killed member `n` on its own data.
    pub async fn restart(&mut self, n: usize) -> Result<(), EtcdError> {
        self.reap(n).await?;
        self.spawn(n)
    }

    /// Fails if a member this cluster runs has exited by itself (a port taken, a bad flag).
    fn check_running(&mut self) -> Result<(), EtcdError> {
        for n in 1..=MEMBERS {
            let Some(child) = self.children[n - 1].as_mut() else { continue };
            let pid = child.id();
            if let Ok(Some(status)) = child.try_wait() {
                self.children[n - 1] = None;
                let (log, tail) = (self.log_path(n), self.log(n));
                let tail = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>();
                return Err(EtcdError::Exited { member: n, pid, status, log, tail: tail.join("\n") });
            }
        }
        Ok(())
    }

    /// Every member's status, asked at once; remembers the members' ids.
    async fn statuses(&mut self, http: &reqwest::Client) -> Vec<Result<Status, EtcdError>> {
        let urls = self.client_urls();
        let statuses = futures::future::join_all(urls.iter().map(|url| gateway::status(http, url))).await;
        for (id, s) in self.ids.iter_mut().zip(&statuses) {
            if let Ok(s) = s {
                *id = Some(s.member_id);
            }
        }
        statuses
    }

    /// Waits (up to `bound`) until every member answers, they agree on a leader, and each has
    /// applied what was committed; returns the leader (1-based).
    pub async fn wait_healthy(&mut self, http: &reqwest::Client, bound: Duration) -> Result<usize, EtcdError> {
        let deadline = Instant::now() + bound;
        loop {
            self.check_running()?;
            let statuses = self.statuses(http).await;
            let known: Vec<Option<Status>> = statuses.iter().map(|s| s.as_ref().ok().copied()).collect();
            if let Some(leader) = healthy_leader(&known) {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                return Err(EtcdError::NoLeader { bound, seen: describe(&statuses) });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The member (1-based) the first member that answers names as leader, if any.
    pub async fn leader(&mut self, http: &reqwest::Client) -> Option<usize> {
        let leader = self.statuses(http).await.into_iter().filter_map(Result::ok).find(|s| s.leader != 0)?.leader;
        self.ids.iter().position(|id| *id == Some(leader)).map(|i| i + 1)
    }
}

impl Drop for Cluster {
    /// Kills (by PID) and collects every member still running; removes the directory unless
    /// it is to be kept (or a panic is unwinding).
    fn drop(&mut self) {
        for mut child in self.children.iter_mut().filter_map(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.keep || std::thread::panicking() {
            eprintln!("etcd: the members' data and logs are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Has the kernel SIGKILL the child when the thread that started it exits (this process dies
/// without running [`Cluster`]'s drop: SIGKILL, abort). Members are started from the task
/// that owns the cluster, which runs on the runtime's main thread or one of its workers: both
/// live as long as the process.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the child only makes async-signal-safe calls (prctl,
    // getppid, _exit) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody will kill this member.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            binary: "etcd".into(),
            base_port: 23790,
            heartbeat_ms: 50,
            election_ms: 250,
            pre_vote: false,
            parent_dir: "/tmp".into(),
        }
    }

    #[test]
    fn members_get_their_own_ports_and_the_whole_cluster() {
        let args = member_args(&settings(), Path::new("/tmp/c"), "tok", 2);
        let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].as_str());
        assert_eq!(flag("--name"), Some("m2"));
        assert_eq!(flag("--data-dir"), Some("/tmp/c/m2.etcd"));
        assert_eq!(flag("--listen-client-urls"), Some("http://127.0.0.1:23792"));
        assert_eq!(flag("--listen-peer-urls"), Some("http://127.0.0.1:23793"));
        assert_eq!(
            flag("--initial-cluster"),
            Some("m1=http://127.0.0.1:23791,m2=http://127.0.0.1:23793,m3=http://127.0.0.1:23795")
        );
        assert_eq!((flag("--heartbeat-interval"), flag("--election-timeout")), (Some("50"), Some("250")));
        assert!(!args.contains(&"--pre-vote".to_string()));
        let pre_vote = member_args(&Settings { pre_vote: true, ..settings() }, Path::new("/tmp/c"), "tok", 1);
        assert_eq!(pre_vote.last().map(String::as_str), Some("--pre-vote"));
    }

    #[test]
    fn ports_must_fit() {
        assert!(settings().check_ports().is_ok());
        let high = Settings { base_port: 65531, ..settings() };
        assert!(matches!(high.check_ports(), Err(EtcdError::Ports { first: 65531, last: 65536 })));
    }

    fn status(member_id: u64, leader: u64, index: u64, applied: u64) -> Option<Status> {
        Some(Status { member_id, leader, raft_term: 2, raft_index: index, applied_index: applied })
    }

    #[test]
    fn a_leader_is_healthy_when_all_agree_and_applied_everything() {
        let all = [status(11, 22, 9, 9), status(22, 22, 9, 9), status(33, 22, 9, 9)];
        assert_eq!(healthy_leader(&all), Some(2));
        // One member down, one behind, one disagreeing, none knowing a leader, a stranger as leader.
        assert_eq!(healthy_leader(&[all[0], None, all[2]]), None);
        assert_eq!(healthy_leader(&[all[0], all[1], status(33, 22, 7, 7)]), None);
        assert_eq!(healthy_leader(&[all[0], all[1], status(33, 22, 9, 8)]), None);
        assert_eq!(healthy_leader(&[all[0], all[1], status(33, 33, 9, 9)]), None);
        assert_eq!(healthy_leader(&[status(11, 0, 9, 9), status(22, 0, 9, 9), status(33, 0, 9, 9)]), None);
        assert_eq!(healthy_leader(&[status(11, 44, 9, 9), status(22, 44, 9, 9), status(33, 44, 9, 9)]), None);
        assert_eq!(healthy_leader(&[]), None);
    }
}
