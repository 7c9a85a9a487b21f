//! The query role: a view of everything stored, for one query.
//!
//! ```text
//! query ─▶ scatter: every store node's held batches that match (POST /internal/v1/pending)
//!       ─▶ the newest catalog ─▶ the segments that may match (app, time range)
//!       ─▶ each opened through the local cache: header, meta and footer fetched once;
//!          a block's bytes fetched (one range read) the first time a query reads it
//!       ─▶ held batches the catalog already lists are dropped (uploaded meanwhile)
//!       ─▶ one search over segments and batches (logpipe_storage::query_view)
//! ```
//!
//! A store node that does not answer, or a segment or block that cannot be fetched, is left
//! out and named in [`View::missing`]: the answer says it is partial.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use logpipe_model::{AppName, AppPattern, Record};
use logpipe_storage::segment::{Fetch, Segment, FOOTER_LEN, HEADER_LEN};
use logpipe_storage::{batch, Acked, MemChunk, Query, TAIL_BACKLOG_GROUPS};
use parking_lot::Mutex;

use crate::catalog::{Catalog, CatalogError, SegmentEntry, Snapshot};
use crate::store::StoreNode;
use crate::{Bus, Node};

/// The path store nodes answer scatter requests on.
pub const PENDING_PATH: &str = "/internal/v1/pending";
/// Largest scatter answer a query node reads from one store node.
pub const MAX_PENDING_ANSWER: u64 = 1 << 30;
/// How long a query node reuses the list of nodes it read from the registry...
pub const NODE_LIST_TTL: Duration = Duration::from_secs(1);
/// ...and how long a store node waits after registering before it takes batches: longer, so
/// every query node knows it before it holds anything.
pub const STORE_START_DELAY: Duration = Duration::from_millis(2500);
/// Bytes read from the end of a segment object to find its footer and meta in one request.
const TAIL_GUESS: u64 = 64 << 10;

#[derive(Clone)]
pub struct ReaderSettings {
    /// Local copies of segment byte ranges.
    pub cache_dir: PathBuf,
    /// What the cache may hold (bytes fetched); past it the least recently used segments go.
    pub cache_bytes: u64,
    /// How long a store node may take to answer a scatter request.
    pub scatter_timeout: Duration,
    /// Bearer token sent to the other nodes (when they require one).
    pub token: Option<String>,
}

impl std::fmt::Debug for ReaderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderSettings")
            .field("cache_dir", &self.cache_dir)
            .field("cache_bytes", &self.cache_bytes)
            .field("scatter_timeout", &self.scatter_timeout)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;
