//! Cluster mode's write path: ingest nodes publish every accepted batch to a NATS JetStream
//! stream and acknowledge the client only once JetStream has (the stream is replicated, so
//! the batch is on a quorum of NATS servers' disks); store nodes pull the batches from one
//! shared durable consumer, write them into their storage engine and acknowledge each message
//! only once the engine has made it durable.
//!
//! ```text
//! client ──HTTP──▶ ingest node ──publish, await PubAck──▶ JetStream stream <name>
//!                                                        (subject <name>.batches, R3, file)
//! store node ◀──pull (durable consumer logpipe-store, explicit acks)──┘
//!   └─ engine.submit_keyed(records, key "jetstream:<name>:<sequence>") ─▶ WAL fsync ─▶ ack
//! ```
//!
//! Nothing here is a consensus or replication protocol of logpipe's own: JetStream keeps the
//! batches until a store node acknowledges them, hands a dead node's unacknowledged messages
//! to the others, and drops duplicate publishes by message id within its duplicate window.
//! A store node that stores a batch and dies before its acknowledgement reaches JetStream gets
//! the batch again on restart; the engine's idempotency table (keyed by the stream sequence)
//! stores it once.

#![deny(unsafe_code)]

pub mod catalog;
pub mod compact;
pub mod reader;
pub mod store;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use logpipe_model::Record;
use logpipe_storage::batch;

/// The oldest NATS server release whose JetStream the cluster mode relies on.
pub const MIN_NATS_VERSION: (u64, u64) = (2, 10);
/// The store nodes' shared durable consumer.
pub const CONSUMER: &str = "logpipe-store";
/// Header naming the payload's encoding, so later versions can change it.
pub const ENCODING_HEADER: &str = "Logpipe-Batch";
pub(crate) const ENCODING: &str = "zstd-batch-1";
/// Largest decoded batch a store node accepts from the stream.
pub const MAX_DECODED_BATCH: usize = 512 << 20;
/// How often a node renews its entry in the node registry...
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// ...and how long an entry outlives its last renewal (a dead node drops out after this).
pub const NODE_TTL: Duration = Duration::from_secs(15);

/// Where the stream lives and how it is kept.
#[derive(Clone)]
pub struct BusConfig {
    /// NATS server URLs (any of the cluster's servers; the client learns the rest).
    pub urls: Vec<String>,
    /// Stream name; its subject is `<stream>.batches`.
    pub stream: String,
    /// JetStream replicas of the stream (3 in production: one NATS server may be lost).
    pub replicas: usize,
    /// Bytes the stream may hold waiting for store nodes; past it publishes are refused (`429`).
    pub max_bytes: i64,
    /// Publishes with the same message id within this window are stored once.
    pub duplicate_window: Duration,
    /// How long start-up waits for the NATS servers and the stream.
    pub connect_timeout: Duration,
    /// How long a store node may hold a message before JetStream gives it to another.
    pub ack_wait: Duration,
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusConfig")
            .field("urls", &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>())
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl BusConfig {
    pub fn new(urls: Vec<String>) -> BusConfig {
        BusConfig {
            urls,
            stream: "logpipe".into(),
            replicas: 3,
            max_bytes: 8 << 30,
            duplicate_window: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(30),
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// Why the cluster mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("NATS server {version} is too old: logpipe's cluster mode needs NATS 2.10 or newer")]
    OldServer { version: String },
    #[error("the NATS server {server} does not run JetStream (start it with -js / jetstream {{}})")]
    NoJetStream { server: String },
    #[error("cannot reach NATS at {urls}: {why}")]
    Connect { urls: String, why: String },
    #[error(
        "cannot set up the JetStream stream {stream:?}: {why} (the stream needs --nats-max-bytes of \
         JetStream storage on each of --nats-replicas servers)"
    )]
    Stream { stream: String, why: String },
}

/// Why a batch was not acknowledged. Nothing of it is stored in either case.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "the encoded batch is {len} bytes, over the {max} bytes of one JetStream message \
         (the NATS servers' max_payload); send smaller batches"
    )]
    TooLarge { len: usize, max: usize },
    /// The stream is at its limits: the client should slow down (`429`).
    #[error("JetStream refused the batch: {0}")]
    Refused(String),
    /// No acknowledgement (no quorum, no leader, no connection): retry later (`503`).
    #[error("JetStream did not acknowledge the batch: {0}")]
    Unavailable(String),
}

