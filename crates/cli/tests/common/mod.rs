//! A real `logpipe serve` process on 127.0.0.1:0 and a small HTTP client for tests.
#![allow(dead_code)]

pub mod nats;
pub mod seaweed;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    /// Lines printed before the listening line (the syslog addresses).
    pub printed: Vec<String>,
}

impl Server {
    /// Starts the server on a free port with `data_dir` and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::ready(Server::spawn(data_dir, extra))
    }

    /// [`Server::start`] with environment variables set for the process.
    pub fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::ready(Server::spawn_with(data_dir, extra, |cmd| {
            cmd.envs(env.iter().copied());
        }))
    }

    /// [`Server::start`] with the process's open-file limit (soft and hard) set to `nofile`.
    pub fn start_with_nofile(data_dir: &Path, extra: &[&str], nofile: u64) -> Server {
        Server::ready(Server::spawn_with(data_dir, extra, |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit(2) is async-signal-safe; the closure touches nothing else.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }))
    }

    /// Waits until `s` is ready.
    fn ready(s: Server) -> Server {
        assert!(s.base.starts_with("http://127.0.0.1:"), "unexpected address {}", s.base);
        let deadline = Instant::now() + Duration::from_secs(90);
        while get(&s.base, "/ready").0 != 200 {
            assert!(Instant::now() < deadline, "server not ready in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// Starts the server on a free port with `data_dir` and returns once it is listening (its
    /// base URL printed), without waiting for readiness.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> Server {
        Server::spawn_with(data_dir, extra, |_| {})
    }

    fn spawn_with(data_dir: &Path, extra: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logpipe"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn logpipe");
        // the listening line comes last; syslog addresses, if any, before it
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut before = Vec::new();
        let base = loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "the server exited before listening");
            match line.trim().strip_prefix("logpipe listening on ") {
                Some(base) => break base.to_string(),
                None => before.push(line.trim().to_string()),
            }
        };
        assert!(base.contains("://127.0.0.1:"), "unexpected address {base:?}");
        Server { child, base, data_dir: data_dir.to_path_buf(), printed: before }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }

    /// CPU time the server process has used so far (user + system), from /proc.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // fields after the parenthesised command name; utime and stime are the 14th and 15th
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        #[allow(unsafe_code)]
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn crash(mut self) {
        self.signal(libc::SIGKILL);
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

fn finish(r: Result<ureq::Response, ureq::Error>) -> (u16, String, Option<String>) {
    finish_with(r, "logpipe-next-cursor")
}

/// Status, body and the value of `header`.
fn finish_with(r: Result<ureq::Response, ureq::Error>, header: &str) -> (u16, String, Option<String>) {
    match r {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => {
            let status = resp.status();
            let cursor = resp.header(header).map(str::to_owned);
            let mut body = String::new();
            resp.into_reader().read_to_string(&mut body).unwrap();
            (status, body, cursor)
        }
        Err(e) => panic!("transport error: {e}"),
    }
}

/// GET `path` (with its query string): status, body and the next-page cursor header.
pub fn get(base: &str, path: &str) -> (u16, String, Option<String>) {
    finish(agent().get(&format!("{base}{path}")).call())
}

/// GET `path` with a bearer token (none: no `Authorization`): status and body.
pub fn get_as(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = agent().get(&format!("{base}{path}"));
    if let Some(t) = token {
        req = req.set("authorization", &format!("Bearer {t}"));
    }
    let (s, b, _) = finish(req.call());
    (s, b)
}

/// POST NDJSON to `/api/v1/logs` with a bearer token: status and body.
pub fn ingest_as(base: &str, ndjson: &str, token: Option<&str>) -> (u16, String) {
    let mut req = agent().post(&format!("{base}/api/v1/logs")).set("content-type", "application/x-ndjson");
    if let Some(t) = token {
        req = req.set("authorization", &format!("Bearer {t}"));
    }
    let (s, b, _) = finish(req.send_string(ndjson));
    (s, b)
}

/// GET `path` sending `Accept: accept`: status, body and the content type.
pub fn get_accepting(base: &str, path: &str, accept: &str) -> (u16, String, Option<String>) {
    finish_with(agent().get(&format!("{base}{path}")).set("accept", accept).call(), "content-type")
}

/// GET `path`: status, body and the value of `header`.
pub fn get_header(base: &str, path: &str, header: &str) -> (u16, String, Option<String>) {
    finish_with(agent().get(&format!("{base}{path}")).call(), header)
}

pub fn get_json(base: &str, path: &str) -> serde_json::Value {
    let (status, body, _) = get(base, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub fn count(base: &str, query: &str) -> u64 {
    get_json(base, &format!("/api/v1/count?{query}"))["count"].as_u64().unwrap()
}

/// POST raw bytes with extra headers: status and body.
pub fn post(base: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
    send("POST", base, path, body, headers)
}

/// PUT raw bytes with extra headers: status and body.
pub fn put(base: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
    send("PUT", base, path, body, headers)
}

/// HEAD `path`: status and the value of `header`.
pub fn head(base: &str, path: &str, header: &str) -> (u16, Option<String>) {
    let (s, _, h) = finish_with(agent().head(&format!("{base}{path}")).call(), header);
    (s, h)
}

fn send(method: &str, base: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent().request(method, &format!("{base}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let (s, b, _) = finish(req.send_bytes(body));
    (s, b)
}

/// Ingest, also returning the `Retry-After` header.
pub fn ingest_retry_after(base: &str, ndjson: &str) -> (u16, String, Option<String>) {
    let req = agent().post(&format!("{base}/api/v1/logs")).set("content-type", "application/x-ndjson");
    finish_with(req.send_string(ndjson), "retry-after")
}

/// Ingest that may meet a dead server: `None` on a transport error.
pub fn try_ingest(base: &str, ndjson: &str) -> Option<u16> {
    let req = agent().post(&format!("{base}/api/v1/logs")).set("content-type", "application/x-ndjson");
    match req.send_string(ndjson) {
        Ok(resp) => Some(resp.status()),
        Err(ureq::Error::Status(code, _)) => Some(code),
        Err(_) => None,
    }
}

pub fn ingest(base: &str, ndjson: &str) -> (u16, String) {
    post(base, "/api/v1/logs", ndjson.as_bytes(), &[("content-type", "application/x-ndjson")])
}

/// The value of an unlabelled metric on `/metrics`.
pub fn metric(base: &str, name: &str) -> Option<u64> {
    let text = get(base, "/metrics").1;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok()).map(|v| v as u64)
}

/// Query-string escaping.
pub fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn ndjson(lines: &[serde_json::Value]) -> String {
    lines.iter().map(|v| v.to_string() + "\n").collect()
}

/// Every record of `app`, oldest first (one page of up to 10,000), read with `token` if any.
pub fn stored_as(base: &str, app: &str, token: Option<&str>) -> Vec<serde_json::Value> {
    let (status, body) = get_as(base, &format!("/api/v1/logs?app={app}&limit=10000&order=asc"), token);
    assert_eq!(status, 200, "{body}");
    body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every record of `app`, oldest first (one page of up to 10,000).
pub fn stored(base: &str, app: &str) -> Vec<serde_json::Value> {
    stored_as(base, app, None)
}

/// Runs `tests/clients/node/SCRIPT ARGS` (a real npm client, installed by `.ci/run` with
/// `npm ci --prefix tests/clients/node`) and parses the JSON line it prints.
pub fn node(script: &str, args: &[&str]) -> serde_json::Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/node");
    assert!(
        Path::new(dir).join("node_modules").exists(),
        "the npm clients are not installed: npm ci --prefix tests/clients/node"
    );
    let out = Command::new("node").current_dir(dir).arg(script).args(args).output().expect("node");
    assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `words` × 16 pseudo-random hex digits from the xorshift state `x`: message text that does not
/// compress, for tests that must fill a disk.
pub fn noise(x: &mut u64, words: usize) -> String {
    (0..words)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            format!("{:016x}", *x)
        })
        .collect()
}