pub const DEFAULT_SCATTER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one query searches.
#[derive(Debug, Default)]
pub struct View {
    pub segments: Vec<Arc<Segment>>,
    pub chunks: Vec<Arc<MemChunk>>,
    /// What could not be reached, in words; not empty means the answer is partial.
    pub missing: Vec<String>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct CacheStats {
    pub segments: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
}

pub struct Reader {
    bus: Arc<Bus>,
    catalog: Arc<Catalog>,
    cfg: ReaderSettings,
    /// This node's own store role, read directly instead of over HTTP.
    local: Option<(String, Arc<StoreNode>)>,
    newest: Mutex<Arc<Snapshot>>,
    node_list: Mutex<Option<(std::time::Instant, Vec<Node>)>>,
    /// Live tails' feed while any tail listens.
    tail: Arc<Mutex<Option<tokio::sync::broadcast::Sender<Arc<Acked>>>>>,
    tail_next: Arc<AtomicU64>,
    cache: Arc<Cache>,
    agent: ureq::Agent,
}

impl Reader {
    pub fn new(
        bus: Arc<Bus>,
        catalog: Arc<Catalog>,
        cfg: ReaderSettings,
        local: Option<(String, Arc<StoreNode>)>,
    ) -> std::io::Result<Reader> {
        if cfg.cache_dir.exists() {
            std::fs::remove_dir_all(&cfg.cache_dir)?;
        }
        std::fs::create_dir_all(&cfg.cache_dir)?;
        let cache = Arc::new(Cache {
            dir: cfg.cache_dir.clone(),
            max_bytes: cfg.cache_bytes,
            entries: Mutex::new(HashMap::new()),
            bytes: Arc::new(AtomicU64::new(0)),
            hits: Arc::new(AtomicU64::new(0)),
            misses: Arc::new(AtomicU64::new(0)),
            tick: AtomicU64::new(0),
        });
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(cfg.scatter_timeout)
            .max_idle_connections_per_host(4)
            .build();
        Ok(Reader {
            bus,
            catalog,
            cfg,
            local,
            newest: Mutex::new(Arc::new(Snapshot::default())),
            node_list: Mutex::new(None),
            tail: Arc::new(Mutex::new(None)),
            tail_next: Arc::new(AtomicU64::new(0)),
            cache,
            agent,
        })
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Version and size of the newest catalog this node has read.
    pub fn catalog_stats(&self) -> (u64, usize, u64) {
        let s = self.newest.lock().clone();
        (s.version, s.segments.len(), s.segments.iter().map(|e| e.bytes).sum())
    }

    /// Everything `q` may need: the catalogued segments that may hold matches, and the store
    /// nodes' held batches with a match. Call it on the async runtime; search the view on a
    /// worker thread (reading a block may wait for object storage).
    pub async fn view(&self, q: &Query) -> View {
        let mut view = View::default();
        // held batches first: one uploaded after this is in the catalog read below
        let mut held: Vec<(u64, Vec<Record>)> = Vec::new();
        let nodes = match self.nodes().await {
            Ok(n) => n,
            Err(e) => {
                view.missing.push(format!("the node registry: {e}"));
                Vec::new()
            }
        };
        let wire = WireQuery::from(q);
        let mut asks = Vec::new();
        for n in nodes.into_iter().filter(|n| n.roles.iter().any(|r| r == "store")) {
            if let Some((id, store)) = &self.local {
                if *id == n.id {
                    let f = wire.filter();
                    held.extend(store.pending(|r| f.as_ref().is_none_or(|f| f.row_matches(r))));
                    continue;
                }
            }
            asks.push(self.ask(n, wire.clone()));
        }
        for (node, got) in futures_util::future::join_all(asks).await {
            match got {
                Ok(h) => held.extend(h),
                Err(e) => view.missing.push(format!("store node {} ({}): {e}", node.id, node.url)),
            }
        }
        let have = self.newest.lock().clone();
        let snap = match self.catalog.load_newer(Some(have.version).filter(|&v| v > 0)).await {
            Ok(Some(s)) => {
                let s = Arc::new(s);
                *self.newest.lock() = s.clone();
                s
            }
            Ok(None) => have,
            Err(e) => {
                view.missing.push(format!("the catalog: {e}"));
                self.newest.lock().clone()
            }
        };
        self.cache.forget_except(&snap);
        // segments not in the cache yet are opened (three ranged reads each) 16 at a time
        let wanted: Vec<SegmentEntry> = snap.segments.iter().filter(|e| may_match(e, q)).cloned().collect();
        for chunk in wanted.chunks(16) {
            let mut opens = Vec::with_capacity(chunk.len());
            for e in chunk {
                opens.push(self.cache.open(&self.catalog, e));
            }
            for (e, got) in chunk.iter().zip(futures_util::future::join_all(opens).await) {
                match got {
                    Ok(seg) => view.segments.push(seg),
                    Err(err) => view.missing.push(format!("segment {}: {err}", e.key)),
                }
            }
        }
        self.cache.evict();
        view.chunks = held
            .into_iter()
            .filter(|(seq, _)| !snap.stored.contains(*seq))
            .map(|(_, records)| Arc::new(MemChunk::new(records)))
            .collect();
        view
    }

    /// Every batch acknowledged from now on (as ingest nodes announce them), for a live tail;
    /// also the number the next record will have, as `Engine::subscribe`. The query node
    /// listens to the announcements only while a tail does.
    pub async fn subscribe_tail(&self) -> Result<(tokio::sync::broadcast::Receiver<Arc<Acked>>, u64), String> {
        if let Some(tx) = self.tail.lock().as_ref() {
            return Ok((tx.subscribe(), self.tail_next.load(Relaxed)));
        }
        // subscribed (and the NATS server told) before the tail is answered
        let mut sub = self.bus.subscribe_acked().await?;
        let mut feed = self.tail.lock();
        if let Some(tx) = feed.as_ref() {
            // another tail started the feed meanwhile; this subscription goes
            return Ok((tx.subscribe(), self.tail_next.load(Relaxed)));
        }
        let (tx, rx) = tokio::sync::broadcast::channel(TAIL_BACKLOG_GROUPS);
        *feed = Some(tx.clone());
        drop(feed);
        let (slot, next) = (self.tail.clone(), self.tail_next.clone());
        tokio::spawn(async move {
            loop {
                let got = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut sub)).await;
                {
                    // the last tail is gone: stop listening
                    let mut feed = slot.lock();
                    if tx.receiver_count() == 0 {
                        *feed = None;
                        return;
                    }
                }
                let msg = match got {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        *slot.lock() = None;
                        return;
                    }
                    Err(_) => continue,
                };
                let records = match tokio::task::spawn_blocking(move || crate::decode(&msg.payload)).await {
                    Ok(Ok(r)) => r,
                    _ => continue,
                };
                let n = records.len() as u64;
                let first = next.fetch_add(n, Relaxed);
                let _ = tx.send(Arc::new(Acked::new(first, n, records)));
            }
        });
        Ok((rx, self.tail_next.load(Relaxed)))
    }

    /// The registry's nodes, read at most every [`NODE_LIST_TTL`]. A store node starts pulling
    /// only [`STORE_START_DELAY`] after it registered, so no query misses the batches it holds.
    async fn nodes(&self) -> Result<Vec<Node>, String> {
        if let Some((at, nodes)) = &*self.node_list.lock() {
            if at.elapsed() < NODE_LIST_TTL {
                return Ok(nodes.clone());
            }
        }
        let nodes = self.bus.nodes().await?;
        *self.node_list.lock() = Some((std::time::Instant::now(), nodes.clone()));
        Ok(nodes)
    }

    /// One store node's held batches that match.
    async fn ask(&self, node: Node, q: WireQuery) -> (Node, Result<Vec<(u64, Vec<Record>)>, String>) {
        let agent = self.agent.clone();
        let url = format!("{}{PENDING_PATH}", node.url.trim_end_matches('/'));
        let token = self.cfg.token.clone();
        let got = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, Vec<Record>)>, String> {
            let mut req = agent.post(&url);
            if let Some(t) = &token {
                req = req.set("Authorization", &format!("Bearer {t}"));
            }
            let body = serde_json::to_vec(&q).expect("a query serialises");
            let resp = req.set("Content-Type", "application/json").send_bytes(&body).map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            std::io::Read::take(resp.into_reader(), MAX_PENDING_ANSWER + 1)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
            if body.len() as u64 > MAX_PENDING_ANSWER {
                return Err(format!("answered over {MAX_PENDING_ANSWER} bytes"));
            }
            decode_pending(&body)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        (node, got)
    }
}