/// A batch JetStream has acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub sequence: u64,
    /// JetStream had this message id within its duplicate window: nothing was added.
    pub duplicate: bool,
}

/// A connection to the stream that carries batches from ingest to store nodes.
pub struct Bus {
    js: jetstream::Context,
    /// The node registry: one key per live node, expiring unless renewed.
    nodes: jetstream::kv::Store,
    cfg: BusConfig,
    subject: String,
    max_payload: usize,
    server_version: String,
}

/// `url` without the credentials it may carry: `nats://user:secret@host:4222` → `nats://***@host:4222`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}***{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// `major.minor` of a NATS server version string such as `2.10.4` or `v2.11.0-beta.1`.
pub fn parse_version(v: &str) -> Option<(u64, u64)> {
    let mut it = v.trim().trim_start_matches('v').split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Refuses servers older than [`MIN_NATS_VERSION`] (or whose version cannot be read).
pub fn check_version(v: &str) -> Result<(), SetupError> {
    match parse_version(v) {
        Some(mm) if mm >= MIN_NATS_VERSION => Ok(()),
        _ => Err(SetupError::OldServer { version: v.to_string() }),
    }
}

impl Bus {
    /// Connects, checks the server's version and JetStream, and creates the stream (or checks
    /// the existing one), retrying until `connect_timeout` while the NATS cluster comes up.
    pub async fn connect(cfg: BusConfig) -> Result<Bus, SetupError> {
        // credentials in a URL (nats://user:password@host) never reach a log or an error
        let urls = cfg.urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(",");
        let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
        let client = loop {
            let opts = async_nats::ConnectOptions::new()
                .name("logpipe")
                .connection_timeout(Duration::from_secs(2))
                .max_reconnects(None);
            let addrs: Vec<async_nats::ServerAddr> = cfg
                .urls
                .iter()
                .map(|u| u.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| SetupError::Connect { urls: urls.clone(), why: format!("bad URL: {e}") })?;
            match opts.connect(addrs).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(SetupError::Connect { urls, why: e.to_string() })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let info = client.server_info();
        check_version(&info.version)?;
        if !info.jetstream {
            return Err(SetupError::NoJetStream { server: info.server_name });
        }
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(5));
        let subject = format!("{}.batches", cfg.stream);
        let want = stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![subject.clone()],
            num_replicas: cfg.replicas,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::WorkQueue,
            discard: stream::DiscardPolicy::New,
            max_bytes: cfg.max_bytes,
            duplicate_window: cfg.duplicate_window,
            ..Default::default()
        };
        // the meta leader may still be being elected while the cluster starts
        loop {
            match js.get_or_create_stream(want.clone()).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(SetupError::Stream { stream: cfg.stream.clone(), why: e.to_string() })
                }
                Err(e) => {
                    tracing::debug!(error = %e, "waiting for JetStream");
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
            }
        }
        let bucket = format!("{}-nodes", cfg.stream);
        let nodes = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                let kv_cfg = jetstream::kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age: NODE_TTL,
                    num_replicas: cfg.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                };
                match js.create_key_value(kv_cfg).await {
                    Ok(kv) => kv,
                    // another node created it meanwhile
                    Err(e) => js
                        .get_key_value(&bucket)
                        .await
                        .map_err(|_| SetupError::Stream { stream: bucket.clone(), why: e.to_string() })?,
                }
            }
        };
        tracing::info!(version = %info.version, stream = %cfg.stream, replicas = cfg.replicas, "JetStream ready");
        Ok(Bus { max_payload: info.max_payload, server_version: info.version, js, nodes, cfg, subject })
    }

    /// Keeps this node's entry in the registry until `stop` turns true, then removes it.
    pub async fn register(self: Arc<Self>, node: Node, mut stop: tokio::sync::watch::Receiver<bool>) {
        let key = node.id.clone();
        let value = Bytes::from(serde_json::to_vec(&node).expect("a node serialises"));
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                r = stop.changed() => r.is_err() || *stop.borrow_and_update(),
            };
            if stopping {
                break;
            }
            if let Err(e) = self.nodes.put(&key, value.clone()).await {
                tracing::warn!(error = %e, "renewing this node's registry entry failed");
            }
        }
        let _ = self.nodes.purge(&key).await;
    }

    /// Takes the lease `name` for `holder`, or renews it (`rev`: the revision it was last
    /// written with, updated here). Whether `holder` holds it now. The lease lapses
    /// [`NODE_TTL`] after its last renewal.
    pub async fn hold_lease(&self, name: &str, holder: &str, rev: &mut Option<u64>) -> bool {
        let value = Bytes::from(holder.to_string());
        let got = match *rev {
            Some(r) => self.nodes.update(name, value, r).await.map_err(|e| e.to_string()),
            None => self.nodes.create(name, value).await.map_err(|e| e.to_string()),
        };
        match got {
            Ok(r) => {
                *rev = Some(r);
                true
            }
            Err(e) => {
                if rev.is_some() {
                    tracing::warn!(lease = name, error = %e, "lost a lease");
                }
                *rev = None;
                false
            }
        }
    }

    /// Gives the lease up, if still held at `rev`.
    pub async fn release_lease(&self, name: &str, rev: Option<u64>) {
        if let Some(r) = rev {
            let _ = self.nodes.delete_expect_revision(name, Some(r)).await;
        }
    }

    /// Who holds the lease `name` now.
    pub async fn lease_holder(&self, name: &str) -> Option<String> {
        let v = self.nodes.get(name).await.ok()??;
        String::from_utf8(v.to_vec()).ok().filter(|s| !s.is_empty())
    }

    /// The live nodes of the registry, by id.
    pub async fn nodes(&self) -> Result<Vec<Node>, String> {
        let mut nodes = Vec::new();
        let mut keys = self.nodes.keys().await.map_err(|e| e.to_string())?;
        while let Some(k) = keys.next().await {
            let Ok(k) = k else { continue };
            if let Ok(Some(v)) = self.nodes.get(&k).await {
                if let Ok(n) = serde_json::from_slice::<Node>(&v) {
                    nodes.push(n);
                }
            }
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// The nodes, the stream and the store nodes' backlog, for `GET /api/v1/cluster`.
    pub async fn status(&self) -> Result<Status, String> {
        let mut stream = self.js.get_stream(&self.cfg.stream).await.map_err(|e| e.to_string())?;
        let info = stream.info().await.map_err(|e| e.to_string())?.clone();
        let consumer = stream.consumer_info(CONSUMER).await.ok();
        let nodes = self.nodes().await?;
        let cluster = info.cluster.as_ref();
        Ok(Status {
            nodes,
            stream: StreamStatus {
                name: self.cfg.stream.clone(),
                replicas: self.cfg.replicas,
                leader: cluster.and_then(|c| c.leader.clone()),
                replicas_current: cluster.map_or(0, |c| c.replicas.iter().filter(|p| p.current && !p.offline).count()),
                messages: info.state.messages,
                bytes: info.state.bytes,
                max_bytes: self.cfg.max_bytes,
            },
            store_backlog: consumer.as_ref().map(|c| Backlog {
                waiting: c.num_pending,
                unacknowledged: c.num_ack_pending as u64,
                redelivered: c.num_redelivered as u64,
            }),
            nats_version: self.server_version.clone(),
            connected: self.connected(),
        })
    }

    /// Largest message the NATS servers take, headers included.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Whether the client is connected to a NATS server right now.
    pub fn connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }

    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    pub fn config(&self) -> &BusConfig {
        &self.cfg
    }

    /// A batch as it travels on the stream: the WAL's batch encoding, compressed.
    pub fn encode(records: &[Record]) -> Vec<u8> {
        let raw = batch::encode(records);
        zstd::bulk::compress(&raw, 1).expect("zstd compresses into a growable buffer")
    }

    /// Checks an encoded batch fits one message (with room for the headers).
    pub fn check_size(&self, payload: &[u8]) -> Result<(), BusError> {
        let max = self.max_payload.saturating_sub(512);
        if payload.len() > max {
            return Err(BusError::TooLarge { len: payload.len(), max });
        }
        Ok(())
    }

    /// Publishes one encoded batch and waits for JetStream's acknowledgement. A `msg_id` makes
    /// a retry within the duplicate window a no-op (reported as `duplicate`).
    pub async fn publish(&self, payload: Vec<u8>, msg_id: Option<String>) -> Result<Published, BusError> {
        self.check_size(&payload)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(ENCODING_HEADER, ENCODING);
        let payload = Bytes::from(payload);
        let mut msg = jetstream::message::PublishMessage::build().payload(payload.clone()).headers(headers);
        if let Some(id) = msg_id {
            msg = msg.message_id(id);
        }
        use jetstream::context::PublishErrorKind as K;
        let classify = |e: jetstream::context::PublishError| match e.kind() {
            K::MaxPayloadExceeded => BusError::TooLarge { len: 0, max: self.max_payload },
            // the stream answered with an error: its limits (bytes, messages) are reached
            K::Other if e.to_string().contains("exceeded") => BusError::Refused(e.to_string()),
            K::MaxAckPending => BusError::Refused(e.to_string()),
            _ => BusError::Unavailable(e.to_string()),
        };
        let ack = self.js.send_publish(self.subject.clone(), msg).await.map_err(classify)?;
        let ack = ack.await.map_err(classify)?;
        if !ack.duplicate {
            // for live tails on query nodes: core NATS, delivered only where a tail listens
            let _ = self.js.client().publish(self.acked_subject(), payload).await;
        }
        Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
    }

    /// The subject acknowledged batches are announced on, for live tails (not in the stream).
    fn acked_subject(&self) -> String {
        format!("{}.acked", self.cfg.stream)
    }

    /// Every batch acknowledged from now on, as ingest nodes announce them.
    pub async fn subscribe_acked(&self) -> Result<async_nats::Subscriber, String> {
        let sub = self.js.client().subscribe(self.acked_subject()).await.map_err(|e| e.to_string())?;
        self.js.client().flush().await.map_err(|e| e.to_string())?;
        Ok(sub)
    }

    pub(crate) async fn consumer(&self) -> Result<consumer::PullConsumer, String> {
        let stream = self.js.get_stream(&self.cfg.stream).await.map_err(|e| e.to_string())?;
        stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.cfg.ack_wait,
                    // a store node holds every batch of an upload interval unacknowledged
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())
    }
}

