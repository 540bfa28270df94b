//! Placement: which live files should move where, and why.
//!
//! For each live file, in this order:
//! 1. a pin decides: the file belongs on the pinned tier (this also brings data up);
//! 2. otherwise every rule whose scope and conditions all match proposes its tier; the coldest
//!    proposal wins, and only if it is colder than where the file is (rules never move up);
//! 3. then, tier by tier from the hottest, a tier with a capacity whose planned fill passes its
//!    high watermark sends its coldest unpinned files (least recently read, else oldest written)
//!    to the next colder tier until it is under its low watermark.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use serde::Serialize;
use stratalake_table::action::{AddFile, PartitionValues};
use stratalake_table::heat::ReadHeat;
use stratalake_table::{Snapshot, Table, TableIdent};

use crate::config::{Pin, Policy, Rule};

/// One table as the planner sees it.
#[derive(Clone, Debug)]
pub struct TableState {
    /// The table.
    pub table: Table,
    /// Its latest snapshot.
    pub snapshot: Snapshot,
}

/// A move the planner proposes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedMove {
    /// `namespace.table`.
    pub table: String,
    /// File path relative to the table root.
    pub path: String,
    /// Partition (`field=value/...`, empty when unpartitioned).
    pub partition: String,
    /// Tier now.
    pub from: String,
    /// Target tier.
    pub to: String,
    /// Bytes.
    pub bytes: u64,
    /// Rows.
    pub rows: u64,
    /// Why: the rule, pin, watermark or command.
    pub reason: String,
}

/// What to move.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Moves, by table and path.
    pub moves: Vec<PlannedMove>,
    /// Things an admin should know (a full tier with no colder tier, an unknown partition field).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Total bytes to move.
    pub fn bytes(&self) -> u64 {
        self.moves.iter().map(|m| m.bytes).sum()
    }
}

/// Partition directory form of partition values, for display.
pub fn partition_label(values: &PartitionValues) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("NULL")))
        .collect::<Vec<_>>()
        .join("/")
}

/// The instant (ms) a partition value's period ends: `2026` ends on 2027-01-01, `2026-11` on
/// 2026-12-01, `2026-11-24` on 2026-11-25; a timestamp is its own instant.
pub fn period_end_ms(value: &str) -> Option<i64> {
    let v = value.trim();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis());
    if v.len() == 4 {
        let y: i32 = v.parse().ok()?;
        return midnight(NaiveDate::from_ymd_opt(y + 1, 1, 1)?);
    }
    if v.len() == 7 {
        let d = NaiveDate::parse_from_str(&format!("{v}-01"), "%Y-%m-%d").ok()?;
        let (y, m) = if d.month() == 12 {
            (d.year() + 1, 1)
        } else {
            (d.year(), d.month() + 1)
        };
        return midnight(NaiveDate::from_ymd_opt(y, m, 1)?);
    }
    if v.len() == 10 {
        let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
        return midnight(d.succ_opt()?);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// When a file was last touched: the later of its partition's last read and its writing.
fn last_touch(heat: &ReadHeat, table_id: &str, f: &AddFile) -> i64 {
    heat.last_read(table_id, &f.partition)
        .unwrap_or(i64::MIN)
        .max(f.created_ms)
}

fn rule_matches(
    rule: &Rule,
    ident: &TableIdent,
    table_id: &str,
    f: &AddFile,
    heat: &ReadHeat,
    now_ms: i64,
    warnings: &mut Vec<String>,
) -> bool {
    if !rule.scope.contains(ident) {
        return false;
    }
    if let Some((field, age)) = &rule.partition_age {
        let Some(value) = f.partition.get(field) else {
            let w = format!(
                "{}: table {ident} has no partition field {field:?}; the rule skips it",
                rule.name
            );
            if !warnings.contains(&w) {
                warnings.push(w);
            }
            return false;
        };
        match value.as_deref().and_then(period_end_ms) {
            Some(end) if now_ms - end >= *age => {}
            _ => return false,
        }
    }
    if let Some(age) = rule.since_write
        && now_ms - f.created_ms < age
    {
        return false;
    }
    if let Some(age) = rule.since_read
        && now_ms - last_touch(heat, table_id, f) < age
    {
        return false;
    }
    if let Some(c) = &rule.classification
        && !f
            .keys
            .groups
            .iter()
            .any(|g| &g.classification == c && !g.columns.is_empty())
    {
        return false;
    }
    true
}

struct Candidate<'a> {
    ident: &'a TableIdent,
    table_id: &'a str,
    file: &'a AddFile,
    planned: String,
    reason: Option<String>,
    pinned: bool,
}