/// Whether a catalogued segment may hold a match of `q` (apps and time range; the search
/// prunes the rest).
fn may_match(e: &SegmentEntry, q: &Query) -> bool {
    let app_ok = q.apps.is_empty() || q.apps.iter().any(|a| a.as_str() == e.app);
    let scope_ok = q.app_scope.is_empty() || q.app_scope.iter().any(|p| p.matches(&e.app));
    app_ok && scope_ok && q.from.is_none_or(|f| e.max_ts >= f) && q.to.is_none_or(|t| e.min_ts < t)
}

/// A query as sent to store nodes. `expr` travels as query-language text; a store node that
/// cannot read it back filters with the rest, which matches a superset (the query node applies
/// the whole filter again).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WireQuery {
    pub apps: Vec<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub tags_all: Vec<String>,
    pub tags_any: Vec<String>,
    pub tags_none: Vec<String>,
    pub contains: Vec<String>,
    pub icontains: Vec<String>,
    pub regex: Vec<String>,
    pub expr: Option<String>,
    pub app_scope: Vec<String>,
}

impl From<&Query> for WireQuery {
    fn from(q: &Query) -> WireQuery {
        WireQuery {
            apps: q.apps.iter().map(|a| a.as_str().to_string()).collect(),
            from: q.from,
            to: q.to,
            tags_all: q.tags_all.clone(),
            tags_any: q.tags_any.clone(),
            tags_none: q.tags_none.clone(),
            contains: q.contains.clone(),
            icontains: q.icontains.clone(),
            regex: q.regex.clone(),
            expr: q.expr.as_ref().map(|e| e.to_string()),
            app_scope: q.app_scope.iter().map(|p| p.as_str().to_string()).collect(),
        }
    }
}