/// One node's entry in the registry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub id: String,
    pub roles: Vec<String>,
    /// Where its HTTP API answers.
    pub url: String,
    pub version: String,
    /// When it started (RFC 3339).
    pub started: String,
}

#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub nodes: Vec<Node>,
    pub stream: StreamStatus,
    /// Messages the store nodes have yet to take (`None` before any store node started).
    pub store_backlog: Option<Backlog>,
    pub nats_version: String,
    pub connected: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub replicas: usize,
    pub leader: Option<String>,
    /// The replicas that are up and caught up (the leader's own copy not counted).
    pub replicas_current: usize,
    pub messages: u64,
    pub bytes: u64,
    pub max_bytes: i64,
}

#[derive(Debug, serde::Serialize)]
pub struct Backlog {
    /// Not yet delivered to any store node.
    pub waiting: u64,
    /// Delivered, not yet acknowledged.
    pub unacknowledged: u64,
    pub redelivered: u64,
}

/// The records of a batch from the stream (see [`Bus::encode`]).
pub fn decode(payload: &[u8]) -> Result<Vec<Record>, String> {
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(payload)
        .and_then(|d| d.take(MAX_DECODED_BATCH as u64 + 1).read_to_end(&mut raw))
        .map_err(|e| format!("does not decompress: {e}"))?;
    if raw.len() > MAX_DECODED_BATCH {
        return Err(format!("decodes to over {MAX_DECODED_BATCH} bytes"));
    }
    batch::decode(&raw).map_err(|_| "malformed batch".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_model::{AppName, Limits};

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(redact("nats://user:s3cret@10.0.0.1:4222"), "nats://***@10.0.0.1:4222");
        assert_eq!(redact("tls://tok@nats.example:4222/x"), "tls://***@nats.example:4222/x");
        assert_eq!(redact("nats://10.0.0.1:4222"), "nats://10.0.0.1:4222");
        assert_eq!(redact("a:b@host:4222"), "***@host:4222");
    }

    #[test]
    fn versions_before_2_10_are_refused() {
        for ok in ["2.10.0", "2.10.22", "v2.11.0-beta.1", "2.15.1", "3.0.0"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for old in ["2.9.25", "2.2.0", "1.4.1", "", "garbage", "v2"] {
            let e = check_version(old).unwrap_err();
            assert!(e.to_string().contains("2.10 or newer"), "{e}");
        }
    }

    #[test]
    fn a_batch_survives_the_stream_encoding() {
        let app = AppName::parse("billing").unwrap();
        let records: Vec<Record> = (0..100)
            .map(|i| {
                Record::new(app.clone(), i, format!("line {i}"), vec![format!("n:{}", i % 7)], &Limits::default())
                    .unwrap()
            })
            .collect();
        let payload = Bus::encode(&records);
        assert_eq!(decode(&payload).unwrap(), records);
        assert!(decode(&payload[..payload.len() / 2]).is_err());
        assert!(decode(b"not zstd").is_err());
    }
}
