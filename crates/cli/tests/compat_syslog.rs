//! Syslog over TCP and UDP: util-linux `logger` (RFC 5424 and 3164, octet counting and
//! newline framing) and Python's `logging.handlers.SysLogHandler` send messages; logpipe's
//! native query must return exactly them. Raw sockets cover NUL framing, a message ended by
//! the connection closing, and oversized frames.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn addr(s: &Server, proto: &str) -> String {
    let prefix = format!("logpipe syslog {proto} on ");
    s.printed.iter().find_map(|l| l.strip_prefix(&prefix)).expect("syslog address printed").to_string()
}

/// Syslog has no acknowledgement: wait until `n` records of `app` are there.
fn wait_for(base: &str, app: &str, n: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(base, &format!("app={app}")) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = stored(base, app);
    assert_eq!(got.len() as u64, n, "{app}: {got:?}");
    got
}

fn tags(r: &Value) -> Vec<&str> {
    r["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect()
}

fn logger(args: &[&str]) {
    let out = Command::new("logger").args(args).output().expect("util-linux logger");
    assert!(out.status.success(), "logger {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn logger_over_tcp_and_udp_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--syslog-tcp", "127.0.0.1:0", "--syslog-udp", "127.0.0.1:0"]);
    let (tcp, udp) = (addr(&s, "tcp"), addr(&s, "udp"));
    let (tcp_host, tcp_port) = tcp.rsplit_once(':').unwrap();
    let (_, udp_port) = udp.rsplit_once(':').unwrap();
    logger(&[
        "--tcp",
        "-n",
        tcp_host,
        "-P",
        tcp_port,
        "--rfc5424",
        "--octet-count",
        "-t",
        "billing",
        "-p",
        "local3.err",
        "--sd-id",
        "origin@1",
        "--sd-param",
        "ip=\"10.0.0.1\"",
        "--msgid",
        "M1",
        "rfc5424 over tcp",
    ]);
    logger(&[
        "--tcp",
        "-n",
        tcp_host,
        "-P",
        tcp_port,
        "--rfc3164",
        "-t",
        "billing",
        "-p",
        "user.warning",
        "rfc3164 over tcp",
    ]);
    logger(&[
        "--udp",
        "-n",
        tcp_host,
        "-P",
        udp_port,
        "--rfc5424",
        "-t",
        "billing",
        "-p",
        "daemon.info",
        "rfc5424 over udp",
    ]);
    logger(&[
        "--udp",
        "-n",
        tcp_host,
        "-P",
        udp_port,
        "--rfc3164",
        "-t",
        "billing",
        "-p",
        "mail.debug",
        "rfc3164 over udp",
    ]);
    let got = wait_for(&s.base, "billing", 4);
    let by_msg = |m: &str| got.iter().find(|r| r["message"] == m).unwrap_or_else(|| panic!("{m} missing: {got:?}"));
    let host = hostname();
    let r = by_msg("rfc5424 over tcp");
    let t = tags(r);
    for want in ["facility=local3", "level=err", "msgid=M1", "origin@1.ip=10.0.0.1", &format!("host={host}")] {
        assert!(t.contains(&want), "{want} not in {t:?}");
    }
    assert!(tags(by_msg("rfc3164 over tcp")).contains(&"level=warning"));
    assert!(tags(by_msg("rfc5424 over udp")).contains(&"facility=daemon"));
    assert!(tags(by_msg("rfc3164 over udp")).contains(&"facility=mail"));
    // logger stamps the time it sends: it must be within the test's minute
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for r in &got {
        let t = chrono::DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap()).unwrap().timestamp();
        assert!((now - t).abs() < 120, "{r}");
    }
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn python_syslog_handler_over_udp_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--syslog-tcp", "127.0.0.1:0", "--syslog-udp", "127.0.0.1:0"]);
    let script = r#"
import logging, logging.handlers, socket, sys
for proto, addr in (("udp", sys.argv[1]), ("tcp", sys.argv[2])):
    host, port = addr.rsplit(":", 1)
    h = logging.handlers.SysLogHandler(address=(host, int(port)),
        socktype=socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM,
        facility=logging.handlers.SysLogHandler.LOG_LOCAL0)
    h.ident = "pyapp: "
    log = logging.getLogger(proto); log.addHandler(h); log.setLevel(logging.INFO); log.propagate = False
    for i in range(50):
        log.error("python %s says %d", proto, i)
    h.close()
