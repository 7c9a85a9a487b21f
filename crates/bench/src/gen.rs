//! The deterministic record generator.
//!
//! Record `i` of a data set is a function of the seed and `i` alone (its own random stream), so
//! the same `--records --seed --start --span` give the same records whatever the batch size or
//! the number of threads. What the records look like:
//!
//! - **app**: one of 14 (`apps::APPS`), by weight: nginx 18 %, api 14 %, ... mail 2 %.
//! - **message**: one of the app's templates, its variables drawn anew (numbers, hex ids, IPs,
//!   ports, UUIDs, users, paths, latencies); apps that serve requests end every line with
//!   ` rid=<12 hex>` (48 random bits, so `rid=000` is a substring found in 1 of 4,096 of their lines).
//! - **tags**: `level=` from the template (DEBUG, INFO, WARN, ERROR, FATAL; none for nginx,
//!   kernel and mail), `host=host-001` .. `host-240` (Zipf: host-001 about 16 %, host-240
//!   0.07 %), `env=` and `region=` fixed per host (prod for hosts 1-170, staging 171-215, dev
//!   the rest), and the bare tag `canary` on 5 % of the records of every 37th host.
//! - **timestamp**: spread over `[start, start + span)` by a daily curve (busiest at 15:00 UTC,
//!   quietest at 03:00, a factor of 3 apart), plus three bursts (`apps::BURSTS`) of four times
//!   the volume where one app's error floods in; records are in time order but for 1 % that
//!   arrive late by up to 60 s (never before `start`). The default span (from 12:00 for 24 h)
//!   crosses midnight, so the data falls on two days.
//! - **needles** (`apps::NEEDLES`): six phrases found nowhere else, in exact numbers of records.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::apps::{self, App, APPS, BURSTS, NEEDLES};
use crate::rng::{mix, Rng};

pub const MINUTE: i64 = 60_000_000_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const HOSTS: usize = 240;

/// What a data set is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dataset {
    pub records: u64,
    pub seed: u64,
    /// ns since the epoch.
    pub start: i64,
    /// ns.
    pub span: i64,
}

impl Dataset {
    /// 2025-01-01T12:00:00Z, for 24 h.
    pub const DEFAULT_START: i64 = 1_735_732_800_000_000_000;
    pub const DEFAULT_SPAN: i64 = 24 * HOUR;

    pub fn new(records: u64) -> Dataset {
        Dataset { records, seed: 42, start: Self::DEFAULT_START, span: Self::DEFAULT_SPAN }
    }
}

/// One generated record. Its tags are sorted, as logpipe returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub app: &'static str,
    pub ts: i64,
    pub message: String,
    pub tags: Vec<&'static str>,
}

impl Record {
    /// The record as one line of logpipe's native NDJSON (without the newline).
    pub fn write_ndjson(&self, out: &mut String) {
        out.push_str("{\"app\":\"");
        out.push_str(self.app);
        out.push_str("\",\"timestamp\":\"");
        out.push_str(&format_time(self.ts));
        out.push_str("\",\"tags\":[");
        for (i, t) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(out, t);
        }
        out.push_str("],\"message\":");
        json_string(out, &self.message);
        out.push('}');
    }
}

/// `s` as a JSON string literal.
pub fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a str serializes"));
}

/// RFC 3339 in UTC with nanoseconds, as logpipe writes timestamps.
pub fn format_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// The generator of one data set: tables built once, then `record(i)` for any `i`.
pub struct Generator {
    pub ds: Dataset,
    templates: Vec<Vec<Vec<Part>>>,
    bursts: Vec<Vec<Part>>,
    /// Cumulative weight of each minute of the span (the daily curve and the bursts).
    cdf: Vec<f64>,
    slot_ns: f64,
    needles: HashMap<u64, usize>,
    host_cdf: Vec<f64>,
    app_weights: Vec<((), u32)>,
    template_weights: Vec<Vec<((), u32)>>,
}

