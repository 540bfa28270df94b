//! Tiered storage through the facade: tiers and their fill, placement plans, the mover, recall,
//! capacity reports, and read statistics. Lake administrators only; every run is audited.

use serde::Serialize;
use stratalake_table::TableIdent;
use stratalake_table::access::Privilege;
use stratalake_table::heat::ReadHeat;
use stratalake_table::write::now_ms;
use stratalake_tiering::Policy;
use stratalake_tiering::cache::CacheStats;
use stratalake_tiering::capacity::CapacityReport;
use stratalake_tiering::mover::{MoveOptions, MoveReport};
use stratalake_tiering::plan::{Plan, TableState};

use crate::{Lake, Result};

/// A tier, its place in the order and how full it is (from the table logs).
#[derive(Clone, Debug, Serialize)]
pub struct TierInfo {
    /// Name.
    pub name: String,
    /// Position, 0 = hottest.
    pub order: usize,
    /// Store URL.
    pub url: String,
    /// Live data files on it.
    pub files: u64,
    /// Live bytes on it.
    pub used: u64,
    /// Capacity, if declared.
    pub capacity: Option<u64>,
    /// Capacity minus used; for a local folder without a capacity, the file system's free space.
    pub free: Option<u64>,
    /// Used / capacity.
    pub fill: Option<f64>,
    /// Whether new files are written here.
    pub write_tier: bool,
    /// Whether the catalog and logs live here.
    pub metadata_tier: bool,
    /// Whether queries read it through the local cache.
    pub cached: bool,
}

/// Per-tier state for `tier status`: fill, moves pending under the rules, the cache.
#[derive(Clone, Debug, Serialize)]
pub struct TierStatus {
    /// Tiers.
    pub tiers: Vec<TierInfo>,
    /// Per tier: files and bytes the current plan would move in, and out.
    pub pending: Vec<PendingMoves>,
    /// Plan warnings.
    pub warnings: Vec<String>,
    /// The read cache, if any.
    pub cache: Option<CacheStats>,
}

/// Moves pending for one tier.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PendingMoves {
    /// Tier.
    pub tier: String,
    /// Files to move in.
    pub files_in: u64,
    /// Bytes to move in.
    pub bytes_in: u64,
    /// Files to move out.
    pub files_out: u64,
    /// Bytes to move out.
    pub bytes_out: u64,
}

impl Lake {
    /// The validated tiering policy: tiers in order, rules, pins, quotas.
    pub fn tiering_policy(&self) -> &Policy {
        &self.policy
    }

    /// Read cache counters and fill, when some tier reads through the cache.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// Write this process's read statistics (which partitions queries read, for rules by time
    /// since last read; and the cache's hit/miss counts). The CLI does this after each command;
    /// a long-running service should call it now and then (the planner in the same process
    /// includes unflushed reads anyway).
    pub async fn flush_read_stats(&self) -> Result<()> {
        let ctx = self.catalog.context();
        ctx.reads.flush(ctx.tiers.metadata()).await?;
        if let Some(c) = &self.cache {
            c.persist_stats()?;
        }
        Ok(())
    }

    async fn heat(&self) -> Result<ReadHeat> {
        let ctx = self.catalog.context();
        let mut heat = stratalake_table::heat::load(ctx.tiers.metadata()).await?;
        heat.merge(ctx.reads.pending());
        Ok(heat)
    }

    async fn table_states(&self, only: Option<&TableIdent>) -> Result<Vec<TableState>> {
        let state = self.catalog.state().await?;
        let mut out = Vec::new();
        for (ns, tables) in &state.namespaces {
            for t in tables.keys() {
                let ident = TableIdent::new(ns, t);
                if only.is_some_and(|o| o != &ident) {
                    continue;
                }
                let table = self.catalog.table(&ident).await?;
                let snapshot = table.snapshot().await?;
                out.push(TableState { table, snapshot });
            }
        }
        if let Some(o) = only
            && out.is_empty()
        {
            return Err(stratalake_table::Error::TableNotFound(o.to_string()).into());
        }
        Ok(out)
    }

