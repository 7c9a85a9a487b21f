//! The catalog on a real S3 gateway (SeaweedFS on loopback): create-if-absent holds, and
//! concurrent writers each land every change exactly once.

#[path = "../../cli/tests/common/seaweed.rs"]
mod seaweed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use logpipe_cluster::catalog::{s3_store, Catalog, CatalogError, S3Config, SegmentEntry};

fn catalog(sw: &seaweed::Seaweed, prefix: &str) -> Catalog {
    let cfg = S3Config {
        endpoint: Some(sw.s3.clone()),
        bucket: "logpipe".into(),
        region: Some("us-east-1".into()),
        access_key_id: Some(seaweed::ACCESS_KEY.into()),
        secret_access_key: Some(seaweed::SECRET_KEY.into()),
    };
    Catalog::new(s3_store(&cfg).unwrap(), prefix)
}

/// Waits until the S3 gateway answers (it starts after the filer).
async fn ready(cat: &Catalog) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match cat.load().await {
            Ok(_) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "S3 gateway not ready: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_catalog_on_seaweedfs_serialises_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let sw = seaweed::Seaweed::start(dir.path(), "logpipe");
    let cat = Arc::new(catalog(&sw, "cluster-a"));
    ready(&cat).await;

    // immutable objects: the second write of a key is refused, the first is kept
    cat.put_object("segments/web/2025-01-01/1.seg", b"first".to_vec()).await.unwrap();
    let again = cat.put_object("segments/web/2025-01-01/1.seg", b"second".to_vec()).await;
    assert!(matches!(again, Err(CatalogError::Store(object_store::Error::AlreadyExists { .. }))), "{again:?}");
    assert_eq!(&cat.get_object("segments/web/2025-01-01/1.seg").await.unwrap()[..], b"first");

    // four writers, 15 changes each, all at once: every change lands once, in 60 versions
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let cat = cat.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15u64 {
                let seq = w * 1000 + i;
                cat.update(|s| {
                    s.stored.insert(seq);
                    s.segments.push(SegmentEntry {
                        key: format!("segments/web/2025-01-01/{seq}.seg"),
                        app: "web".into(),
                        day: "2025-01-01".into(),
                        min_ts: seq as i64,
                        max_ts: seq as i64,
                        records: 1,
                        bytes: 1,
                    });
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
    assert_eq!(snap.version, 60);
    // the writers did race (75 and 116 lost races in two runs here)
    assert!(cat.conflicts() > 0);
    assert_eq!(snap.stored.len(), 60);
    assert_eq!(snap.segments.len(), 60);
    let mut keys: Vec<_> = snap.segments.iter().map(|s| s.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 60, "no change was applied twice");
    assert!((0..4).all(|w| (0..15).all(|i| snap.stored.contains(w * 1000 + i))));

    // another prefix is another catalog
    assert_eq!(catalog(&sw, "cluster-b").load().await.unwrap().version, 0);
}
