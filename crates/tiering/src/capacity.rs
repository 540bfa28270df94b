//! Capacity: bytes, files and rows per tier, namespace, table, partition and classification,
//! computed from the table logs alone (no listing of data files); usage over time from commit
//! history; and, per tier with a capacity, the growth rate and the date it fills at that rate.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use stratalake_table::action::{Action, Commit};

use crate::config::{Policy, Scope};
use crate::plan::{TableState, partition_label};
use crate::{Error, Result};

const DAY_MS: i64 = 86_400_000;

/// Files, rows and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Live files.
    pub files: u64,
    /// Live rows.
    pub rows: u64,
    /// Live bytes.
    pub bytes: u64,
}

impl Usage {
    fn add(&mut self, files: u64, rows: u64, bytes: u64) {
        self.files += files;
        self.rows += rows;
        self.bytes += bytes;
    }
}

/// One tier's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TierCapacity {
    /// Tier name.
    pub tier: String,
    /// Live data on it.
    #[serde(flatten)]
    pub usage: Usage,
    /// Its capacity limit, if declared.
    pub capacity: Option<u64>,
    /// Capacity minus used.
    pub free: Option<u64>,
    /// Used / capacity.
    pub fill: Option<f64>,
    /// Growth over the trend window, bytes per day (least squares over daily points).
    pub growth_bytes_per_day: Option<f64>,
    /// When it reaches its capacity at that rate (`YYYY-MM-DD`), if it grows and has one.
    pub full_on: Option<String>,
    /// Days until then.
    pub days_left: Option<f64>,
}

/// A quota and how much of it is used.
#[derive(Clone, Debug, Serialize)]
pub struct QuotaUse {
    /// `namespace sales` or `table sales.orders`.
    pub scope: String,
    /// Limit, bytes.
    pub limit: u64,
    /// Used, bytes.
    pub used: u64,
}

/// One partition's figures.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionUsage {
    /// `namespace.table`.
    pub table: String,
    /// `field=value/...` (empty: unpartitioned).
    pub partition: String,
    /// Tier holding it (`mixed` when its files are on several).
    pub tier: String,
    /// Figures.
    #[serde(flatten)]
    pub usage: Usage,
}

/// Usage of one tier at the end of one day.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Live bytes at its end (or now, for today).
    pub bytes: u64,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CapacityReport {
    /// When it was computed, ms since the epoch.
    pub generated_ms: i64,
    /// Days of history the growth rate looks at.
    pub trend_window_days: u32,
    /// Per tier, hottest first.
    pub tiers: Vec<TierCapacity>,
    /// Per namespace.
    pub namespaces: BTreeMap<String, Usage>,
    /// Per table.
    pub tables: BTreeMap<String, Usage>,
    /// Per partition.
    pub partitions: Vec<PartitionUsage>,
    /// Per classification: the bytes of its columns (as written), and the files holding it.
    pub classifications: BTreeMap<String, Usage>,
    /// Quotas.
    pub quotas: Vec<QuotaUse>,
    /// Per tier, usage at the end of each day with history.
    pub history: BTreeMap<String, Vec<Point>>,
}