/// Plan moves for `tables` under `policy` at `now_ms`.
pub fn plan(policy: &Policy, tables: &[TableState], heat: &ReadHeat, now_ms: i64) -> Plan {
    let mut warnings = Vec::new();
    let mut cands: Vec<Candidate<'_>> = Vec::new();
    for ts in tables {
        let ident = ts.table.ident();
        for f in ts.snapshot.files.values() {
            let mut c = Candidate {
                ident,
                table_id: ts.table.id(),
                file: f,
                planned: f.tier.clone(),
                reason: None,
                pinned: false,
            };
            if let Some(pin) = policy.pins.iter().find(|p: &&Pin| p.matches(ident, &f.partition)) {
                c.pinned = true;
                if pin.tier != f.tier {
                    c.planned = pin.tier.clone();
                    c.reason = Some(format!("pinned to {}", pin.tier));
                }
            } else {
                let here = policy.rank(&f.tier).unwrap_or(0);
                let best = policy
                    .rules
                    .iter()
                    .filter(|r| rule_matches(r, ident, ts.table.id(), f, heat, now_ms, &mut warnings))
                    .filter_map(|r| policy.rank(&r.to).map(|k| (k, r)))
                    .max_by_key(|(k, _)| *k);
                if let Some((k, r)) = best
                    && k > here
                {
                    c.planned = r.to.clone();
                    c.reason = Some(format!("rule {:?}", r.name));
                }
            }
            cands.push(c);
        }
    }
    // Fill levels, hottest tier first, so that what one tier sends down counts at the next.
    for (i, spec) in policy.tiers.iter().enumerate() {
        let Some(cap) = spec.capacity else { continue };
        let used: u64 = cands
            .iter()
            .filter(|c| c.planned == spec.name)
            .map(|c| c.file.size)
            .sum();
        if (used as f64) <= spec.high_watermark * cap as f64 {
            continue;
        }
        let Some(next) = policy.tiers.get(i + 1) else {
            warnings.push(format!(
                "tier {} is {:.0}% full (high watermark {:.0}%) and there is no colder tier to move to",
                spec.name,
                100.0 * used as f64 / cap as f64,
                100.0 * spec.high_watermark
            ));
            continue;
        };
        let target = (spec.low_watermark * cap as f64) as u64;
        let mut order: Vec<usize> = (0..cands.len())
            .filter(|j| cands[*j].planned == spec.name && !cands[*j].pinned)
            .collect();
        order.sort_by_key(|j| {
            let c = &cands[*j];
            (last_touch(heat, c.table_id, c.file), c.file.path.clone())
        });
        let mut now_used = used;
        for j in order {
            if now_used <= target {
                break;
            }
            let c = &mut cands[j];
            now_used -= c.file.size;
            c.planned = next.name.clone();
            c.reason = Some(format!(
                "tier {} above its high watermark ({:.0}% of {})",
                spec.name,
                100.0 * spec.high_watermark,
                crate::units::fmt_bytes(cap)
            ));
        }
        if now_used > target {
            warnings.push(format!(
                "tier {} stays above its low watermark: the rest of its files are pinned",
                spec.name
            ));
        }
    }
    let mut moves: Vec<PlannedMove> = cands
        .into_iter()
        .filter(|c| c.planned != c.file.tier)
        .map(|c| PlannedMove {
            table: c.ident.to_string(),
            path: c.file.path.clone(),
            partition: partition_label(&c.file.partition),
            from: c.file.tier.clone(),
            to: c.planned,
            bytes: c.file.size,
            rows: c.file.rows,
            reason: c.reason.unwrap_or_default(),
        })
        .collect();
    moves.sort_by(|a, b| (&a.table, &a.path).cmp(&(&b.table, &b.path)));
    Plan { moves, warnings }
}

/// Moves of every live file of `table` matching `partition` (all `field=value` pairs) that is not
/// on tier `to` already: a recall (`tier move --to hot`) or a manual demotion.
pub fn plan_explicit(ts: &TableState, to: &str, partition: &[(String, String)], reason: &str) -> Plan {
    let pin = Pin {
        table: ts.table.ident().clone(),
        partition: partition.to_vec(),
        tier: to.into(),
    };
    let moves = ts
        .snapshot
        .files
        .values()
        .filter(|f| f.tier != to && pin.matches(ts.table.ident(), &f.partition))
        .map(|f| PlannedMove {
            table: ts.table.ident().to_string(),
            path: f.path.clone(),
            partition: partition_label(&f.partition),
            from: f.tier.clone(),
            to: to.into(),
            bytes: f.size,
            rows: f.rows,
            reason: reason.into(),
        })
        .collect();
    Plan {
        moves,
        warnings: Vec::new(),
    }
}

/// Live bytes and files per tier of `tables`.
pub fn tier_usage(tables: &[TableState]) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for ts in tables {
        for f in ts.snapshot.files.values() {
            let e = out.entry(f.tier.clone()).or_default();
            e.0 += f.size;
            e.1 += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_ends() {
        let day = 86_400_000;
        let d = |s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis()
        };
        assert_eq!(period_end_ms("2026-11-24"), Some(d("2026-11-24") + day));
        assert_eq!(period_end_ms("2026-12"), Some(d("2027-01-01")));
        assert_eq!(period_end_ms("2026-02"), Some(d("2026-03-01")));
        assert_eq!(period_end_ms("2026"), Some(d("2027-01-01")));
        assert_eq!(period_end_ms("2026-11-24 06:00:00"), Some(d("2026-11-24") + day / 4));
        assert_eq!(period_end_ms("north"), None);
    }
}
