//! The applications of the generated data set: each with its share of the records and its own
//! message templates, each template with its level (none for apps whose lines carry none, like
//! access logs and the kernel) and its share of the app's lines.
//!
//! A template's `{...}` are variables, drawn anew for every record:
//!
//! | variable | value |
//! | --- | --- |
//! | `{d:N}` | a decimal number of up to N digits |
//! | `{hex:N}` | N lowercase hex digits |
//! | `{ip}` | an internal IPv4 address, `10.0-3.x.x` |
//! | `{pip}` | a public IPv4 address, from a few hundred networks |
//! | `{port}` | a TCP port, 1024-65535 |
//! | `{ms}` | a latency in ms, skewed: most small, a few in the thousands |
//! | `{uuid}` | a random UUID |
//! | `{user}` | a user name, from a few thousand |
//! | `{path}` | an HTTP path of an API, some with ids |
//! | `{method}`, `{status}`, `{ua}`, `{table}` | an HTTP method, status, user agent, SQL table |
//! | `{pick:a\|b\|c}` | one of the listed words |

/// One application of the data set.
pub struct App {
    pub name: &'static str,
    /// Its share of all records, relative to the other apps'.
    pub weight: u32,
    /// Whether its lines end with ` rid=<12 hex digits>`, a request id.
    pub request_ids: bool,
    /// (template, level, share of the app's lines).
    pub templates: &'static [(&'static str, Option<&'static str>, u32)],
}

const I: Option<&str> = Some("INFO");
const D: Option<&str> = Some("DEBUG");
const W: Option<&str> = Some("WARN");
const E: Option<&str> = Some("ERROR");