fn day_label(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Bytes per day by least squares over `(ms, bytes)` points.
pub fn growth_per_day(points: &[(i64, u64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let xs: Vec<f64> = points.iter().map(|(t, _)| *t as f64 / DAY_MS as f64).collect();
    let ys: Vec<f64> = points.iter().map(|(_, b)| *b as f64).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    Some(sxy / sxx)
}

/// When `used` reaches `capacity` growing at `per_day` from `now_ms`: (days left, date).
/// `None` when it does not grow; zero days when already full.
pub fn forecast(used: u64, capacity: u64, per_day: f64, now_ms: i64) -> Option<(f64, String)> {
    if used >= capacity {
        return Some((0.0, day_label(now_ms)));
    }
    if per_day <= 0.0 || !per_day.is_finite() {
        return None;
    }
    let days = (capacity - used) as f64 / per_day;
    let at = now_ms as f64 + days * DAY_MS as f64;
    if at > 253_402_300_799_000.0 {
        return Some((days, "after 9999".into()));
    }
    Some((days, day_label(at as i64)))
}

/// Per-tier (time, delta bytes) events of one table's history.
fn events(commits: &[Commit]) -> Vec<(i64, String, i64)> {
    let mut live: HashMap<&str, (&str, u64)> = HashMap::new();
    let mut out = Vec::new();
    for c in commits {
        let t = c.info.timestamp_ms;
        for a in &c.actions {
            match a {
                Action::Add(f) => {
                    live.insert(&f.path, (&f.tier, f.size));
                    out.push((t, f.tier.clone(), f.size as i64));
                }
                Action::Remove(r) => {
                    if let Some((tier, size)) = live.remove(r.path.as_str()) {
                        out.push((t, tier.to_string(), -(size as i64)));
                    }
                }
                Action::Move(m) => {
                    if let Some(e) = live.get_mut(m.path.as_str()) {
                        out.push((t, m.from.clone(), -(e.1 as i64)));
                        out.push((t, m.to.clone(), e.1 as i64));
                        e.0 = &m.to;
                    }
                }
                Action::Metadata(_) | Action::Rekey(_) => {}
            }
        }
    }
    out
}

/// Compute the report for `tables` under `policy` at `now_ms`, with the growth rate over the last
/// `window_days` days.
pub async fn report(policy: &Policy, tables: &[TableState], now_ms: i64, window_days: u32) -> Result<CapacityReport> {
    let mut r = CapacityReport {
        generated_ms: now_ms,
        trend_window_days: window_days,
        ..Default::default()
    };
    let mut per_tier: BTreeMap<String, Usage> = BTreeMap::new();
    let mut parts: BTreeMap<(String, String), (Usage, String)> = BTreeMap::new();
    let mut all_events: Vec<(i64, String, i64)> = Vec::new();
    for ts in tables {
        let ident = ts.table.ident();
        let name = ident.to_string();
        for f in ts.snapshot.files.values() {
            per_tier.entry(f.tier.clone()).or_default().add(1, f.rows, f.size);
            r.namespaces
                .entry(ident.namespace.clone())
                .or_default()
                .add(1, f.rows, f.size);
            r.tables.entry(name.clone()).or_default().add(1, f.rows, f.size);
            let p = parts
                .entry((name.clone(), partition_label(&f.partition)))
                .or_insert_with(|| (Usage::default(), f.tier.clone()));
            p.0.add(1, f.rows, f.size);
            if p.1 != f.tier {
                p.1 = "mixed".into();
            }
            let mut levels: BTreeMap<&str, u64> = BTreeMap::new();
            for g in &f.keys.groups {
                *levels.entry(g.classification.as_str()).or_default() += g.bytes;
            }
            for (level, bytes) in levels {
                r.classifications.entry(level.to_string()).or_default().add(1, 0, bytes);
            }
        }
        r.tables.entry(name.clone()).or_default();
        r.namespaces.entry(ident.namespace.clone()).or_default();
        let commits: Vec<Commit> = futures::stream::iter((0..=ts.snapshot.version).map(|v| ts.table.read_commit(v)))
            .buffered(16)
            .try_collect()
            .await
            .map_err(Error::Table)?;
        all_events.extend(events(&commits));
    }
    r.partitions = parts
        .into_iter()
        .map(|((table, partition), (usage, tier))| PartitionUsage {
            table,
            partition,
            tier,
            usage,
        })
        .collect();
    // Daily history per tier: usage at the end of each day from the first commit to today.
    all_events.sort_by_key(|e| e.0);
    let today = now_ms.div_euclid(DAY_MS);
    let mut series: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    if let Some(first) = all_events.first() {
        let mut level: BTreeMap<String, i64> = BTreeMap::new();
        let mut i = 0;
        for day in first.0.div_euclid(DAY_MS)..=today {
            let end = (day + 1) * DAY_MS;
            while i < all_events.len() && all_events[i].0 < end {
                *level.entry(all_events[i].1.clone()).or_default() += all_events[i].2;
                i += 1;
            }
            for (tier, b) in &level {
                series
                    .entry(tier.clone())
                    .or_default()
                    .push((end.min(now_ms), (*b).max(0) as u64));
            }
        }
    }
    let window_start = now_ms - window_days as i64 * DAY_MS;
    let mut names: Vec<String> = policy.tiers.iter().map(|t| t.name.clone()).collect();
    for t in per_tier.keys().chain(series.keys()) {
        if !names.contains(t) {
            names.push(t.clone());
        }
    }
    for name in names {
        let usage = per_tier.get(&name).copied().unwrap_or_default();
        let spec = policy.tiers.iter().find(|t| t.name == name);
        let capacity = spec.and_then(|s| s.capacity);
        let pts: Vec<(i64, u64)> = series
            .get(&name)
            .map(|s| s.iter().filter(|(t, _)| *t >= window_start).copied().collect())
            .unwrap_or_default();
        let growth = growth_per_day(&pts);
        let fc = match (capacity, growth) {
            (Some(c), Some(g)) => forecast(usage.bytes, c, g, now_ms),
            (Some(c), None) if usage.bytes >= c => forecast(usage.bytes, c, 0.0, now_ms),
            _ => None,
        };
        r.tiers.push(TierCapacity {
            tier: name.clone(),
            usage,
            capacity,
            free: capacity.map(|c| c.saturating_sub(usage.bytes)),
            fill: capacity.filter(|c| *c > 0).map(|c| usage.bytes as f64 / c as f64),
            growth_bytes_per_day: growth,
            days_left: fc.as_ref().map(|f| f.0),
            full_on: fc.map(|f| f.1),
        });
        r.history.insert(
            name,
            series
                .get(&r.tiers.last().expect("pushed").tier)
                .map(|s| {
                    s.iter()
                        .map(|(t, b)| Point {
                            day: day_label(*t - 1),
                            bytes: *b,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        );
    }
    for q in &policy.quotas {
        let used = match &q.scope {
            Scope::Namespace(n) => r.namespaces.get(n).map_or(0, |u| u.bytes),
            Scope::Table(t) => r.tables.get(&t.to_string()).map_or(0, |u| u.bytes),
            Scope::Lake => r.tiers.iter().map(|t| t.usage.bytes).sum(),
        };
        r.quotas.push(QuotaUse {
            scope: q.scope.to_string(),
            limit: q.max_bytes,
            used,
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_and_forecast_with_a_controlled_clock() {
        let day0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        // 10 GB/day for ten days, from 100 GB
        let pts: Vec<(i64, u64)> = (0..10)
            .map(|d| (day0 + d * DAY_MS, 100_000_000_000 + d as u64 * 10_000_000_000))
            .collect();
        let g = growth_per_day(&pts).unwrap();
        assert!((g - 1e10).abs() < 1.0, "{g}");
        let now = day0 + 9 * DAY_MS;
        // 190 GB used of 500 GB: 31 days left
        let (days, date) = forecast(190_000_000_000, 500_000_000_000, g, now).unwrap();
        assert!((days - 31.0).abs() < 1e-9, "{days}");
        assert_eq!(date, "2026-02-10");
        assert_eq!(forecast(600, 500, g, now).unwrap().0, 0.0);
        assert!(forecast(100, 500, -3.0, now).is_none());
        assert!(growth_per_day(&pts[..1]).is_none());
    }
}
