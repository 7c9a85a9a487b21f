//! `logpipe query` and `logpipe ingest`: thin HTTP clients of a running server.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

const DEFAULT_SERVER: &str = "http://127.0.0.1:7171";

/// How the client commands reach a server.
#[derive(Args)]
pub struct Conn {
    /// Server base URL (http:// or https://).
    #[arg(long, default_value = DEFAULT_SERVER, env = "LOGPIPE_SERVER")]
    server: String,
    /// Bearer token, when the server has tokens configured.
    #[arg(long, env = "LOGPIPE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificate(s) to trust for an https server instead of the public roots (e.g. its
    /// self-signed certificate).
    #[arg(long, env = "LOGPIPE_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("server", &self.server).field("ca_cert", &self.ca_cert).finish_non_exhaustive()
    }
}

impl Conn {
    /// An agent with `read_timeout` (none: the whole request may take up to 10 minutes).
    fn agent(&self, read_timeout: Option<Duration>) -> Result<ureq::Agent> {
        let mut b = ureq::AgentBuilder::new();
        b = match read_timeout {
            Some(t) => b.timeout_read(t),
            None => b.timeout(Duration::from_secs(600)),
        };
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(cert.with_context(|| format!("{}: not PEM certificates", path.display()))?)?;
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            b = b.tls_config(std::sync::Arc::new(cfg));
        }
        Ok(b.build())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    fn authorize(&self, req: ureq::Request) -> ureq::Request {
        match &self.token {
            Some(t) => req.set("authorization", &format!("Bearer {t}")),
            None => req,
        }
    }
}

/// The filters shared by `logpipe query` and `logpipe tail`.
#[derive(Args, Debug)]
pub struct FilterArgs {
    /// A query in the query language (docs/QUERY.md), ANDed with the filter options.
    query: Option<String>,
    #[command(flatten)]
    conn: Conn,
    /// Application; repeatable (none: all apps).
    #[arg(long)]
    app: Vec<String>,
    /// Start of the time range (RFC 3339 or ns), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// End of the time range (RFC 3339 or ns), exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Tag the record must have; repeatable (all must match).
    #[arg(long)]
    tag: Vec<String>,
    /// Tags of which the record must have at least one; repeatable.
    #[arg(long)]
    any: Vec<String>,
    /// Tag the record must not have; repeatable.
    #[arg(long)]
    not: Vec<String>,
    /// Case-sensitive substring of the message.
    #[arg(long)]
    contains: Option<String>,
    /// Case-insensitive substring of the message.
    #[arg(long)]
    icontains: Option<String>,
    /// Regex searched in the message.
    #[arg(long)]
    regex: Option<String>,
}

impl FilterArgs {
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut params: Vec<(&str, String)> = Vec::new();
        params.extend(self.app.iter().map(|v| ("app", v.clone())));
        params.extend(self.from.iter().map(|v| ("from", v.clone())));
        params.extend(self.to.iter().map(|v| ("to", v.clone())));
        params.extend(self.tag.iter().map(|v| ("tag", v.clone())));
        params.extend(self.any.iter().map(|v| ("any", v.clone())));
        params.extend(self.not.iter().map(|v| ("not", v.clone())));
        params.extend(self.contains.iter().map(|v| ("contains", v.clone())));
        params.extend(self.icontains.iter().map(|v| ("icontains", v.clone())));
        params.extend(self.regex.iter().map(|v| ("regex", v.clone())));
        params.extend(self.query.iter().map(|v| ("q", v.clone())));
        params
    }

    fn get(&self, agent: &ureq::Agent, path: &str, params: &[(&str, String)]) -> ureq::Request {
        let mut req = self.conn.authorize(agent.get(&self.conn.url(path)));
        for (k, v) in params {
            req = req.query(k, v);
        }
        req
    }
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Filters; the pipes of the query (`| count`, `| count by (key)`, `| histogram 5m` ...)
    /// choose what is printed.
    #[command(flatten)]
    filters: FilterArgs,
    /// Records per page.
    #[arg(long)]
    limit: Option<usize>,
    /// desc (newest first, the default) or asc.
    #[arg(long)]
    order: Option<String>,
    /// Continue after a previous page (printed on stderr after a full page).
    #[arg(long)]
    cursor: Option<String>,
    /// Print the number of matching records instead.
    #[arg(long, conflicts_with = "histogram")]
    count: bool,
    /// Print a histogram with buckets of this size (e.g. 5m) instead.
    #[arg(long, value_name = "STEP")]
    histogram: Option<String>,
    /// Print the server's JSON as is.
    #[arg(long)]
    json: bool,
}