impl WireQuery {
    /// The query back; `Err` names what does not parse.
    pub fn query(&self) -> Result<Query, String> {
        let apps = self.apps.iter().map(|a| AppName::parse(a).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        let app_scope =
            self.app_scope.iter().map(|p| AppPattern::parse(p).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        // an expression that does not read back is left out: a superset is still correct
        let expr = self.expr.as_deref().and_then(|e| logpipe_query::parse(e).ok()).and_then(|p| p.filter);
        Ok(Query {
            apps,
            from: self.from,
            to: self.to,
            tags_all: self.tags_all.clone(),
            tags_any: self.tags_any.clone(),
            tags_none: self.tags_none.clone(),
            contains: self.contains.clone(),
            icontains: self.icontains.clone(),
            regex: self.regex.clone(),
            expr,
            app_scope,
        })
    }

    /// The compiled filter (`None`: it does not compile here; everything is sent).
    fn filter(&self) -> Option<logpipe_storage::Filter> {
        let q = self.query().ok()?;
        logpipe_storage::Filter::compile(&q, logpipe_storage::DEFAULT_REGEX_SIZE_LIMIT).ok()
    }
}

/// Held batches as sent to query nodes: per batch, its stream sequence (u64 LE), the length of
/// its encoding (u32 LE) and the encoding (`logpipe_storage::batch`).
pub fn encode_pending(held: &[(u64, Vec<Record>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, records) in held {
        let b = batch::encode(records);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

pub fn decode_pending(mut buf: &[u8]) -> Result<Vec<(u64, Vec<Record>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 12 {
            return Err("truncated pending answer".into());
        }
        let seq = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
        let Some(body) = buf.get(12..12 + len) else { return Err("truncated pending answer".into()) };
        out.push((seq, batch::decode(body).map_err(|_| "malformed pending batch".to_string())?));
        buf = &buf[12 + len..];
    }
    Ok(out)
}

/// Local copies of segments' byte ranges, by object key.
struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    entries: Mutex<HashMap<String, Cached>>,
    /// Bytes fetched into the files of live entries.
    bytes: Arc<AtomicU64>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    tick: AtomicU64,
}

struct Cached {
    seg: Arc<Segment>,
    file: Arc<Remote>,
    last_used: u64,
}

impl Cache {
    fn stats(&self) -> CacheStats {
        let (hits, misses) = (self.hits.load(Relaxed), self.misses.load(Relaxed));
        CacheStats {
            segments: self.entries.lock().len() as u64,
            bytes: self.bytes.load(Relaxed),
            max_bytes: self.max_bytes,
            hits,
            misses,
            hit_rate: if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
        }
    }

    async fn open(&self, catalog: &Arc<Catalog>, e: &SegmentEntry) -> Result<Arc<Segment>, CatalogError> {
        let tick = self.tick.fetch_add(1, Relaxed);
        if let Some(c) = self.entries.lock().get_mut(&e.key) {
            c.last_used = tick;
            return Ok(c.seg.clone());
        }
        if e.bytes < HEADER_LEN + FOOTER_LEN {
            return Err(CatalogError::Local(format!(
                "{} is listed with {} bytes, too few for a segment",
                e.key, e.bytes
            )));
        }
        // the header, then the tail: the meta (usually within the guess) and the footer
        let header = catalog.get_range(&e.key, 0..HEADER_LEN).await?;
        let tail_from = e.bytes.saturating_sub(TAIL_GUESS).max(HEADER_LEN);
        let mut tail = catalog.get_range(&e.key, tail_from..e.bytes).await?;
        let footer = &tail[tail.len() - FOOTER_LEN as usize..];
        let meta_offset = u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"));
        let mut tail_at = tail_from;
        if meta_offset < tail_from && meta_offset >= HEADER_LEN {
            tail = catalog.get_range(&e.key, meta_offset..e.bytes).await?;
            tail_at = meta_offset;
        }
        // object keys come from the catalog: the local name is a hash, never the key
        // (a number per open too: two queries opening the same segment at once must not share
        // a file one of them is about to drop)
        let path = self.dir.join(format!("{:016x}-{tick}.seg", xxhash_rust::xxh3::xxh3_64(e.key.as_bytes())));
        let fetched = header.len() as u64 + tail.len() as u64;
        let remote_of = {
            let (catalog, key, rt) = (catalog.clone(), e.key.clone(), tokio::runtime::Handle::current());
            let (cache_bytes, hits, misses) = (self.bytes.clone(), self.hits.clone(), self.misses.clone());
            move |file| Remote {
                catalog,
                key,
                file,
                blocks: Mutex::new(HashSet::new()),
                bytes: AtomicU64::new(fetched),
                cache_bytes,
                hits,
                misses,
                rt,
            }
        };
        // the local file is written and opened off the async runtime
        let (len, at) = (e.bytes, path.clone());
        let opened = tokio::task::spawn_blocking(move || -> Result<(Arc<Segment>, Arc<Remote>), String> {
            let local = |err: std::io::Error| format!("{}: {err}", at.display());
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&at)
                .map_err(local)?;
            file.set_len(len).map_err(local)?;
            file.write_all_at(&header, 0).map_err(local)?;
            file.write_all_at(&tail, tail_at).map_err(local)?;
            let remote = Arc::new(remote_of(file));
            match Segment::open_remote(&at, remote.clone()) {
                Ok(seg) => Ok((Arc::new(seg), remote)),
                Err(err) => {
                    let _ = std::fs::remove_file(&at);
                    Err(err.to_string())
                }
            }
        })
        .await
        .map_err(|err| CatalogError::Local(err.to_string()))?;
        let (seg, remote) = opened.map_err(CatalogError::Local)?;
        self.bytes.fetch_add(fetched, Relaxed);
        let mut entries = self.entries.lock();
        if let Some(c) = entries.get(&e.key) {
            // opened by another query meanwhile: use that one, drop this copy
            let kept = c.seg.clone();
            drop(entries);
            self.bytes.fetch_sub(remote.bytes.load(Relaxed), Relaxed);
            let _ = std::fs::remove_file(&path);
            return Ok(kept);
        }
        entries.insert(e.key.clone(), Cached { seg: seg.clone(), file: remote, last_used: tick });
        Ok(seg)
    }

    /// Drops the segments the catalog no longer lists (merged or expired).
    fn forget_except(&self, snap: &Snapshot) {
        let live: HashSet<&str> = snap.segments.iter().map(|e| e.key.as_str()).collect();
        let gone: Vec<String> = self.entries.lock().keys().filter(|k| !live.contains(k.as_str())).cloned().collect();
        for k in gone {
            self.drop_entry(&k);
        }
    }

    /// Drops the least recently used segments while the cache holds more than its budget.
    /// Queries still reading a dropped segment keep its open file.
    fn evict(&self) {
        while self.bytes.load(Relaxed) > self.max_bytes {
            let oldest = self.entries.lock().iter().min_by_key(|(_, c)| c.last_used).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.drop_entry(&k),
                None => return,
            }
        }
    }

    fn drop_entry(&self, key: &str) {
        if let Some(c) = self.entries.lock().remove(key) {
            self.bytes.fetch_sub(c.file.bytes.load(Relaxed), Relaxed);
            let _ = std::fs::remove_file(c.seg.path());
        }
    }
}

/// A segment object's local sparse copy: blocks are fetched the first time they are read.
struct Remote {
    catalog: Arc<Catalog>,
    key: String,
    file: std::fs::File,
    /// Offsets of the blocks fetched.
    blocks: Mutex<HashSet<u64>>,
    bytes: AtomicU64,
    cache_bytes: Arc<AtomicU64>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Fetch for Remote {
    fn ensure(&self, offset: u64, len: u64) -> std::io::Result<()> {
        if self.blocks.lock().contains(&offset) {
            self.hits.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.misses.fetch_add(1, Relaxed);
        // called on a query worker thread, never on the runtime's own
        let bytes = self
            .rt
            .block_on(self.catalog.get_range(&self.key, offset..offset + len))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if bytes.len() as u64 != len {
            return Err(std::io::Error::other(format!("asked for {len} bytes, got {}", bytes.len())));
        }
        self.file.write_all_at(&bytes, offset)?;
        if self.blocks.lock().insert(offset) {
            self.bytes.fetch_add(len, Relaxed);
            self.cache_bytes.fetch_add(len, Relaxed);
        }
        Ok(())
    }
}
