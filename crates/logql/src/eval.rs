//! The metric evaluator, without I/O: range functions over the points a store read gave
//! ([`windows`]), aggregations, and arithmetic and comparisons between values ([`combine`]).

use std::collections::{BTreeMap, HashMap};

use crate::ast::*;

/// A value at every step: a number, or samples with their labels.
pub enum Val {
    Scalar(f64),
    Vector(Vec<Vec<(Labels, f64)>>),
}

/// The value of `e` at `steps`, given the values of its range functions in the order
/// [`collect_ranges`] lists them.
pub fn combine(e: &MetricExpr, steps: &[i64], ranges: &mut impl Iterator<Item = Val>) -> Result<Val, String> {
    Ok(match e {
        MetricExpr::Number(v) => Val::Scalar(*v),
        MetricExpr::Vector(v) => Val::Vector(steps.iter().map(|_| vec![(Labels::new(), *v)]).collect()),
        MetricExpr::Range { .. } => ranges.next().expect("one value per range function"),
        MetricExpr::Agg { op, param, grouping, inner } => {
            let Val::Vector(v) = combine(inner, steps, ranges)? else {
                return Err("an aggregation takes a vector, not a number".into());
            };
            Val::Vector(v.into_iter().map(|samples| aggregate(*op, *param, grouping.as_ref(), samples)).collect())
        }
        MetricExpr::Binary { op, lhs, rhs } => {
            let l = combine(lhs, steps, ranges)?;
            let r = combine(rhs, steps, ranges)?;
            binary(*op, l, r)?
        }
    })
}

/// `func` over windows `(t - range, t]` for every step `t`, of each series' points
/// `(timestamp, line bytes)` in time order.
pub fn windows(func: RangeFn, range: i64, steps: &[i64], series: HashMap<Labels, Vec<(i64, u64)>>) -> Val {
    let secs = range as f64 / 1e9;
    let mut out: Vec<Vec<(Labels, f64)>> = vec![Vec::new(); steps.len()];
    let mut series: Vec<(Labels, Vec<(i64, u64)>)> = series.into_iter().collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    for (labels, points) in series {
        // both window edges only move forward
        let (mut lo, mut hi, mut sum) = (0usize, 0usize, 0u64);
        for (k, &t) in steps.iter().enumerate() {
            while hi < points.len() && points[hi].0 <= t {
                sum += points[hi].1;
                hi += 1;
            }
            while lo < hi && points[lo].0 <= t - range {
                sum -= points[lo].1;
                lo += 1;
            }
            let n = hi - lo;
            if n == 0 {
                continue;
            }
            let v = match func {
                RangeFn::CountOverTime => n as f64,
                RangeFn::Rate => n as f64 / secs,
                RangeFn::BytesOverTime => sum as f64,
                RangeFn::BytesRate => sum as f64 / secs,
            };
            out[k].push((labels.clone(), v));
        }
    }
    Val::Vector(out)
}

/// The range functions of `e`, left to right.
pub fn collect_ranges<'e>(e: &'e MetricExpr, out: &mut Vec<(RangeFn, &'e LogExpr, i64)>) {
    match e {
        MetricExpr::Range { func, log, range } => out.push((*func, log, *range)),
        MetricExpr::Agg { inner, .. } => collect_ranges(inner, out),
        MetricExpr::Binary { lhs, rhs, .. } => {
            collect_ranges(lhs, out);
            collect_ranges(rhs, out);
        }
        MetricExpr::Number(_) | MetricExpr::Vector(_) => {}
    }
}

fn group_key(l: &Labels, g: Option<&Grouping>) -> Labels {
    match g {
        None => Labels::new(),
        Some(Grouping::By(names)) => names.iter().filter_map(|n| l.get(n).map(|v| (n.clone(), v.clone()))).collect(),
        Some(Grouping::Without(names)) => {
            l.iter().filter(|(k, _)| !names.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    }
}

pub fn aggregate(
    op: AggOp,
    param: Option<f64>,
    g: Option<&Grouping>,
    samples: Vec<(Labels, f64)>,
) -> Vec<(Labels, f64)> {
    let mut groups: BTreeMap<Labels, Vec<(Labels, f64)>> = BTreeMap::new();
    for (l, v) in samples {
        groups.entry(group_key(&l, g)).or_default().push((l, v));
    }
    let mut out = Vec::new();
    for (key, mut members) in groups {
        let vals = members.iter().map(|m| m.1);
        match op {
            AggOp::Sum => out.push((key, vals.sum())),
            AggOp::Count => out.push((key, members.len() as f64)),
            AggOp::Min => out.push((key, vals.fold(f64::INFINITY, f64::min))),
            AggOp::Max => out.push((key, vals.fold(f64::NEG_INFINITY, f64::max))),
            AggOp::Avg => out.push((key, vals.sum::<f64>() / members.len() as f64)),
            AggOp::Topk | AggOp::Bottomk => {
                // the k largest (smallest) members keep their own labels
                let k = param.unwrap_or(1.0) as usize;
                members.sort_by(|a, b| {
                    let o = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
                    if op == AggOp::Topk {
                        o.reverse()
                    } else {
                        o
                    }
                });
                members.truncate(k);
                out.extend(members);
            }
        }
    }
    out
}

fn apply(op: BinOp, a: f64, b: f64) -> Option<f64> {
    Some(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        // a comparison filters: the sample stays (with the left value) when it holds
        BinOp::Eq => return (a == b).then_some(a),
        BinOp::Ne => return (a != b).then_some(a),
        BinOp::Gt => return (a > b).then_some(a),
        BinOp::Ge => return (a >= b).then_some(a),
        BinOp::Lt => return (a < b).then_some(a),
        BinOp::Le => return (a <= b).then_some(a),
    })
}

fn is_comparison(op: BinOp) -> bool {
    !matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div)
}

pub fn binary(op: BinOp, l: Val, r: Val) -> Result<Val, String> {
    Ok(match (l, r) {
        (Val::Scalar(a), Val::Scalar(b)) => {
            if is_comparison(op) {
                return Err("comparisons between two numbers are not supported".into());
            }
            Val::Scalar(apply(op, a, b).expect("arithmetic gives a value"))
        }
        (Val::Vector(v), Val::Scalar(b)) => Val::Vector(
            v.into_iter().map(|s| s.into_iter().filter_map(|(l, a)| Some((l, apply(op, a, b)?))).collect()).collect(),
        ),
        (Val::Scalar(a), Val::Vector(v)) => Val::Vector(
            v.into_iter()
                .map(|s| {
                    s.into_iter()
                        .filter_map(|(l, b)| {
                            let x = apply(op, a, b)?;
                            // a comparison keeps the vector's value
                            Some((l, if is_comparison(op) { b } else { x }))
                        })
                        .collect()
                })
                .collect(),
        ),
        (Val::Vector(lv), Val::Vector(rv)) => Val::Vector(
            lv.into_iter()
                .zip(rv)
                .map(|(ls, rs)| {
                    let right: HashMap<Labels, f64> = rs.into_iter().collect();
                    ls.into_iter().filter_map(|(l, a)| Some((l.clone(), apply(op, a, *right.get(&l)?)?))).collect()
                })
                .collect(),
        ),
    })
}