pub fn query(a: QueryArgs) -> Result<()> {
    let mut params = a.filters.params();
    let path = if a.count {
        "/api/v1/count"
    } else if let Some(step) = &a.histogram {
        params.push(("step", step.clone()));
        "/api/v1/histogram"
    } else {
        params.extend(a.limit.iter().map(|v| ("limit", v.to_string())));
        params.extend(a.order.iter().map(|v| ("order", v.clone())));
        params.extend(a.cursor.iter().map(|v| ("cursor", v.clone())));
        if a.filters.query.is_some() {
            "/api/v1/query"
        } else {
            "/api/v1/logs"
        }
    };
    let resp = a.filters.get(&a.filters.conn.agent(None)?, path, &params).call().map_err(describe)?;
    let cursor = resp.header("logpipe-next-cursor").map(str::to_owned);
    let records = resp.content_type() == "application/x-ndjson";
    let body = resp.into_string()?;
    let mut out = std::io::stdout().lock();
    if a.json {
        out.write_all(body.as_bytes())?;
    } else if !records {
        // an aggregate: a count, buckets, or top values
        let v: serde_json::Value = serde_json::from_str(&body)?;
        if let Some(n) = v.get("count") {
            writeln!(out, "{n}")?;
        }
        for b in v["buckets"].as_array().into_iter().flatten() {
            writeln!(out, "{}  {}", b["t"].as_str().unwrap_or(""), b["count"])?;
        }
        let value =
            |x: &serde_json::Value| x["value"].as_str().map_or_else(|| "(none)".to_string(), |s| format!("{s:?}"));
        for x in v["values"].as_array().into_iter().flatten() {
            writeln!(out, "{:>12}  {}", x["count"], value(x))?;
        }
        // histogram by (key): one line per bucket and value
        let other = v.get("other").map(|o| (o, "(other)".to_string()));
        let series = v["series"].as_array().into_iter().flatten().map(|x| (x, value(x)));
        for (x, value) in series.chain(other) {
            for b in x["buckets"].as_array().into_iter().flatten() {
                writeln!(out, "{}  {}  {value}", b["t"].as_str().unwrap_or(""), b["count"])?;
            }
        }
    } else {
        for line in body.lines().filter(|l| !l.is_empty()) {
            print_record(&mut out, line)?;
        }
    }
    if let Some(c) = cursor {
        eprintln!("more: --cursor {c}");
    }
    Ok(())
}

