//! A real etcd cluster for the fleet tests: `etcd` members on loopback
//! ports, data in a temporary directory, killed and restarted at will.
//! Without the `etcd` binary the tests say "skipped: etcd missing",
//! unless CI is set: then they fail.

use crate::daemon::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Member {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    root: PathBuf,
    initial: String,
}

/// Whether `etcd` is installed; if not, says so (or fails under CI).
pub fn have_etcd(test: &str) -> bool {
    let ok = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd missing under CI (scripts/test.sh installs etcd-server): {test}"
        );
        eprintln!("skipped: etcd missing (apt-get install etcd-server): {test}");
    }
    ok
}

impl Cluster {
    /// A cluster of `n` members, up and answering; `None` when etcd is
    /// missing (see [`have_etcd`]).
    pub fn start(n: usize, test: &str) -> Option<Cluster> {
        if !have_etcd(test) {
            return None;
        }
        let root = std::env::temp_dir().join(format!("sluice-fleet-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                dir: root.join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            members,
            root,
            initial,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_ready();
        Some(c)
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::File::create(self.root.join(format!("{}.log", m.name))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client_port),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client_port),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer_port),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer_port),
                "--initial-cluster",
                &self.initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &format!("sluice-{}", std::process::id()),
                // Elections in ~0.5 s rather than ~1 s: the tests kill leaders.
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
                "--log-level",
                "error",
                // The data is thrown away with the test.
                "--unsafe-no-fsync",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i].child = Some(child);
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Waits until a write through every live member succeeds.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let ep = vec![format!("http://127.0.0.1:{}", m.client_port)];
            loop {
                let ok = api::fleet::admin::Store::connect(&ep)
                    .and_then(|mut s| s.put_raw("/sluice-test/ready", "1"))
                    .is_ok();
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "etcd member {i} did not come up");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed member again on its data (it rejoins).
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// The member that leads now, by index.
    pub fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let ep = vec![format!("http://127.0.0.1:{}", m.client_port)];
            let Ok(mut s) = api::fleet::admin::Store::connect(&ep) else {
                continue;
            };
            let Some((me, leader)) = s.member_and_leader() else {
                continue;
            };
            if me == leader {
                return self.members.iter().position(|x| x.name == m.name);
            }
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
