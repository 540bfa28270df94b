//! The tiering part of `stratalake.toml` — `[tiering]`, `[[rule]]`, `[[pin]]`, `[[quota]]` and
//! the capacity fields of `[[tier]]` — and its validated form, [`Policy`].

use serde::{Deserialize, Serialize};
use stratalake_table::TableIdent;
use stratalake_table::action::PartitionValues;

use crate::units::{parse_duration_ms, parse_size};
use crate::{Error, Result};

/// `[tiering]`: how the mover and the read cache work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieringSection {
    /// How long the old copy of a moved file is kept for readers of older snapshots (`1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_retention: Option<String>,
    /// Files copied at once by the mover (4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Bandwidth limit of the mover per second (`200MiB`); unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<String>,
    /// Folder of the read cache for non-local tiers, relative to the lake folder (`cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// Size limit of the read cache (`1GiB`); `0` turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<String>,
}

/// `[[rule]]`: move matching files to a colder tier. Conditions given together must all hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name shown in plans and history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Limit to one namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Limit to one table (`ns.table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Target tier.
    pub to: String,
    /// Partitions whose date (the end of their day, month or year) is older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_age: Option<String>,
    /// The date or timestamp partition field `partition_age` reads (`day`, `ts_month`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_column: Option<String>,
    /// Files written longer ago than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_write: Option<String>,
    /// Partitions no query has read for this long (files never read count from their writing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_read: Option<String>,
    /// Files holding columns of this classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
}

/// `[[pin]]`: keep a table, or some of its partitions, on a tier whatever the rules say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    /// The table (`ns.table` or `table`).
    pub table: String,
    /// `field=value[,field=value]`; the whole table when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The tier.
    pub tier: String,
}

/// `[[quota]]`: most live bytes a namespace or table may hold; checked at every commit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// A namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Or a table (`ns.table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The limit (`100GiB`).
    pub max_bytes: String,
}

/// A tier as tiering sees it: name, order (hot first), capacity and watermarks.
#[derive(Clone, Debug, PartialEq)]
pub struct TierSpec {
    /// Name.
    pub name: String,
    /// Capacity limit in bytes, if any.
    pub capacity: Option<u64>,
    /// Fill fraction above which the coldest files move down.
    pub high_watermark: f64,
    /// Fill fraction they move down to.
    pub low_watermark: f64,
}

/// Where a rule or quota applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every table.
    Lake,
    /// The tables of a namespace.
    Namespace(String),
    /// One table.
    Table(TableIdent),
}

impl Scope {
    /// Whether `t` is in scope.
    pub fn contains(&self, t: &TableIdent) -> bool {
        match self {
            Scope::Lake => true,
            Scope::Namespace(n) => &t.namespace == n,
            Scope::Table(x) => x == t,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Lake => f.write_str("the lake"),
            Scope::Namespace(n) => write!(f, "namespace {n}"),
            Scope::Table(t) => write!(f, "table {t}"),
        }
    }
}

/// A validated placement rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Name (given, or `rule N`).
    pub name: String,
    /// Scope.
    pub scope: Scope,
    /// Target tier.
    pub to: String,
    /// Partition field and age in ms.
    pub partition_age: Option<(String, i64)>,
    /// Time since the file was written, ms.
    pub since_write: Option<i64>,
    /// Time since the partition was last read, ms.
    pub since_read: Option<i64>,
    /// Classification.
    pub classification: Option<String>,
}

/// A validated pin.
#[derive(Clone, Debug, PartialEq)]
pub struct Pin {
    /// Table.
    pub table: TableIdent,
    /// Partition values that must all match (empty: the whole table).
    pub partition: Vec<(String, String)>,
    /// Tier.
    pub tier: String,
}

impl Pin {
    /// Whether a file of `table` with partition `values` is pinned.
    pub fn matches(&self, table: &TableIdent, values: &PartitionValues) -> bool {
        &self.table == table
            && self
                .partition
                .iter()
                .all(|(k, v)| values.get(k).is_some_and(|x| x.as_deref() == Some(v.as_str())))
    }
}

/// A validated quota.
#[derive(Clone, Debug, PartialEq)]
pub struct Quota {
    /// A namespace or a table.
    pub scope: Scope,
    /// Limit in bytes.
    pub max_bytes: u64,
}

/// Everything tiering needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Tiers, hottest first.
    pub tiers: Vec<TierSpec>,
    /// Rules.
    pub rules: Vec<Rule>,
    /// Pins.
    pub pins: Vec<Pin>,
    /// Quotas.
    pub quotas: Vec<Quota>,
    /// Old copies of moved files are kept this long.
    pub move_retention_ms: i64,
    /// Files copied at once.
    pub concurrency: usize,
    /// Bytes per second, if limited.
    pub bandwidth: Option<u64>,
    /// Read cache size in bytes (0: no cache).
    pub cache_size: u64,
}

/// The raw `[[tier]]` fields tiering reads.
#[derive(Clone, Debug, Default)]
pub struct TierFields<'a> {
    /// Name.
    pub name: &'a str,
    /// `capacity = "..."`.
    pub capacity: Option<&'a str>,
    /// `high_watermark`.
    pub high_watermark: Option<f64>,
    /// `low_watermark`.
    pub low_watermark: Option<f64>,
}