    /// The tiers, hottest first, with their fill computed from the table logs.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let tiers = lake.tier_list().await?;
    /// assert_eq!((tiers[0].name.as_str(), tiers[0].files), ("hot", 1));
    /// # Ok(()) }
    /// ```
    pub async fn tier_list(&self) -> Result<Vec<TierInfo>> {
        self.subject().await?.require(Privilege::Admin, None, None)?;
        let states = self.table_states(None).await?;
        self.tier_infos(&states)
    }

    fn tier_infos(&self, states: &[TableState]) -> Result<Vec<TierInfo>> {
        let usage = stratalake_tiering::plan::tier_usage(states);
        let ctx = self.catalog.context();
        let meta_url = ctx.tiers.metadata().url().to_string();
        let mut out = Vec::new();
        for (order, spec) in self.policy.tiers.iter().enumerate() {
            let store = ctx.tiers.get(&spec.name)?;
            let (used, files) = usage.get(&spec.name).copied().unwrap_or((0, 0));
            out.push(TierInfo {
                name: spec.name.clone(),
                order,
                url: store.url().to_string(),
                files,
                used,
                capacity: spec.capacity,
                free: match spec.capacity {
                    Some(c) => Some(c.saturating_sub(used)),
                    None => store.local_dir().and_then(stratalake_tiering::units::disk_free),
                },
                fill: spec.capacity.filter(|c| *c > 0).map(|c| used as f64 / c as f64),
                write_tier: ctx.tiers.write_tier() == spec.name,
                metadata_tier: store.url() == meta_url,
                cached: !std::ptr::addr_eq(
                    std::sync::Arc::as_ptr(store.read_store()),
                    std::sync::Arc::as_ptr(store.object_store()),
                ),
            });
        }
        Ok(out)
    }

    /// What the placement rules, pins and watermarks would move now, and why (a dry run).
    pub async fn tier_plan(&self) -> Result<Plan> {
        self.tier_plan_at(now_ms()).await
    }

    /// [`Lake::tier_plan`] as of `now_ms` (for schedules and tests with a controlled clock).
    pub async fn tier_plan_at(&self, now_ms: i64) -> Result<Plan> {
        self.subject().await?.require(Privilege::Admin, None, None)?;
        let states = self.table_states(None).await?;
        let heat = self.heat().await?;
        Ok(stratalake_tiering::plan::plan(&self.policy, &states, &heat, now_ms))
    }

    /// Mover options from `[tiering]`: concurrency, bandwidth, move retention; this handle's
    /// principal.
    pub fn move_options(&self) -> MoveOptions {
        MoveOptions {
            concurrency: self.policy.concurrency,
            bandwidth: self.policy.bandwidth,
            retention_ms: self.policy.move_retention_ms,
            principal: self.principal.clone(),
            ..Default::default()
        }
    }

    /// Carry out `plan` (from [`Lake::tier_plan`] or [`Lake::tier_recall_plan`]): copy each file
    /// to its target tier as ciphertext, verify it, record the moves in the table logs, and
    /// delete old copies whose move retention has passed. Audited.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// use stratalake::{Lake, LakeConfig, TierConfig};
    /// let mut config = LakeConfig::single_tier("memory://tour-hot");
    /// let mut cold = config.tiers[0].clone();
    /// (cold.name, cold.url) = ("cold".into(), "memory://tour-cold".into());
    /// config.tiers.push(cold);
    /// config.rules.push(stratalake::tiering::RuleConfig {
    ///     to: "cold".into(), since_write: Some("0s".into()), ..Default::default()
    /// });
    /// let keys = std::sync::Arc::new(stratalake::crypto::MemoryKeyProvider::new());
    /// let lake = Lake::open_with(config, None, keys)?;
    /// lake.catalog().create_namespace("default", true, "svc").await?;
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let plan = lake.tier_plan().await?;
    /// assert_eq!(plan.moves[0].to, "cold");
    /// let report = lake.tier_run(&plan, lake.move_options()).await?;
    /// assert_eq!(report.files_moved, 1);
    /// assert_eq!(lake.tier_list().await?[1].files, 1);
    /// # Ok(()) }
    /// ```
    pub async fn tier_run(&self, plan: &Plan, opts: MoveOptions) -> Result<MoveReport> {
        let names: Vec<String> = {
            let mut n: Vec<String> = plan.moves.iter().map(|m| m.table.clone()).collect();
            n.dedup();
            n
        };
        let r = async {
            self.subject().await?.require(Privilege::Admin, None, None)?;
            let states = self.table_states(None).await?;
            let tables: std::collections::BTreeMap<String, stratalake_table::Table> = states
                .into_iter()
                .map(|s| (s.table.ident().to_string(), s.table))
                .collect();
            let ctx = self.catalog.context();
            let ids: Vec<String> = tables.values().map(|t| t.id().to_string()).collect();
            let report = stratalake_tiering::mover::run(ctx, &tables, plan, &opts).await?;
            // Fold the read-heat objects every query process wrote into one (dropping tables
            // that are gone), so the planner's listing stays short.
            self.flush_read_stats().await?;
            stratalake_table::heat::compact(ctx.tiers.metadata(), &ids).await?;
            Ok(report)
        }
        .await;
        self.record(
            "tier",
            format!("TIER RUN {} file(s), {} byte(s)", plan.moves.len(), plan.bytes()),
            names,
            r.as_ref().ok().map(|r| r.files_moved),
            &r,
        )
        .await?;
        r
    }

