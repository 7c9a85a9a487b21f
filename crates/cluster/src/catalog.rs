//! The cluster's catalog in object storage: which segment objects exist, what each holds, and
//! which stream sequences are stored in them.
//!
//! ```text
//! <prefix>/catalog/00000000000000000007.json   one full snapshot per version, written once
//! <prefix>/segments/<app>/<day>/<id>.seg       immutable segment objects, written once
//! ```
//!
//! Every object is written with create-if-absent (`PutMode::Create`, S3's `If-None-Match: *`),
//! so nothing is ever overwritten. A change reads the newest snapshot N, applies itself and
//! writes N+1; when another writer got there first, the write fails with `AlreadyExists` and
//! the change is applied again to the newer snapshot. Concurrent writers therefore serialise
//! on the object store's own atomic create, with no lock and no protocol of logpipe's own.
//! Old snapshots are deleted once [`KEEP_VERSIONS`] newer ones exist.

use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

/// Snapshots kept behind the newest (readers that listed a moment ago still find theirs).
pub const KEEP_VERSIONS: u64 = 16;
/// Tries of one change against newer snapshots before giving up.
const MAX_TRIES: usize = 64;

/// A segment object and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Object key, relative to the catalog's prefix.
    pub key: String,
    pub app: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub min_ts: i64,
    pub max_ts: i64,
    pub records: u64,
    pub bytes: u64,
}

/// One version of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    pub segments: Vec<SegmentEntry>,
    /// Stream sequences whose records are in the segments: a redelivered batch found here is
    /// acknowledged without being stored again.
    pub stored: SeqSet,
    /// Objects no longer listed (merged or expired), deleted once their grace is over.
    #[serde(default)]
    pub garbage: Vec<Garbage>,
}

/// An object that left the catalog, and when it may be deleted (ns since the epoch): queries
/// that planned with an older catalog may still read it until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Garbage {
    pub key: String,
    pub delete_after: i64,
}

impl Garbage {
    pub fn after(key: String, grace: std::time::Duration) -> Garbage {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        Garbage { key, delete_after: now.saturating_add(grace.as_nanos() as i64) }
    }
}

/// A set of stream sequences as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSet(Vec<(u64, u64)>);

impl SeqSet {
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < seq);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= seq)
    }

    pub fn insert(&mut self, seq: u64) {
        let i = self.0.partition_point(|&(_, hi)| hi.saturating_add(1) < seq);
        match self.0.get_mut(i) {
            Some(r) if r.0 <= seq.saturating_add(1) => {
                r.0 = r.0.min(seq);
                r.1 = r.1.max(seq);
                // the range may now touch the next one
                if let Some(&(next_lo, next_hi)) = self.0.get(i + 1) {
                    if next_lo <= self.0[i].1.saturating_add(1) {
                        self.0[i].1 = next_hi;
                        self.0.remove(i + 1);
                    }
                }
            }
            _ => self.0.insert(i, (seq, seq)),
        }
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("catalog snapshot {key} is damaged: {why}")]
    Damaged { key: String, why: String },
    /// Building a segment on this node's disk failed.
    #[error("{0}")]
    Local(String),
    #[error("gave up after {MAX_TRIES} concurrent changes won the race to the next catalog version")]
    Contended,
}

/// Where the bucket is. Unset fields come from the standard `AWS_*` environment variables
/// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …).
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// An S3 client for `cfg`; plain `http://` endpoints (a local SeaweedFS or MinIO) are allowed.
pub fn s3_store(cfg: &S3Config) -> Result<Arc<dyn ObjectStore>, CatalogError> {
    // fail within seconds when the store is down: queries say what is missing, store nodes
    // keep their batches and retry
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(2))
        .with_timeout(std::time::Duration::from_secs(60));
    // client options first: setting them replaces allow_http, set below
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_client_options(client)
        .with_retry(retry)
        .with_bucket_name(&cfg.bucket);
    // the endpoint from AWS_ENDPOINT too, so that a plain http:// one is allowed either way
    let endpoint = cfg.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT").ok().filter(|e| !e.is_empty()));
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e).with_allow_http(e.starts_with("http://")).with_virtual_hosted_style_request(false);
    }
    if let Some(r) = &cfg.region {
        b = b.with_region(r);
    }
    if let Some(k) = &cfg.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(s) = &cfg.secret_access_key {
        b = b.with_secret_access_key(s);
    }
    Ok(Arc::new(b.build()?))
}

pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Changes that lost the race to a version and were applied again.
    conflicts: std::sync::atomic::AtomicU64,
}

impl Catalog {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Catalog {
        Catalog { store, prefix: Path::from(prefix), conflicts: Default::default() }
    }