fn table_ident(s: &str, what: &str) -> Result<TableIdent> {
    TableIdent::parse(s, "default").map_err(|e| Error::Config(format!("{what}: {e}")))
}

impl Policy {
    /// Validate the configuration. Errors name the entry (`rule 2 ("archive")`) and the field.
    pub fn new(
        tiers: &[TierFields<'_>],
        section: &TieringSection,
        rules: &[RuleConfig],
        pins: &[PinConfig],
        quotas: &[QuotaConfig],
    ) -> Result<Self> {
        let mut specs = Vec::new();
        for t in tiers {
            let what = format!("tier {:?}", t.name);
            let capacity = t
                .capacity
                .map(parse_size)
                .transpose()
                .map_err(|e| Error::Config(format!("{what}: capacity: {e}")))?;
            let high = t.high_watermark.unwrap_or(0.9);
            let low = t.low_watermark.unwrap_or(0.8);
            if !(0.0 < low && low < high && high <= 1.0) {
                return Err(Error::Config(format!(
                    "{what}: watermarks must satisfy 0 < low_watermark < high_watermark <= 1 (got {low} and {high})"
                )));
            }
            specs.push(TierSpec {
                name: t.name.to_string(),
                capacity,
                high_watermark: high,
                low_watermark: low,
            });
        }
        let tier_known = |name: &str, what: &str| -> Result<()> {
            if specs.iter().any(|t| t.name == name) {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{what}: no tier named {name:?} (tiers: {})",
                    specs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let mut out_rules = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let name = r.name.clone().unwrap_or_else(|| format!("rule {}", i + 1));
            let what = format!("[[rule]] {} ({name:?})", i + 1);
            tier_known(&r.to, &format!("{what}: to"))?;
            let scope = match (&r.namespace, &r.table) {
                (Some(_), Some(_)) => {
                    return Err(Error::Config(format!("{what}: give namespace or table, not both")));
                }
                (Some(n), None) => Scope::Namespace(n.clone()),
                (None, Some(t)) => Scope::Table(table_ident(t, &what)?),
                (None, None) => Scope::Lake,
            };
            let dur = |v: &Option<String>, field: &str| {
                v.as_deref()
                    .map(parse_duration_ms)
                    .transpose()
                    .map_err(|e| Error::Config(format!("{what}: {field}: {e}")))
            };
            let partition_age = match (dur(&r.partition_age, "partition_age")?, &r.partition_column) {
                (Some(ms), Some(c)) => Some((c.clone(), ms)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(Error::Config(format!(
                        "{what}: partition_age needs partition_column (the date partition field, e.g. \"day\")"
                    )));
                }
                (None, Some(_)) => {
                    return Err(Error::Config(format!("{what}: partition_column needs partition_age")));
                }
            };
            let rule = Rule {
                name,
                scope,
                to: r.to.clone(),
                partition_age,
                since_write: dur(&r.since_write, "since_write")?,
                since_read: dur(&r.since_read, "since_read")?,
                classification: r.classification.clone(),
            };
            if rule.partition_age.is_none()
                && rule.since_write.is_none()
                && rule.since_read.is_none()
                && rule.classification.is_none()
            {
                return Err(Error::Config(format!(
                    "{what}: give at least one condition: partition_age, since_write, since_read or classification"
                )));
            }
            out_rules.push(rule);
        }
        let mut out_pins = Vec::new();
        for (i, p) in pins.iter().enumerate() {
            let what = format!("[[pin]] {}", i + 1);
            tier_known(&p.tier, &format!("{what}: tier"))?;
            let mut partition = Vec::new();
            for kv in p
                .partition
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.trim().is_empty())
            {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| Error::Config(format!("{what}: partition {kv:?}: expected field=value")))?;
                partition.push((k.trim().to_string(), v.trim().to_string()));
            }
            out_pins.push(Pin {
                table: table_ident(&p.table, &what)?,
                partition,
                tier: p.tier.clone(),
            });
        }
        let mut out_quotas = Vec::new();
        for (i, q) in quotas.iter().enumerate() {
            let what = format!("[[quota]] {}", i + 1);
            let scope = match (&q.namespace, &q.table) {
                (Some(n), None) => Scope::Namespace(n.clone()),
                (None, Some(t)) => Scope::Table(table_ident(t, &what)?),
                _ => return Err(Error::Config(format!("{what}: give exactly one of namespace or table"))),
            };
            let max_bytes = parse_size(&q.max_bytes).map_err(|e| Error::Config(format!("{what}: max_bytes: {e}")))?;
            out_quotas.push(Quota { scope, max_bytes });
        }
        let retention = section.move_retention.as_deref().unwrap_or("1h");
        Ok(Self {
            tiers: specs,
            rules: out_rules,
            pins: out_pins,
            quotas: out_quotas,
            move_retention_ms: parse_duration_ms(retention)
                .map_err(|e| Error::Config(format!("[tiering] move_retention: {e}")))?,
            concurrency: section.concurrency.unwrap_or(4).max(1),
            bandwidth: section
                .bandwidth
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(|e| Error::Config(format!("[tiering] bandwidth: {e}")))?,
            cache_size: section
                .cache_size
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(|e| Error::Config(format!("[tiering] cache_size: {e}")))?
                .unwrap_or(1 << 30),
        })
    }

    /// Position of a tier, hottest first.
    pub fn rank(&self, tier: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name == tier)
    }
}
