//! Settling: a finished day rewritten once into a single segment at the cold level.

use crate::block::BlockOptions;
use crate::engine::{now_ns, Inner};
use crate::Result;

use super::merge::{merge_and_publish, sound};
use super::*;

/// Rewrites one settled partition (its day is over and no flush touched it for
/// `settle_after`) into a single segment at the cold zstd level: the smallest, fastest form
/// for data that will only be read from now on. Returns whether it did anything.
pub(crate) fn settle_once(inner: &Inner) -> Result<bool> {
    let now = now_ns();
    let picked = {
        let mut busy = inner.busy.lock();
        let st = inner.state.read();
        let picked = st
            .partitions
            .iter()
            .filter(|(k, _)| !busy.contains(*k))
            .map(|(k, segs)| (k, sound(segs)))
            .find(|(k, segs)| {
                let quiet_since = st.last_flush.get(*k).copied().unwrap_or(inner.opened);
                k.end() <= now
                    && quiet_since.elapsed() >= inner.cfg.settle_after
                    && (segs.len() > 1 || segs.iter().any(|s| s.meta.level < inner.cfg.cold_level))
            })
            .map(|(k, segs)| (k.clone(), segs));
        picked.map(|(key, inputs)| {
            busy.insert(key.clone());
            (Claim { inner, key }, inputs)
        })
    };
    let Some((claim, inputs)) = picked else {
        return Ok(false);
    };
    merge_and_publish(
        inner,
        &claim.key,
        &inputs,
        BlockOptions { level: inner.cfg.cold_level, templates: true, ..inner.cfg.block },
    )
}
