//! rsyslog, the system logger most Linux hosts already run, forwarding to logpipe two ways at
//! once: `omelasticsearch` (Debian `rsyslog-elasticsearch`, bulk mode) to `/_bulk`, and `omfwd`
//! over TCP (RFC 5424, octet-counted) to the syslog listener. It reads the lines from a file
//! (`imfile`) as it would tail an application's log. Needs `rsyslogd` (`.ci/run` installs it).

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn messages(base: &str, app: &str) -> BTreeSet<String> {
    stored(base, app).iter().map(|r| r["message"].as_str().unwrap().to_string()).collect()
}

#[test]
fn rsyslog_forwards_through_omelasticsearch_and_omfwd() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &["--syslog-tcp", "127.0.0.1:0"]);
    let syslog = s.printed.iter().find_map(|l| l.strip_prefix("logpipe syslog tcp on ")).unwrap().to_string();
    let (host, port) = syslog.rsplit_once(':').unwrap();
    let http_port = s.base.rsplit_once(':').unwrap().1;
    let work = dir.path().join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let input = work.join("app.log");
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
global(workDirectory="{work}")
module(load="imfile")
module(load="omelasticsearch")
input(type="imfile" File="{input}" Tag="checkout" Ruleset="out")
template(name="es" type="list" option.json="on") {{
  constant(value="{{\"@timestamp\":\"") property(name="timereported" dateFormat="rfc3339")
  constant(value="\",\"message\":\"") property(name="msg")
  constant(value="\",\"program\":\"") property(name="programname")
  constant(value="\"}}")
}}
ruleset(name="out") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{http_port}" searchIndex="rsyslog-es"
         template="es" bulkmode="on" esVersion.major="8" errorFile="{work}/es-errors.json")
  action(type="omfwd" target="{host}" port="{port}" protocol="tcp" TCP_Framing="octet-counted"
         template="RSYSLOG_SyslogProtocol23Format")
}}
"#,
            work = work.display(),
            input = input.display(),
        ),
    )
    .unwrap();
    let rsyslogd = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rsyslogd (apt-get install rsyslog rsyslog-elasticsearch)");
    let _guard = Rsyslog(rsyslogd);

    let want: BTreeSet<String> = (0..50).map(|i| format!("order {i} shipped")).collect();
    let lines: String = (0..50).map(|i| format!("order {i} shipped\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(&s.base, "rsyslog-es").len() < 50 || messages(&s.base, "checkout").len() < 50 {
        assert!(Instant::now() < deadline, "rsyslog did not deliver all 50 lines both ways");
        std::thread::sleep(Duration::from_millis(200));
    }
    // omelasticsearch: the index is the app, the template's fields tags
    assert_eq!(messages(&s.base, "rsyslog-es"), want);
    for r in stored(&s.base, "rsyslog-es") {
        assert_eq!(r["tags"], serde_json::json!(["program=checkout"]));
    }
    // omfwd: the tag is the app, facility and severity as imfile sets them (local0.notice)
    assert_eq!(messages(&s.base, "checkout"), want);
    for r in stored(&s.base, "checkout") {
        let tags: Vec<&str> = r["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert!(tags.contains(&"facility=local0") && tags.contains(&"level=notice"), "{tags:?}");
        assert!(tags.iter().any(|t| t.starts_with("host=")), "{tags:?}");
    }
    assert!(!work.join("es-errors.json").exists(), "omelasticsearch logged errors");
}