/// A piece of a parsed template.
#[derive(Debug, Clone)]
enum Part {
    Lit(&'static str),
    Digits(u32),
    Hex(usize),
    Ip,
    PublicIp,
    Port,
    Ms,
    Uuid,
    User,
    Path,
    Method,
    Status,
    UserAgent,
    Table,
    Pick(Vec<&'static str>),
}

fn parse_template(t: &'static str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Lit(&rest[..open]));
        }
        let close = open + rest[open..].find('}').unwrap_or_else(|| panic!("unclosed variable in {t:?}"));
        let var = &rest[open + 1..close];
        parts.push(match var.split_once(':') {
            Some(("d", n)) => Part::Digits(n.parse().expect("digits")),
            Some(("hex", n)) => Part::Hex(n.parse().expect("hex length")),
            Some(("pick", words)) => Part::Pick(words.split('|').collect()),
            _ => match var {
                "ip" => Part::Ip,
                "pip" => Part::PublicIp,
                "port" => Part::Port,
                "ms" => Part::Ms,
                "uuid" => Part::Uuid,
                "user" => Part::User,
                "path" => Part::Path,
                "method" => Part::Method,
                "status" => Part::Status,
                "ua" => Part::UserAgent,
                "table" => Part::Table,
                _ => panic!("unknown variable {{{var}}} in {t:?}"),
            },
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest));
    }
    parts
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, r: &mut Rng, n: usize) {
    let mut bits = r.next_u64();
    for i in 0..n {
        if i % 16 == 15 {
            bits = r.next_u64();
        }
        out.push(HEX[(bits & 15) as usize] as char);
        bits >>= 4;
    }
}

fn render(out: &mut String, parts: &[Part], r: &mut Rng) {
    for p in parts {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::Digits(n) => {
                let _ = write!(out, "{}", r.below(10u64.pow(*n)));
            }
            Part::Hex(n) => push_hex(out, r, *n),
            Part::Ip => {
                let _ = write!(out, "10.{}.{}.{}", r.below(4), r.below(256), 1 + r.below(254));
            }
            Part::PublicIp => {
                // a few hundred networks, as clients come from
                let net = mix(r.below(300) + 77);
                let _ = write!(out, "{}.{}.{}.{}", 11 + net % 180, (net >> 8) % 256, r.below(256), 1 + r.below(254));
            }
            Part::Port => {
                let _ = write!(out, "{}", 1024 + r.below(64_512));
            }
            Part::Ms => {
                let u = r.unit();
                let _ = write!(out, "{}", 1 + (u * u * u * u * 4_000.0) as u64);
            }
            Part::Uuid => {
                push_hex(out, r, 8);
                out.push('-');
                push_hex(out, r, 4);
                out.push_str("-4");
                push_hex(out, r, 3);
                out.push('-');
                out.push(['8', '9', 'a', 'b'][r.below(4) as usize]);
                push_hex(out, r, 3);
                out.push('-');
                push_hex(out, r, 12);
            }
            Part::User => {
                let n = r.below(4_000);
                let _ = write!(out, "{}{}", apps::USER_NAMES[(n % 20) as usize], n / 20);
            }
            Part::Path => {
                let p = apps::PATHS[r.below(apps::PATHS.len() as u64) as usize];
                match p.split_once("{id}") {
                    Some((a, b)) => {
                        let _ = write!(out, "{a}{}{b}", r.below(1_000_000));
                    }
                    None => out.push_str(p),
                }
            }
            Part::Method => out.push_str(apps::METHODS[r.weighted(apps::METHODS)].0),
            Part::Status => out.push_str(apps::STATUSES[r.weighted(apps::STATUSES)].0),
            Part::UserAgent => out.push_str(apps::USER_AGENTS[r.weighted(apps::USER_AGENTS)].0),
            Part::Table => out.push_str(apps::TABLES[r.below(apps::TABLES.len() as u64) as usize]),
            Part::Pick(words) => out.push_str(words[r.below(words.len() as u64) as usize]),
        }
    }
}