    /// How many changes lost the race to a version and were applied again, so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn snapshot_path(&self, version: u64) -> Path {
        self.prefix.clone().join("catalog").join(format!("{version:020}.json"))
    }

    /// Versions of the snapshots present, oldest first.
    async fn versions(&self) -> Result<Vec<u64>, CatalogError> {
        let dir = self.prefix.clone().join("catalog");
        let metas: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut v: Vec<u64> =
            metas.iter().filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok()).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Whether the bucket answers: one listing of the catalog (for readiness probes).
    pub async fn check(&self) -> Result<(), CatalogError> {
        self.versions().await.map(|_| ())
    }

    /// The newest snapshot (version 0, empty, before the first change).
    pub async fn load(&self) -> Result<Snapshot, CatalogError> {
        Ok(self.load_newer(None).await?.unwrap_or_default())
    }

    /// The newest snapshot if it is not version `have` (one listing, and a read only when
    /// there is a newer version); `None` when `have` is still the newest, or there is none.
    pub async fn load_newer(&self, have: Option<u64>) -> Result<Option<Snapshot>, CatalogError> {
        for _ in 0..MAX_TRIES {
            let Some(&newest) = self.versions().await?.last() else { return Ok(None) };
            if have == Some(newest) {
                return Ok(None);
            }
            let path = self.snapshot_path(newest);
            match self.store.get(&path).await {
                Ok(got) => {
                    let bytes = got.bytes().await?;
                    let snap: Snapshot = serde_json::from_slice(&bytes)
                        .map_err(|e| CatalogError::Damaged { key: path.to_string(), why: e.to_string() })?;
                    if snap.version != newest {
                        return Err(CatalogError::Damaged {
                            key: path.to_string(),
                            why: format!("holds version {}", snap.version),
                        });
                    }
                    return Ok(Some(snap));
                }
                // deleted as too old between the listing and the read: list again
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contended)
    }

    /// Applies `change` to the newest snapshot and writes the result as the next version;
    /// when another writer wrote that version first, applies `change` again to theirs.
    /// `change` returns `false` to leave the catalog as it is. Returns the snapshot now newest.
    pub async fn update<F>(&self, mut change: F) -> Result<Snapshot, CatalogError>
    where
        F: FnMut(&mut Snapshot) -> bool,
    {
        for _ in 0..MAX_TRIES {
            let mut snap = self.load().await?;
            if !change(&mut snap) {
                return Ok(snap);
            }
            snap.version += 1;
            let body = serde_json::to_vec(&snap).expect("a snapshot serialises");
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&self.snapshot_path(snap.version), PutPayload::from(body), opts).await {
                Ok(_) => {
                    self.forget_before(snap.version).await;
                    return Ok(snap);
                }
                Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                    self.conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contended)
    }

    /// Deletes snapshots more than [`KEEP_VERSIONS`] behind `newest` (best effort).
    async fn forget_before(&self, newest: u64) {
        if newest <= KEEP_VERSIONS || !newest.is_multiple_of(KEEP_VERSIONS) {
            return;
        }
        let Ok(versions) = self.versions().await else { return };
        for v in versions.into_iter().filter(|&v| v + KEEP_VERSIONS < newest) {
            let _ = self.store.delete(&self.snapshot_path(v)).await;
        }
    }

    /// Writes an immutable object (a segment) under the prefix; refuses to replace one.
    pub async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), CatalogError> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        self.store.put_opts(&self.prefix.child_path(key), PutPayload::from(bytes), opts).await?;
        Ok(())
    }

    /// Deletes an object under the prefix.
    pub async fn delete_object(&self, key: &str) -> Result<(), CatalogError> {
        self.store.delete(&self.prefix.child_path(key)).await?;
        Ok(())
    }

    /// Bytes `range` of an object under the prefix.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<bytes::Bytes, CatalogError> {
        Ok(self.store.get_range(&self.prefix.child_path(key), range).await?)
    }

    /// Reads an object written by [`Catalog::put_object`].
    pub async fn get_object(&self, key: &str) -> Result<bytes::Bytes, CatalogError> {
        Ok(self.store.get(&self.prefix.child_path(key)).await?.bytes().await?)
    }
}

/// `Path::child` for a key of several parts.
trait ChildPath {
    fn child_path(&self, key: &str) -> Path;
}

impl ChildPath for Path {
    fn child_path(&self, key: &str) -> Path {
        key.split('/').fold(self.clone(), |p, part| p.join(part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_seq_set_is_the_set_of_what_was_inserted(seqs in proptest::collection::vec(0u64..200, 0..300)) {
            let mut set = SeqSet::default();
            let mut want = std::collections::BTreeSet::new();
            for s in seqs {
                set.insert(s);
                want.insert(s);
            }
            for s in 0..210 {
                prop_assert_eq!(set.contains(s), want.contains(&s), "{}", s);
            }
            prop_assert_eq!(set.len(), want.len() as u64);
            // ranges stay sorted, disjoint and non-adjacent
            for w in set.ranges().windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0, "{:?}", set.ranges());
            }
        }
    }

    #[tokio::test]
    async fn concurrent_changes_all_land_once_in_memory() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let cat = Arc::new(Catalog::new(store.clone(), "t"));
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let cat = cat.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10u64 {
                    cat.update(|s| {
                        s.stored.insert(w * 100 + i);
                        true
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let snap = cat.load().await.unwrap();
        assert_eq!(snap.version, 40);
        assert_eq!(snap.stored.len(), 40);
        // old snapshots are dropped: at version 32, those before 16 went
        let kept: Vec<_> = store.list(Some(&Path::from("t/catalog"))).try_collect().await.unwrap();
        assert_eq!(kept.len(), 40 - 15, "{kept:?}");
    }
}