pub const APPS: &[App] = &[
    App {
        name: "nginx",
        weight: 18,
        request_ids: false,
        templates: &[
            (r#"{pip} - - "{method} {path} HTTP/1.1" {status} {d:5} "-" "{ua}" {ms}ms"#, None, 95),
            (r#"{pip} - - "GET /static/{pick:app|vendor|main}.{hex:8}.js HTTP/1.1" 304 0 "-" "{ua}" {d:1}ms"#, None, 4),
            (
                r#"upstream timed out (110: Connection timed out) while reading response header from upstream, client: {pip}, upstream: "http://{ip}:{port}{path}""#,
                None,
                1,
            ),
        ],
    },
    App {
        name: "api",
        weight: 14,
        request_ids: true,
        templates: &[
            ("handled {method} {path} status={status} duration_ms={ms} user={user}", I, 70),
            ("upstream {pick:inventory|pricing|search|profile} answered in {ms}ms", D, 12),
            ("slow handler {path} took {ms}ms, over the 500ms budget", W, 8),
            ("request to {ip}:{port} failed: connection refused, attempt {d:1} of 5", E, 3),
            ("cache miss for key user:{d:6}:profile, loading from primary", D, 7),
        ],
    },
    App {
        name: "gateway",
        weight: 9,
        request_ids: false,
        templates: &[
            (
                r#""{method} {path} HTTP/2" {status} - {d:4} {d:5} {ms} "{pip}" "{ua}" "{uuid}" "{pick:api|checkout|billing}:{port}""#,
                I,
                90,
            ),
            ("upstream connect error or disconnect/reset before headers. reset reason: connection termination", W, 6),
            ("rate limit exceeded for client {pip}: {d:3} requests in the last minute", W, 3),
            ("no healthy upstream for cluster {pick:api|checkout|billing}", E, 1),
        ],
    },
    App {
        name: "postgres",
        weight: 9,
        request_ids: false,
        templates: &[
            ("duration: {ms}.{d:3} ms  statement: SELECT * FROM {table} WHERE id = {d:6}", I, 55),
            ("connection received: host={ip} port={port}", I, 15),
            ("connection authorized: user={user} database=app application_name={pick:api|worker|billing}", I, 12),
            (
                "checkpoint complete: wrote {d:4} buffers ({d:2}.{d:1}%); 0 WAL file(s) added, {d:1} removed, {d:1} recycled",
                I,
                5,
            ),
            (r#"automatic vacuum of table "app.public.{table}": index scans: {d:1}"#, I, 5),
            ("could not serialize access due to concurrent update on {table}", W, 5),
            (r#"duplicate key value violates unique constraint "{table}_pkey""#, E, 3),
        ],
    },
    App {
        name: "auth",
        weight: 8,
        request_ids: false,
        templates: &[
            ("Accepted publickey for {user} from {pip} port {port} ssh2: ED25519 SHA256:{hex:16}", I, 30),
            ("pam_unix(sshd:session): session opened for user {user}(uid={d:4}) by (uid=0)", I, 25),
            ("pam_unix(sshd:session): session closed for user {user}", I, 25),
            ("Failed password for invalid user {user} from {pip} port {port} ssh2", W, 15),
            ("error: kex_exchange_identification: Connection reset by peer from {pip} port {port}", E, 5),
        ],
    },
    App {
        name: "checkout",
        weight: 7,
        request_ids: true,
        templates: &[
            ("order {hex:10} placed by {user}: {d:1} items, total {d:3}.{d:2} EUR", I, 45),
            ("payment authorized for order {hex:10} via {pick:card|paypal|sepa}", I, 35),
            ("cart {uuid} expired after {d:2} minutes", W, 10),
            ("payment declined for order {hex:10}: {pick:insufficient funds|card expired|do not honor}", E, 7),
            ("timeout calling fraud-check.internal after {ms}ms", E, 3),
        ],
    },
    App {
        name: "worker",
        weight: 6,
        request_ids: false,
        templates: &[
            ("Received task: tasks.{pick:send_email|resize_image|sync_crm|export_csv}[{uuid}]", I, 45),
            ("Task tasks.{pick:send_email|resize_image|sync_crm|export_csv}[{uuid}] succeeded in {d:1}.{d:3}s", I, 43),
            ("Task tasks.{pick:send_email|sync_crm}[{uuid}] retry: Retry in {d:2}s: ConnectionError", W, 9),
            ("Task tasks.export_csv[{uuid}] raised unexpected: TimeoutError('operation timed out')", E, 3),
        ],
    },
    App {
        name: "kafka",
        weight: 6,
        request_ids: false,
        templates: &[
            (
                "[Partition {pick:orders|payments|clicks|audit}-{d:2} broker={d:1}] Log loaded for partition with log start offset {d:9}",
                I,
                50,
            ),
            (
                "[GroupCoordinator {d:1}]: Member consumer-{d:3}-{hex:8} in group {pick:billing|search|audit} has left, removing it",
                I,
                35,
            ),
            (
                "[ReplicaFetcher replicaId={d:1}, leaderId={d:1}] Error sending fetch request to node {d:1}: java.io.IOException: Connection to {ip}:{port} was disconnected before the response was read",
                W,
                15,
            ),
        ],
    },
    App {
        name: "kubelet",
        weight: 5,
        request_ids: false,
        templates: &[
            (r#"SyncLoop (PLEG): event for pod "{pick:api|web|worker}-{hex:10}-{hex:5}""#, I, 55),
            (
                r#"Successfully pulled image "registry.local/{pick:api|web|worker}:1.{d:2}.{d:1}" in {ms}ms"#,
                I,
                25,
            ),
            (r#"Readiness probe failed: Get "http://{ip}:{port}/healthz": context deadline exceeded"#, W, 15),
            (r#"Error syncing pod {uuid}, skipping: failed to "StartContainer" with CrashLoopBackOff"#, E, 5),
        ],
    },
    App {
        name: "kernel",
        weight: 5,
        request_ids: false,
        templates: &[
            ("[{d:6}.{d:6}] eth{d:1}: link up, 10000 Mbps, full duplex, flow control rx/tx", None, 30),
            (
                r#"[{d:6}.{d:6}] audit: type=1400 apparmor="DENIED" operation="open" profile="{pick:snap.lxd|cups|ntpd}" name="/proc/{d:4}/status" pid={d:5}"#,
                None,
                35,
            ),
            ("[{d:6}.{d:6}] EXT4-fs (nvme0n1p{d:1}): mounted filesystem with ordered data mode", None, 20),
            ("[{d:6}.{d:6}] TCP: request_sock_TCP: Possible SYN flooding on port {port}. Sending cookies.", None, 10),
            (
                "[{d:6}.{d:6}] Out of memory: Killed process {d:5} ({pick:java|python3|node}) total-vm:{d:7}kB",
                None,
                5,
            ),
        ],
    },
    App {
        name: "cache",
        weight: 4,
        request_ids: false,
        templates: &[
            ("Accepted {ip}:{port}", I, 50),
            ("{d:3} changes in {d:3} seconds. Saving...", I, 20),
            ("Background saving terminated with success", I, 20),
            ("Client id={d:5} addr={ip}:{port} closed for overcoming of output buffer limits.", W, 10),
        ],
    },
    App {
        name: "scheduler",
        weight: 3,
        request_ids: false,
        templates: &[
            ("Job {pick:nightly-report|db-backup|cleanup-tmp|rotate-keys} started (run {d:5})", I, 48),
            ("Job {pick:nightly-report|db-backup|cleanup-tmp|rotate-keys} finished in {d:3}s with exit code 0", I, 46),
            ("Job {pick:db-backup|rotate-keys} failed with exit code {d:1}: BackoffLimitExceeded", E, 6),
        ],
    },
    App {
        name: "billing",
        weight: 3,
        request_ids: true,
        templates: &[
            ("invoice INV-{d:6} generated for account {d:6}, amount {d:4}.{d:2}", I, 60),
            ("recalculated tax for account {d:6} in {ms}ms", D, 30),
            ("ledger write failed for account {d:6}: deadline exceeded", E, 5),
            ("account {d:6} suspended: {d:1} unpaid invoices", W, 5),
        ],
    },
    App {
        name: "mail",
        weight: 2,
        request_ids: false,
        templates: &[
            (
                "{hex:10}: to=<{user}@example.org>, relay=mx{d:1}.example.org[{pip}]:25, delay={d:1}.{d:1}, status=sent (250 2.0.0 OK)",
                None,
                50,
            ),
            ("connect from unknown[{pip}]", None, 30),
            ("{hex:10}: removed", None, 20),
        ],
    },
];

/// A burst: for `minutes` minutes from `at` (offset from the data set's start), four times the
/// usual volume, most of it one app's one error.
pub struct Burst {
    pub at_minutes: u64,
    pub minutes: u64,
    pub app: &'static str,
    pub template: &'static str,
    pub level: &'static str,
}

pub const BURSTS: &[Burst] = &[
    Burst {
        at_minutes: 4 * 60 + 10,
        minutes: 5,
        app: "checkout",
        template: "timeout calling payments-gw.internal after {ms}ms",
        level: "ERROR",
    },
    Burst {
        at_minutes: 13 * 60 + 37,
        minutes: 3,
        app: "postgres",
        template: r#"FATAL:  remaining connection slots are reserved for non-replication superuser connections"#,
        level: "FATAL",
    },
    Burst {
        at_minutes: 19 * 60 + 5,
        minutes: 2,
        app: "api",
        template: "circuit breaker open for {pick:inventory|pricing}: {d:2} failures in 10s",
        level: "ERROR",
    },
];

/// A needle: a phrase found in no template, put into exactly `count` records (or, with a
/// rate, `max(1, round(records * rate))`), at positions drawn from the seed.
pub struct Needle {
    pub phrase: &'static str,
    pub level: &'static str,
    pub count: u64,
    pub rate: f64,
}

pub const NEEDLES: &[Needle] = &[
    Needle { phrase: "audit: vault seal integrity check failed on shard amber-9", level: "ERROR", count: 3, rate: 0.0 },
    Needle {
        phrase: "watchdog: BUG: hard LOCKUP on cpu#7 (kworker/7:2) [pid 31337]",
        level: "FATAL",
        count: 7,
        rate: 0.0,
    },
    Needle { phrase: "panic: double free detected in slab allocator gullwing-2", level: "FATAL", count: 0, rate: 1e-6 },
    Needle {
        phrase: "TLS handshake rejected: pinned key mismatch for ledger-api.internal",
        level: "ERROR",
        count: 0,
        rate: 1e-5,
    },
    Needle {
        phrase: "lock wait timeout exceeded; retrying transaction on invoices_2025",
        level: "WARN",
        count: 0,
        rate: 1e-4,
    },
    Needle {
        phrase: "slow request: op=scan index=none table=event_archive elapsed_ms=48213",
        level: "WARN",
        count: 0,
        rate: 1e-3,
    },
];

impl Needle {
    /// How many records of a data set of `records` carry it.
    pub fn count_in(&self, records: u64) -> u64 {
        if self.rate > 0.0 {
            ((records as f64 * self.rate).round() as u64).max(1).min(records)
        } else {
            self.count.min(records)
        }
    }
}

pub const METHODS: &[(&str, u32)] = &[("GET", 70), ("POST", 20), ("PUT", 6), ("DELETE", 4)];
pub const STATUSES: &[(&str, u32)] = &[
    ("200", 800),
    ("201", 40),
    ("204", 30),
    ("301", 10),
    ("304", 30),
    ("400", 25),
    ("401", 15),
    ("403", 8),
    ("404", 30),
    ("429", 4),
    ("500", 5),
    ("502", 2),
    ("503", 1),
];
pub const USER_AGENTS: &[(&str, u32)] = &[
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", 30),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15", 25),
    ("curl/8.5.0", 10),
    ("Go-http-client/1.1", 10),
    ("okhttp/4.12.0", 15),
    ("python-requests/2.31.0", 10),
];
pub const PATHS: &[&str] = &[
    "/api/v1/orders/{id}",
    "/api/v1/orders",
    "/api/v1/users/{id}",
    "/api/v1/users/{id}/sessions",
    "/api/v1/cart",
    "/api/v1/search",
    "/api/v1/products/{id}",
    "/api/v1/products/{id}/reviews",
    "/api/v2/invoices/{id}",
    "/healthz",
    "/metrics",
    "/login",
];
pub const TABLES: &[&str] =
    &["orders", "users", "sessions", "invoices", "line_items", "products", "payments", "audit_log", "carts"];
pub const USER_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "nina", "oscar",
    "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara",
];