/// `host=host-NNN`, `env=...`, `region=...` and whether the host runs canaries, per host.
struct HostTags {
    host: &'static str,
    env: &'static str,
    region: &'static str,
    canary: bool,
}

fn host_tags() -> &'static [HostTags] {
    static HOSTS_TABLE: OnceLock<Vec<HostTags>> = OnceLock::new();
    HOSTS_TABLE.get_or_init(|| {
        (1..=HOSTS)
            .map(|h| HostTags {
                host: Box::leak(format!("host=host-{h:03}").into_boxed_str()),
                env: match h {
                    1..=170 => "env=prod",
                    171..=215 => "env=staging",
                    _ => "env=dev",
                },
                region: ["region=eu-west-1", "region=us-east-1", "region=us-west-2", "region=ap-south-1"]
                    [(mix(h as u64) % 4) as usize],
                canary: h % 37 == 5,
            })
            .collect()
    })
}

fn level_tag(level: &str) -> &'static str {
    match level {
        "DEBUG" => "level=DEBUG",
        "INFO" => "level=INFO",
        "WARN" => "level=WARN",
        "ERROR" => "level=ERROR",
        "FATAL" => "level=FATAL",
        other => panic!("unknown level {other}"),
    }
}

impl Generator {
    pub fn new(ds: Dataset) -> Generator {
        assert!(ds.span > 0, "the span must be positive");
        let templates = APPS.iter().map(|a| a.templates.iter().map(|t| parse_template(t.0)).collect()).collect();
        let bursts = BURSTS.iter().map(|b| parse_template(b.template)).collect();
        // minute slots: the daily curve, times four in a burst
        let slots = ((ds.span + MINUTE - 1) / MINUTE).max(1) as usize;
        let slot_ns = ds.span as f64 / slots as f64;
        let mut cdf = Vec::with_capacity(slots + 1);
        cdf.push(0.0);
        let mut total = 0.0;
        for s in 0..slots {
            let t = ds.start as f64 + (s as f64 + 0.5) * slot_ns;
            let hour = (t / HOUR as f64).rem_euclid(24.0);
            let mut w = 2.0 + (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
            if Self::burst_at_offset((t - ds.start as f64) as i64).is_some() {
                w *= 4.0;
            }
            total += w;
            cdf.push(total);
        }
        // needles at positions drawn from the seed; a taken position moves to the next free one
        let mut needles = HashMap::new();
        if ds.records > 0 {
            for (k, n) in NEEDLES.iter().enumerate() {
                let mut r = Rng::new(ds.seed, u64::MAX - k as u64);
                for _ in 0..n.count_in(ds.records) {
                    let mut at = r.below(ds.records);
                    while needles.contains_key(&at) {
                        at = (at + 1) % ds.records;
                    }
                    needles.insert(at, k);
                }
            }
        }
        // Zipf with s = 1 over the hosts
        let mut host_cdf = Vec::with_capacity(HOSTS);
        let mut acc = 0.0;
        for h in 1..=HOSTS {
            acc += 1.0 / h as f64;
            host_cdf.push(acc);
        }
        let app_weights = APPS.iter().map(|a| ((), a.weight)).collect();
        let template_weights = APPS.iter().map(|a| a.templates.iter().map(|t| ((), t.2)).collect()).collect();
        Generator { ds, templates, bursts, cdf, slot_ns, needles, host_cdf, app_weights, template_weights }
    }

    /// The burst in force `offset` ns after the start, if any.
    fn burst_at_offset(offset: i64) -> Option<usize> {
        BURSTS.iter().position(|b| {
            let at = b.at_minutes as i64 * MINUTE;
            offset >= at && offset < at + b.minutes as i64 * MINUTE
        })
    }

    /// The time of the `q`-th quantile of the volume, `q` in `[0, 1)`.
    fn time_at(&self, q: f64) -> i64 {
        let target = q * self.cdf[self.cdf.len() - 1];
        let slot = self.cdf.partition_point(|&c| c <= target).saturating_sub(1).min(self.cdf.len() - 2);
        let within = (target - self.cdf[slot]) / (self.cdf[slot + 1] - self.cdf[slot]);
        let t = self.ds.start + ((slot as f64 + within.clamp(0.0, 1.0)) * self.slot_ns) as i64;
        t.clamp(self.ds.start, self.ds.start + self.ds.span - 1)
    }

    /// Record `i` of the data set.
    pub fn record(&self, i: u64) -> Record {
        let mut r = Rng::new(self.ds.seed, i);
        let mut ts = self.time_at((i as f64 + r.unit()) / self.ds.records as f64);
        if r.chance(0.01) {
            ts = (ts - r.below(60_000_000_000) as i64).max(self.ds.start);
        }
        let host_x = r.unit() * self.host_cdf[HOSTS - 1];
        let host = &host_tags()[self.host_cdf.partition_point(|&c| c <= host_x).min(HOSTS - 1)];
        let mut tags = vec![host.host, host.env, host.region];
        if host.canary && r.chance(0.05) {
            tags.push("canary");
        }

        let mut message = String::with_capacity(160);
        let mut app_i = r.weighted(&self.app_weights);
        let mut level = None;
        let burst = Self::burst_at_offset(ts - self.ds.start).filter(|_| r.chance(0.7));
        if let Some(&k) = self.needles.get(&i) {
            message.push_str(NEEDLES[k].phrase);
            level = Some(NEEDLES[k].level);
        } else if let Some(b) = burst {
            app_i = APPS.iter().position(|a| a.name == BURSTS[b].app).expect("a burst's app is an app");
            render(&mut message, &self.bursts[b], &mut r);
            level = Some(BURSTS[b].level);
        } else {
            let app: &App = &APPS[app_i];
            let t = r.weighted(&self.template_weights[app_i]);
            render(&mut message, &self.templates[app_i][t], &mut r);
            level = level.or(app.templates[t].1);
        }
        if APPS[app_i].request_ids {
            message.push_str(" rid=");
            push_hex(&mut message, &mut r, 12);
        }
        if let Some(l) = level {
            tags.push(level_tag(l));
        }
        tags.sort_unstable();
        Record { app: APPS[app_i].name, ts, message, tags }
    }

    /// Records `range`, generated on all cores.
    pub fn records(&self, range: std::ops::Range<u64>) -> Vec<Record> {
        range.into_par_iter().map(|i| self.record(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_index_gives_the_same_record_and_times_stay_in_the_span() {
        let g = Generator::new(Dataset::new(20_000));
        let all = g.records(0..20_000);
        assert_eq!(all[1234], g.record(1234));
        assert!(all.iter().all(|r| r.ts >= g.ds.start && r.ts < g.ds.start + g.ds.span));
        let midnight = Dataset::DEFAULT_START + 12 * HOUR;
        assert!(all.iter().any(|r| r.ts < midnight) && all.iter().any(|r| r.ts >= midnight), "crosses midnight");
        let late = all.windows(2).filter(|w| w[1].ts < w[0].ts).count();
        assert!(late > 50 && late < 600, "about 1 % late: {late}");
    }

    #[test]
    fn needles_come_in_exact_numbers() {
        let n = 200_000;
        let g = Generator::new(Dataset::new(n));
        let all = g.records(0..n);
        for needle in NEEDLES {
            let found = all.iter().filter(|r| r.message.contains(needle.phrase)).count() as u64;
            assert_eq!(found, needle.count_in(n), "{}", needle.phrase);
        }
    }

    #[test]
    fn every_template_renders_without_braces_left() {
        let g = Generator::new(Dataset::new(100_000));
        let all = g.records(0..100_000);
        assert!(all.iter().all(|r| !r.message.contains('{') && !r.message.contains('}')));
        for app in APPS {
            assert!(all.iter().any(|r| r.app == app.name), "{} has records", app.name);
        }
        assert!(all.iter().any(|r| r.tags.contains(&"canary")));
        assert!(all.iter().any(|r| r.tags.contains(&"host=host-240")));
    }
}