    /// Moves that bring `table`'s files matching `partition` (`field=value` pairs, all must
    /// match; empty: every file) to tier `to` — a recall to a hot tier, or a manual demotion.
    /// Rules may move them again later unless a `[[pin]]` keeps them.
    pub async fn tier_recall_plan(&self, table: &str, to: &str, partition: &[(String, String)]) -> Result<Plan> {
        self.subject().await?.require(Privilege::Admin, None, None)?;
        let ident = TableIdent::parse(table, crate::DEFAULT_NAMESPACE)?;
        if self.policy.rank(to).is_none() {
            return Err(stratalake_tiering::Error::Config(format!(
                "no tier named {to:?} (tiers: {})",
                self.policy
                    .tiers
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        let states = self.table_states(Some(&ident)).await?;
        let what = if partition.is_empty() {
            String::new()
        } else {
            format!(
                " {}",
                partition
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        Ok(stratalake_tiering::plan::plan_explicit(
            &states[0],
            to,
            partition,
            &format!("tier move --to {to}{what}"),
        ))
    }

    /// Fill per tier, moves the rules would make now, warnings, and the read cache.
    pub async fn tier_status(&self) -> Result<TierStatus> {
        self.subject().await?.require(Privilege::Admin, None, None)?;
        // one read of every table's log for both the fill and the plan
        let states = self.table_states(None).await?;
        let tiers = self.tier_infos(&states)?;
        let plan = stratalake_tiering::plan::plan(&self.policy, &states, &self.heat().await?, now_ms());
        let mut pending: Vec<PendingMoves> = tiers
            .iter()
            .map(|t| PendingMoves {
                tier: t.name.clone(),
                ..Default::default()
            })
            .collect();
        for m in &plan.moves {
            if let Some(p) = pending.iter_mut().find(|p| p.tier == m.to) {
                p.files_in += 1;
                p.bytes_in += m.bytes;
            }
            if let Some(p) = pending.iter_mut().find(|p| p.tier == m.from) {
                p.files_out += 1;
                p.bytes_out += m.bytes;
            }
        }
        Ok(TierStatus {
            tiers,
            pending,
            warnings: plan.warnings,
            cache: self.cache_stats(),
        })
    }

    /// Capacity from the logs: per tier (with growth over the last `window_days` days and the
    /// date each tier with a capacity fills), namespace, table, partition and classification,
    /// and quota use.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let r = lake.capacity(30).await?;
    /// assert_eq!(r.tables["default.t"].rows, 2);
    /// let html = stratalake::tiering::html::render(&r);
    /// assert!(html.contains("<svg"));
    /// # Ok(()) }
    /// ```
    pub async fn capacity(&self, window_days: u32) -> Result<CapacityReport> {
        self.capacity_at(now_ms(), window_days).await
    }

    /// [`Lake::capacity`] as of `now_ms`.
    pub async fn capacity_at(&self, now_ms: i64, window_days: u32) -> Result<CapacityReport> {
        self.subject().await?.require(Privilege::Admin, None, None)?;
        let states = self.table_states(None).await?;
        Ok(stratalake_tiering::capacity::report(&self.policy, &states, now_ms, window_days.max(1)).await?)
    }
}