"#;
    let out = Command::new("python3").args(["-c", script, &addr(&s, "udp"), &addr(&s, "tcp")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = wait_for(&s.base, "pyapp", 100);
    for proto in ["udp", "tcp"] {
        for i in 0..50 {
            let m = format!("python {proto} says {i}");
            let r = got.iter().find(|r| r["message"] == m).unwrap_or_else(|| panic!("{m} missing"));
            assert_eq!(tags(r), ["facility=local0", "level=err"], "{m}");
        }
    }
}

#[test]
fn raw_framing_nul_close_and_oversized_frames() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--syslog-tcp", "127.0.0.1:0", "--syslog-max-frame-bytes", "1000"]);
    let tcp = addr(&s, "tcp");
    let mut c = std::net::TcpStream::connect(&tcp).unwrap();
    let big = "x".repeat(5000);
    let msg = format!(
        "<14>1 2025-03-01T12:00:00Z h raw - - - first\0<14>Mar  1 12:00:01 h raw: second\n<14>1 2025-03-01T12:00:02Z h raw - - - {big}\n<14>1 2025-03-01T12:00:03Z h raw - - - after the big one\n<14>1 2025-03-01T12:00:04Z h raw - - - ended by close"
    );
    c.write_all(msg.as_bytes()).unwrap();
    drop(c);
    let got = wait_for(&s.base, "raw", 4);
    let mut msgs: Vec<&str> = got.iter().map(|r| r["message"].as_str().unwrap()).collect();
    msgs.sort_unstable();
    assert_eq!(msgs, ["after the big one", "ended by close", "first", "second"]);
    // RFC 3164 has no year: the one that puts it most recently in the past
    let second = got.iter().find(|r| r["message"] == "second").unwrap();
    assert_eq!(second["timestamp"].as_str().unwrap()[5..], *"03-01T12:00:01.000000000Z");
    // an octet count over the limit ends the connection; the server goes on
    let mut c = std::net::TcpStream::connect(&tcp).unwrap();
    c.write_all(b"99999 <14>1 - h raw - - - never").unwrap();
    drop(c);
    let mut c = std::net::TcpStream::connect(&tcp).unwrap();
    c.write_all(b"27 <14>1 - h raw - - - counted").unwrap();
    drop(c);
    let got = wait_for(&s.base, "raw", 5);
    assert!(got.iter().any(|r| r["message"] == "counted"));
    assert!(
        metric(&s.base, "logpipe_rejected_requests_total{endpoint=\"syslog\",reason=\"frame_too_large\"}").unwrap_or(0)
            >= 2
    );
}

#[test]
fn an_app_over_its_rate_limit_is_dropped_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--syslog-tcp", "127.0.0.1:0", "--app-records-per-second", "50"]);
    let tcp = addr(&s, "tcp");
    // one connection carrying two apps, as from a forwarding rsyslog: 1,000 lines of `flood`
    // and 20 of `calm` among them
    let mut c = std::net::TcpStream::connect(&tcp).unwrap();
    let mut out = String::new();
    for i in 0..1000 {
        out.push_str(&format!("<14>1 2026-01-01T00:00:00Z h flood - - - flood line {i}\n"));
        if i % 50 == 0 {
            out.push_str(&format!("<14>1 2026-01-01T00:00:00Z h calm - - - calm line {}\n", i / 50));
        }
    }
    c.write_all(out.as_bytes()).unwrap();
    drop(c);
    let calm = wait_for(&s.base, "calm", 20);
    assert_eq!(calm.len(), 20, "the calm app loses nothing");
    // the flooding app got its second's worth, the rest was dropped and counted
    let deadline = Instant::now() + Duration::from_secs(10);
    let dropped = loop {
        let dropped =
            metric(&s.base, "logpipe_rejected_requests_total{endpoint=\"syslog\",reason=\"app_rate_limited\"}");
        let stored = count(&s.base, "app=flood");
        if dropped.unwrap_or(0) + stored == 1000 {
            break dropped.unwrap();
        }
        assert!(Instant::now() < deadline, "flood: {stored} stored, {dropped:?} dropped");
        std::thread::sleep(Duration::from_millis(50));
    };
    // 50 a second, and the whole exchange takes well under two seconds
    assert!(1000 - dropped <= 200, "{} of the flooding app's 1000 lines stored", 1000 - dropped);
}
