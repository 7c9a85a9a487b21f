//! One function per kind of request, each over the sources a snapshot gave: what a query
//! answers is computed here, block by block on the query pool, then merged.

use logpipe_model::{AppName, Record};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::cost::Cost;
use crate::filter::Filter;
use crate::Result;

use super::*;

pub(crate) fn run(sources: Vec<Source>, f: &Filter, req: &Request, cost: &Cost) -> Result<Answer> {
    match *req {
        Request::Count => count(&sources, f, cost),
        Request::Histogram { step } => histogram(&sources, f, step, cost),
        Request::CountBy { ref key, limit } => count_by(&sources, f, key, limit, cost),
        Request::Streams { limit } => streams(&sources, f, limit, cost),
        Request::HistogramBy { step, ref key, limit } => histogram_by(&sources, f, step, key, limit, cost),
        Request::Logs { limit, order, cursor } => logs(sources, f, limit, order, cursor, cost),
    }
}

/// `Request::Count`: blocks whose time range the filter covers whole count from their metadata.
fn count(sources: &[Source], f: &Filter, cost: &Cost) -> Result<Answer> {
    let n = sources
        .par_iter()
        .map(|s| -> Result<u64> {
            Ok(match s {
                Source::Block { seg, idx } => {
                    let meta = &seg.meta.blocks[*idx];
                    if f.is_time_only() && f.covers(meta.min_ts, meta.max_ts) {
                        u64::from(meta.rows)
                    } else {
                        let m = eval_block(seg, *idx, f, Want::Rows, cost)?;
                        m.counted.unwrap_or(m.rows.len() as u64)
                    }
                }
                Source::Mem(c) => mem_matches(c, f, cost)?.count() as u64,
            })
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    Ok(Answer::Count(n))
}

/// `Request::Histogram`: a block inside one bucket that the filter covers whole counts from its metadata.
fn histogram(sources: &[Source], f: &Filter, step: i64, cost: &Cost) -> Result<Answer> {
    let bucket = |t: i64| t - t.rem_euclid(step);
    let h = tally(
        sources,
        cost,
        "histogram buckets",
        |_| BUCKET_ENTRY_BYTES,
        |s, emit| {
            match s {
                Source::Block { seg, idx } => {
                    let meta = &seg.meta.blocks[*idx];
                    if f.is_time_only()
                        && f.covers(meta.min_ts, meta.max_ts)
                        && bucket(meta.min_ts) == bucket(meta.max_ts)
                    {
                        emit(bucket(meta.min_ts), u64::from(meta.rows));
                    } else {
                        let m = eval_block(seg, *idx, f, Want::Times, cost)?;
                        // no timestamps means the block was pruned and no row matched
                        if let Some(ts) = &m.ts {
                            bucket_runs(step, m.rows.iter().map(|&r| ts[r as usize]), emit);
                        }
                    }
                }
                Source::Mem(c) => {
                    for r in mem_matches(c, f, cost)? {
                        emit(bucket(r.ts), 1);
                    }
                }
            }
            Ok(())
        },
    )?;
    let mut buckets: Vec<(i64, u64)> = h.into_iter().collect();
    buckets.sort_unstable();
    Ok(Answer::Histogram(buckets))
}

/// `Request::CountBy`: the most frequent values of tag key `key`, one lookup per distinct tag set of a block.
fn count_by(sources: &[Source], f: &Filter, key: &str, limit: usize, cost: &Cost) -> Result<Answer> {
    let counts = tally(sources, cost, "distinct values", value_bytes, |s, emit| {
        match s {
            Source::Block { seg, idx } => {
                let m = eval_block(seg, *idx, f, Want::Tags, cost)?;
                if let Some(tags) = &m.tags {
                    // one lookup per distinct tag set, then a count per row
                    for (set, n) in rows_per_set(tags, &m.rows) {
                        emit(set_value(tags, set, key), n);
                    }
                }
            }
            Source::Mem(c) => {
                for r in mem_matches(c, f, cost)? {
                    emit(value_of(r.tags.iter().map(String::as_str), key).map(str::to_owned), 1);
                }
            }
        }
        Ok(())
    })?;
    let total = counts.len();
    let mut values: Vec<(Option<String>, u64)> = counts.into_iter().collect();
    by_count(&mut values);
    values.truncate(limit);
    Ok(Answer::Values { values, total })
}

/// `Request::Streams`: the busiest (app, tag set) pairs.
fn streams(sources: &[Source], f: &Filter, limit: usize, cost: &Cost) -> Result<Answer> {
    type Key = (AppName, Vec<String>);
    let size = |k: &Key| VALUE_ENTRY_BYTES + k.1.iter().map(|t| t.len() as u64 + 24).sum::<u64>();
    let counts = tally(sources, cost, "distinct streams", size, |s, emit: &mut dyn FnMut(Key, u64)| {
        match s {
            Source::Block { seg, idx } => {
                let m = eval_block(seg, *idx, f, Want::Tags, cost)?;
                if let Some(tags) = &m.tags {
                    for (set, n) in rows_per_set(tags, &m.rows) {
                        let ids = tags.sets.set(set as usize);
                        let mut set: Vec<String> =
                            ids.iter().map(|&id| tags.sets.strings[id as usize].clone()).collect();
                        set.sort_unstable();
                        emit((seg.meta.app.clone(), set), n);
                    }
                }
            }
            Source::Mem(c) => {
                for r in mem_matches(c, f, cost)? {
                    let mut set = r.tags.to_vec();
                    set.sort_unstable();
                    emit((r.app.clone(), set), 1);
                }
            }
        }
        Ok(())
    })?;
    let total = counts.len();
    let mut streams: Vec<(AppName, Vec<String>, u64)> =
        counts.into_iter().map(|((app, tags), n)| (app, tags, n)).collect();
    streams.sort_unstable_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    streams.truncate(limit);
    Ok(Answer::Streams { streams, total })
}

/// `Request::HistogramBy`: buckets per value of tag key `key`, the `limit` busiest values apart and the rest summed.
fn histogram_by(sources: &[Source], f: &Filter, step: i64, key: &str, limit: usize, cost: &Cost) -> Result<Answer> {
    let bucket = |t: i64| t - t.rem_euclid(step);
    let size = |k: &(Option<String>, i64)| value_bytes(&k.0) + BUCKET_ENTRY_BYTES;
    let counts = tally(sources, cost, "histogram buckets per value", size, |s, emit| {
        match s {
            Source::Block { seg, idx } => {
                let m = eval_block(seg, *idx, f, Want::TimesTags, cost)?;
                if let (Some(ts), Some(tags)) = (&m.ts, &m.tags) {
                    // rows are in time order: count runs of equal (bucket, tag set)
                    let mut values: FxHashMap<u32, Option<String>> = FxHashMap::default();
                    let mut run: Option<(i64, u32, u64)> = None;
                    let mut flush = |run: (i64, u32, u64), emit: &mut dyn FnMut((Option<String>, i64), u64)| {
                        let v = values.entry(run.1).or_insert_with(|| set_value(tags, run.1, key));
                        emit((v.clone(), run.0), run.2);
                    };
                    for &r in &m.rows {
                        let (b, set) = (bucket(ts[r as usize]), tags.rows[r as usize]);
                        match &mut run {
                            Some((rb, rs, n)) if *rb == b && *rs == set => *n += 1,
                            _ => {
                                if let Some(done) = run.replace((b, set, 1)) {
                                    flush(done, emit);
                                }
                            }
                        }
                    }
                    if let Some(done) = run {
                        flush(done, emit);
                    }
                }
            }
            Source::Mem(c) => {
                for r in mem_matches(c, f, cost)? {
                    let v = value_of(r.tags.iter().map(String::as_str), key).map(str::to_owned);
                    emit((v, bucket(r.ts)), 1);
                }
            }
        }
        Ok(())
    })?;
    let mut per_value: FxHashMap<Option<String>, Series> = FxHashMap::default();
    for ((v, b), n) in counts {
        let e = per_value.entry(v).or_default();
        e.1 += n;
        e.2.push((b, n));
    }
    let total = per_value.len();
    let mut ranked: Vec<(Option<String>, u64)> = per_value.iter().map(|(v, e)| (v.clone(), e.1)).collect();
    by_count(&mut ranked);
    let mut series = Vec::with_capacity(limit.min(total));
    let mut other: FxHashMap<i64, u64> = FxHashMap::default();
    for (i, (v, n)) in ranked.into_iter().enumerate() {
        let (_, _, mut buckets) = per_value.remove(&v).expect("ranked from this map");
        if i < limit {
            buckets.sort_unstable();
            series.push((v, n, buckets));
        } else {
            for (b, c) in buckets {
                *other.entry(b).or_default() += c;
            }
        }
    }
    let mut other: Vec<(i64, u64)> = other.into_iter().collect();
    other.sort_unstable();
    Ok(Answer::Series { series, other, total })
}

/// `Request::Logs`: a page of records, read in waves of sources in time order until no
/// remaining source can hold a better record than the page's worst.
fn logs(
    mut sources: Vec<Source>,
    f: &Filter,
    limit: usize,
    order: Order,
    cursor: Option<Cursor>,
    cost: &Cost,
) -> Result<Answer> {
    let skip = cursor.map_or(0, |c| c.skip as usize);
    let k = limit + skip;
    if limit == 0 {
        return Ok(Answer::Logs { records: Vec::new(), next: None });
    }
    match order {
        Order::Desc => sources.sort_unstable_by_key(|s| std::cmp::Reverse(s.max_ts())),
        Order::Asc => sources.sort_unstable_by_key(|s| s.min_ts()),
    }
    let cmp = cmp_in(order);
    let wave = (rayon::current_num_threads() * 2).max(4);
    let mut best: Vec<Record> = Vec::new();
    let mut i = 0;
    while i < sources.len() {
        if best.len() >= k {
            let worst = best[k - 1].ts;
            let next = &sources[i];
            let done = match order {
                Order::Desc => next.max_ts() < worst,
                Order::Asc => next.min_ts() > worst,
            };
            if done {
                break;
            }
        }
        let end = (i + wave).min(sources.len());
        let found: Vec<Vec<Record>> =
            sources[i..end].par_iter().map(|s| top_of(s, f, order, k, cost)).collect::<Result<_>>()?;
        for v in found {
            best.extend(v);
        }
        best.sort_unstable_by(cmp);
        if best.len() > k {
            cost.release(records_bytes(&best[k..]));
            best.truncate(k);
        }
        i = end;
    }
    // a cursor resumes inside the run of records sharing its timestamp
    let mut records = best;
    if let Some(c) = cursor {
        let dropped = records.iter().take(skip).take_while(|r| r.ts == c.ts).count();
        records.drain(..dropped);
        records.truncate(limit);
    }
    let next = (records.len() == limit).then(|| {
        let last = records.last().expect("limit > 0").ts;
        let mut same = records.iter().rev().take_while(|r| r.ts == last).count() as u64;
        if let Some(c) = cursor {
            if c.ts == last && records.iter().all(|r| r.ts == last) {
                same += c.skip;
            }
        }
        Cursor { ts: last, skip: same }
    });
    Ok(Answer::Logs { records, next })
}