/// One record of the server's JSON as `time app [tags] message`; records shaped by
/// `| fields` as they came.
fn print_record(out: &mut impl Write, line: &str) -> Result<()> {
    let r: serde_json::Value = serde_json::from_str(line)?;
    if r.get("message").is_none() || r.get("timestamp").is_none() {
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let tags: Vec<&str> = r["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
    writeln!(
        out,
        "{} {} [{}] {}",
        r["timestamp"].as_str().unwrap_or(""),
        r["app"].as_str().unwrap_or(""),
        tags.join(" "),
        r["message"].as_str().unwrap_or("")
    )?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Filters; `| limit N` stops after N records, `| fields ...` shapes them.
    #[command(flatten)]
    filters: FilterArgs,
    /// Print the server's events as JSON lines (records, and `{"skipped": ...}` notices).
    #[arg(long)]
    json: bool,
}

/// Follows `GET /api/v1/tail` and prints records as they are acknowledged, until the server
/// ends the stream (shutdown, `| limit`) or the process is stopped.
pub fn tail(a: TailArgs) -> Result<()> {
    let params = a.filters.params();
    // no overall timeout: the stream is meant to stay open; the server sends a keep-alive
    // comment every 10 s, so a read that waits far longer means the connection is gone
    let agent = a.filters.conn.agent(Some(Duration::from_secs(60)))?;
    let resp = a.filters.get(&agent, "/api/v1/tail", &params).call().map_err(describe)?;
    let reader = std::io::BufReader::new(resp.into_reader());
    let mut out = std::io::stdout().lock();
    let (mut event, mut data) = (String::new(), String::new());
    for line in reader.lines() {
        let line = line.context("reading the tail stream")?;
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim_start().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        } else if line.is_empty() && !data.is_empty() {
            match (event.as_str(), a.json) {
                ("skipped", true) => writeln!(out, "{{\"skipped\":{data}}}")?,
                ("skipped", false) => {
                    let v: serde_json::Value = serde_json::from_str(&data)?;
                    eprintln!(
                        "logpipe: this reader fell behind: {} matching records skipped, {} records not examined",
                        v["records"], v["unexamined"]
                    );
                }
                (_, true) => writeln!(out, "{data}")?,
                (_, false) => print_record(&mut out, &data)?,
            }
            out.flush()?;
            event.clear();
            data.clear();
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    conn: Conn,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

/// `logpipe health`: succeeds when the server's `/ready` answers `200`, fails with the reason
/// otherwise (a container's health check, or a script waiting for a server).
pub fn health(a: HealthArgs) -> Result<()> {
    let agent = a.conn.agent(Some(Duration::from_secs(a.timeout)))?;
    let url = a.conn.url("/ready");
    let resp = a
        .conn
        .authorize(agent.get(&url))
        .timeout(Duration::from_secs(a.timeout))
        .call()
        .map_err(describe)
        .with_context(|| format!("GET {url}"))?;
    println!("{}", resp.into_string().unwrap_or_default().trim());
    Ok(())
}

fn describe(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            anyhow::anyhow!("server answered {code}: {}", body.trim())
        }
        other => anyhow::anyhow!("{other}"),
    }
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    conn: Conn,
    /// Application for records that do not name one (required for plain text).
    #[arg(long)]
    app: Option<String>,
    /// Records per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Input format: auto (lines starting with `{` are NDJSON records, others plain text),
    /// ndjson, or text (every line is a message).
    #[arg(long, default_value = "auto")]
    format: String,
    /// Tag added to plain-text records; repeatable.
    #[arg(long)]
    tag: Vec<String>,
    /// Attempts per batch when the server answers 429 or 503.
    #[arg(long, default_value_t = 20)]
    retries: u32,
    /// Files to read; none or `-` reads stdin.
    files: Vec<std::path::PathBuf>,
}

pub fn ingest(a: IngestArgs) -> Result<()> {
    if !matches!(a.format.as_str(), "auto" | "ndjson" | "text") {
        bail!("--format {:?}: expected auto, ndjson or text", a.format);
    }
    let agent = a.conn.agent(None)?;
    let mut url = a.conn.url("/api/v1/logs");
    if let Some(app) = &a.app {
        url = format!("{url}?app={}", form_urlencoded::byte_serialize(app.as_bytes()).collect::<String>());
    }
    let inputs: Vec<Box<dyn BufRead>> = if a.files.is_empty() || a.files.iter().any(|f| f.as_os_str() == "-") {
        vec![Box::new(std::io::stdin().lock())]
    } else {
        a.files
            .iter()
            .map(|f| -> Result<Box<dyn BufRead>> {
                Ok(Box::new(std::io::BufReader::new(
                    std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?,
                )))
            })
            .collect::<Result<_>>()?
    };
    let mut body = String::new();
    let mut in_batch = 0;
    let mut total = 0u64;
    for input in inputs {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let json = a.format == "ndjson" || (a.format == "auto" && line.trim_start().starts_with('{'));
            if json {
                body.push_str(&line);
            } else {
                if a.app.is_none() {
                    bail!("plain-text lines need --app");
                }
                body.push_str(&serde_json::json!({"message": line, "tags": a.tag}).to_string());
            }
            body.push('\n');
            in_batch += 1;
            if in_batch >= a.batch.max(1) {
                total += send(&a.conn, &agent, &url, &body, a.retries)?;
                body.clear();
                in_batch = 0;
            }
        }
    }
    if in_batch > 0 {
        total += send(&a.conn, &agent, &url, &body, a.retries)?;
    }
    eprintln!("accepted {total} records");
    Ok(())
}

/// Posts one batch, retrying on 429/503 after the server's Retry-After (or a growing backoff).
fn send(conn: &Conn, agent: &ureq::Agent, url: &str, body: &str, retries: u32) -> Result<u64> {
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=retries.max(1) {
        match conn.authorize(agent.post(url)).set("content-type", "application/x-ndjson").send_string(body) {
            Ok(resp) => {
                let v: serde_json::Value = serde_json::from_str(&resp.into_string()?)?;
                return Ok(v["accepted"].as_u64().unwrap_or(0));
            }
            Err(ureq::Error::Status(code @ (429 | 503), resp)) if attempt < retries => {
                let wait =
                    resp.header("retry-after").and_then(|s| s.parse::<u64>().ok()).map_or(backoff, Duration::from_secs);
                eprintln!("server answered {code}; retrying in {wait:?}");
                std::thread::sleep(wait);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(describe(e)),
        }
    }
    bail!("gave up after {retries} attempts")
}
