//! Tiered storage through the facade: tiers and their fill, declaring and removing tiers in
//! `stratalake.toml`, placement plans, the mover, recall, capacity reports, and read statistics.
//! Lake administrators only; every change and every run is audited.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::ObjectStore;
use serde::Serialize;
use stratalake_table::heat::ReadHeat;
use stratalake_table::{Store, TableIdent};
use stratalake_tiering::Policy;
use stratalake_tiering::cache::CacheStats;
use stratalake_tiering::capacity::CapacityReport;
use stratalake_tiering::mover::{MoveOptions, MoveReport};
use stratalake_tiering::plan::{Plan, TableState};

use crate::ops::into_future;
use crate::{CONFIG_FILE, Error, Lake, LakeConfig, Result, Session, TierConfig};
use stratalake_table::access::Operation;
use stratalake_table::progress::Progress;

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

impl Session {
    /// The lake's tiered storage as this session's principal: tiers and their fill, placement
    /// plans, the mover, recall, capacity, read statistics, and declaring or removing tiers.
    /// Lake administrators only; every change and every run is audited.
    pub fn tiers(&self) -> Tiers<'_> {
        Tiers { session: self }
    }
}

/// Tiered storage seen through a [`Session`] ([`Session::tiers`]).
#[derive(Clone, Copy, Debug)]
pub struct Tiers<'a> {
    session: &'a Session,
}

impl<'a> Tiers<'a> {
    /// The validated tiering policy: tiers in order, rules, pins, quotas.
    pub fn policy(&self) -> &Policy {
        &self.session.lake.policy
    }

    /// Read cache counters and fill, when some tier reads through the cache.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.session.lake.cache.as_ref().map(|c| c.stats())
    }

    /// Write this process's read statistics (which partitions queries read, for rules by time
    /// since last read; and the cache's hit/miss counts). The CLI does this after each command;
    /// a long-running service should call it now and then (the planner in the same process
    /// includes unflushed reads anyway).
    pub async fn flush_read_stats(&self) -> Result<()> {
        let ctx = self.session.lake.catalog.context();
        ctx.reads.flush(ctx.tiers.metadata()).await?;
        if let Some(c) = &self.session.lake.cache {
            c.persist_stats()?;
        }
        Ok(())
    }

    /// The tiers, hottest first, with their fill computed from the table logs.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let tiers = lake.tiers().list().await?;
    /// assert_eq!((tiers[0].name.as_str(), tiers[0].files), ("hot", 1));
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<TierInfo>> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let states = self.session.table_states(None).await?;
        self.session.tier_infos(&states)
    }

    /// What the placement rules, pins and watermarks would move now, and why (a dry run).
    /// "Now" is the lake's clock ([`LakeBuilder::clock`](crate::LakeBuilder::clock)).
    pub async fn plan(&self) -> Result<Plan> {
        let now_ms = self.session.lake.now_ms();
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let states = self.session.table_states(None).await?;
        let heat = self.session.heat().await?;
        Ok(stratalake_tiering::plan::plan(
            &self.session.lake.policy,
            &states,
            &heat,
            now_ms,
        ))
    }

    /// Carry out `plan` (from [`Tiers::plan`] or [`Tiers::recall_plan`]): copy each file to its
    /// target tier as ciphertext, verify it, record the moves in the table logs, and delete old
    /// copies whose move retention has passed. Concurrency, bandwidth and the move retention
    /// default to `[tiering]`. Audited.
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
    /// let lake = Lake::builder("memory://tour").config(config).key_provider(keys).admin("svc").create().await?;
    /// let lake = lake.session("svc");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let plan = lake.tiers().plan().await?;
    /// assert_eq!(plan.moves[0].to, "cold");
    /// let report = lake.tiers().run(&plan).concurrency(2).await?;
    /// assert_eq!(report.files_moved, 1);
    /// assert_eq!(lake.tiers().list().await?[1].files, 1);
    /// # Ok(()) }
    /// ```
    pub fn run(&self, plan: &'a Plan) -> TierRun<'a> {
        let policy = &self.session.lake.policy;
        TierRun {
            session: self.session,
            plan,
            options: MoveOptions {
                concurrency: policy.concurrency,
                bandwidth: policy.bandwidth,
                retention_ms: policy.move_retention_ms,
                principal: self.session.principal.clone(),
                ..Default::default()
            },
        }
    }

    async fn run_moves(&self, plan: &Plan, mut opts: MoveOptions) -> Result<MoveReport> {
        // the mover's commits are this session's, whatever the options said
        opts.principal = self.session.principal.clone();
        let names: Vec<String> = {
            let mut n: Vec<String> = plan.moves.iter().map(|m| m.table.clone()).collect();
            n.dedup();
            n
        };
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            let states = self.session.table_states(None).await?;
            let tables: std::collections::BTreeMap<String, stratalake_table::Table> = states
                .into_iter()
                .map(|s| (s.table.ident().to_string(), s.table))
                .collect();
            let ctx = self.session.lake.catalog.context();
            let ids: Vec<String> = tables.values().map(|t| t.id().to_string()).collect();
            let report = stratalake_tiering::mover::run(ctx, &tables, plan, &opts).await?;
            // Fold the read-heat objects every query process wrote into one (dropping tables
            // that are gone), so the planner's listing stays short. Housekeeping: the moves are
            // committed, so a failure here is logged (the next run folds them), never reported
            // as the run's.
            let housekeeping = async {
                self.flush_read_stats().await?;
                stratalake_table::heat::compact(ctx.tiers.metadata(), &ids).await?;
                Ok::<_, Error>(())
            };
            if let Err(e) = housekeeping.await {
                tracing::warn!(error = %e, "tier run: folding the read statistics failed; the next run does it");
            }
            Ok(report)
        }
        .await;
        self.session
            .record(
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
    pub async fn recall_plan(&self, table: &str, to: &str, partition: &[(String, String)]) -> Result<Plan> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let ident = TableIdent::parse(table, crate::DEFAULT_NAMESPACE)?;
        if self.session.lake.policy.rank(to).is_none() {
            return Err(stratalake_tiering::Error::Config(format!(
                "no tier named {to:?} (tiers: {})",
                self.session
                    .lake
                    .policy
                    .tiers
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        let states = self.session.table_states(Some(&ident)).await?;
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
    pub async fn status(&self) -> Result<TierStatus> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        // one read of every table's log for both the fill and the plan
        let states = self.session.table_states(None).await?;
        let tiers = self.session.tier_infos(&states)?;
        let plan = stratalake_tiering::plan::plan(
            &self.session.lake.policy,
            &states,
            &self.session.heat().await?,
            self.session.lake.now_ms(),
        );
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
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let r = lake.tiers().capacity(30).await?;
    /// assert_eq!(r.tables["default.t"].rows, 2);
    /// let html = stratalake::tiering::html::render(&r);
    /// assert!(html.contains("Not enough history yet")); // one day: a chart needs two
    /// # Ok(()) }
    /// ```
    pub async fn capacity(&self, window_days: u32) -> Result<CapacityReport> {
        let now_ms = self.session.lake.now_ms();
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let states = self.session.table_states(None).await?;
        Ok(
            stratalake_tiering::capacity::report(&self.session.lake.policy, &states, now_ms, window_days.max(1))
                .await?,
        )
    }

    /// Declare a new tier in the lake folder's `stratalake.toml`: at the end of the order (the
    /// coldest), or just before (hotter than) the tier `before`. Refused unless this handle's
    /// principal is a lake administrator; audited.
    ///
    /// The name must be a valid identifier not used by another tier; the URL (a path relative
    /// to the lake folder, `file:///abs`, or `s3://bucket/prefix` with `options`) must open, be
    /// writable, hold no object yet, and neither contain nor lie inside another tier or the
    /// read cache. Options naming credentials are refused (they belong in `AWS_*`). The file
    /// is replaced atomically under a lock (`stratalake.toml.lock`), after checking that the
    /// whole new configuration opens; a tier added at the end is appended, so the file's
    /// comments stay. Lakes opened from then on see the tier (this handle does not). Returns
    /// the tier's store URL as resolved (`file:///...` for a folder).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// use stratalake::{Lake, TierConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let lake = Lake::builder(dir.path()).admin("admin").create().await?.session("admin");
    /// let cold = TierConfig {
    ///     name: "cold".into(),
    ///     url: "archive".into(), // the lake folder's archive/
    ///     capacity: Some("1TiB".into()),
    ///     options: Default::default(),
    ///     high_watermark: None,
    ///     low_watermark: None,
    ///     cache: None,
    /// };
    /// let url = lake.tiers().add(cold.clone(), None).await?;
    /// assert!(url.starts_with("file://") && url.ends_with("/archive"));
    /// assert!(lake.tiers().add(cold, None).await.unwrap_err().to_string().contains("exists already"));
    /// let lake = Lake::builder(dir.path()).open().await?.session("admin");
    /// assert_eq!(lake.tiers().list().await?[1].name, "cold");
    /// // a tier holding no file can go again; the write tier cannot
    /// lake.tiers().remove("cold").await?;
    /// assert!(lake.tiers().remove("hot").await.is_err());
    /// assert_eq!(Lake::builder(dir.path()).open().await?.session("admin").tiers().list().await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn add(&self, tier: TierConfig, before: Option<&str>) -> Result<String> {
        let mut statement = format!("TIER ADD {} {}", tier.name, tier.url);
        for k in tier.options.keys() {
            statement.push_str(&format!(" OPTION {k}")); // names only: values may be secrets
        }
        if let Some(b) = before {
            statement.push_str(&format!(" BEFORE {b}"));
        }
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            let (dir, _lock) = self.session.lock_config()?;
            let path = dir.join(CONFIG_FILE);
            let (text, config) = read_config(&path)?;
            let bad = |reason: String| Error::Config {
                path: format!("{} [[tier]] {:?}", path.display(), tier.name),
                reason,
            };
            stratalake_table::names::validate_ident("tier", &tier.name)?;
            if config.tiers.iter().any(|t| t.name == tier.name) {
                return Err(bad(
                    "a tier of that name exists already (see `stratalake tier list`)".into()
                ));
            }
            if let Some(k) = tier.options.keys().find(|k| {
                let k = k.to_ascii_lowercase();
                SECRET_OPTION_WORDS.iter().any(|w| k.contains(w))
            }) {
                return Err(bad(format!(
                    "option {k:?} is a credential: it belongs in the environment (AWS_ACCESS_KEY_ID, \
                     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), not in stratalake.toml"
                )));
            }
            if tier.url.trim().is_empty() {
                return Err(bad("the URL is empty".into()));
            }
            if tier.url.starts_with("memory://") {
                return Err(bad(
                    "a memory:// store lives only as long as one process: give a folder or s3://bucket/prefix".into(),
                ));
            }
            let at = match before {
                None => config.tiers.len(),
                Some(b) => config.tiers.iter().position(|t| t.name == b).ok_or_else(|| {
                    bad(format!(
                        "before {b:?}: no tier of that name (tiers: {})",
                        tier_names(&config)
                    ))
                })?,
            };
            let appended = at == config.tiers.len();
            let mut new = config.clone();
            new.tiers.insert(at, tier.clone());
            new.policy()?;
            // Where it would be, before anything is created there.
            let place = location(&dir, &tier).map_err(bad)?;
            for other in &config.tiers {
                let o = location(&dir, other).map_err(bad)?;
                if overlaps((&place, &tier), (&o, other)) {
                    return Err(bad(format!(
                        "{place} is, contains or lies inside {o} of tier {:?}: every tier needs a place of its own",
                        other.name
                    )));
                }
            }
            let cache = config.tiering.cache_dir.as_deref().unwrap_or("cache");
            let cache = format!("file://{}", resolve_local(&dir.join(cache)).display());
            if overlaps((&place, &tier), (&cache, &tier)) {
                return Err(bad(format!(
                    "{place} is, contains or lies inside the read cache {cache}"
                )));
            }
            let store = open_tier(&dir, &tier).map_err(|e| bad(e.to_string()))?;
            // Vacuum deletes what no log names below a table's folder on every tier: a store
            // that already holds objects (another lake's tier, say) would lose them.
            if let Some(obj) = first_object(&store).await? {
                return Err(bad(format!(
                    "{} holds objects already (e.g. {obj}): give an empty folder or prefix",
                    store.url()
                )));
            }
            let probe = format!("_stratalake_probe_{}", crate::uuid_like());
            let wrote = match store.put(&probe, b"probe".to_vec().into()).await {
                Ok(()) => store.delete(&probe).await,
                Err(e) => Err(e),
            };
            wrote.map_err(|e| bad(format!("cannot write to {}: {e}", store.url())))?;
            let config = new;
            self.session.check_opens(&config, &dir)?;
            let new_text = if appended {
                append_tier(&text, &tier, &config)
            } else {
                config.to_toml()
            };
            replace_private(&path, new_text.as_bytes())?;
            Ok(store.url().to_string())
        }
        .await;
        self.session.record("tier", statement, vec![], None, &r).await?;
        r
    }

    /// Remove tier `name` from the lake folder's `stratalake.toml`. Refused unless this handle's
    /// principal is a lake administrator; audited. Refused too while the tier is the metadata or
    /// write tier, while a rule or pin names it, while any table's live files are on it, or
    /// while its store holds any object at all (old copies of moved files, removed files:
    /// `table vacuum` deletes those older than its retention). Holds the mover
    /// lock, so no move to the tier runs meanwhile. The tier's folder or prefix itself is left
    /// as it is (empty). The file is rewritten from the configuration (comments other than the
    /// header are not kept); lakes opened from then on no longer see the tier.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            let (dir, _lock) = self.session.lock_config()?;
            let path = dir.join(CONFIG_FILE);
            let (_, config) = read_config(&path)?;
            let bad = |reason: String| Error::Config {
                path: format!("{} [[tier]] {name:?}", path.display()),
                reason,
            };
            let at = config
                .tiers
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| bad(format!("no tier of that name (tiers: {})", tier_names(&config))))?;
            for (key, tier) in [
                ("metadata_tier", &config.lake.metadata_tier),
                ("write_tier", &config.lake.write_tier),
            ] {
                if tier == name {
                    return Err(bad(format!(
                        "it is the lake's {key} ([lake] {key} in stratalake.toml): it cannot be removed"
                    )));
                }
            }
            let mut without = config.clone();
            without.tiers.remove(at);
            without
                .policy()
                .map_err(|e| bad(format!("the configuration without it would not be valid: {e}")))?;
            let guard = stratalake_tiering::mover::lock(self.session.lake.catalog.context(), "mover").await?;
            let checked = async {
                let mut on_it: std::collections::BTreeMap<String, u64> = Default::default();
                for ts in self.session.table_states(None).await? {
                    let n = ts.snapshot.files.values().filter(|f| f.tier == name).count() as u64;
                    if n > 0 {
                        on_it.insert(ts.table.ident().to_string(), n);
                    }
                }
                if let Some((table, _)) = on_it.iter().next() {
                    return Err(bad(format!(
                        "{} live file(s) of {} are on it: move them first (`stratalake tier move --to {} {table}`)",
                        on_it.values().sum::<u64>(),
                        on_it.keys().cloned().collect::<Vec<_>>().join(", "),
                        config.lake.write_tier
                    )));
                }
                let store = open_tier(&dir, &config.tiers[at])?;
                if let Some(obj) = first_object(&store).await? {
                    return Err(bad(format!(
                        "{} still holds objects no live file names (e.g. {obj}): old copies of moved files or \
                         removed files: `stratalake table vacuum TABLE` deletes those older than its --retain",
                        store.url()
                    )));
                }
                self.session.check_opens(&without, &dir)?;
                replace_private(&path, without.to_toml().as_bytes())
            }
            .await;
            guard.release_after(checked).await
        }
        .await;
        self.session
            .record("tier", format!("TIER REMOVE {name}"), vec![], None, &r)
            .await?;
        r
    }
}

/// A run of the tier mover over a plan ([`Tiers::run`]); await it to run it.
#[must_use = "a tier run does nothing until awaited"]
pub struct TierRun<'a> {
    session: &'a Session,
    plan: &'a Plan,
    options: MoveOptions,
}

impl<'a> TierRun<'a> {
    /// Files copied at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = n.max(1);
        self
    }

    /// Bytes per second over all copies (`None`: unlimited).
    pub fn bandwidth(mut self, bytes_per_second: Option<u64>) -> Self {
        self.options.bandwidth = bytes_per_second;
        self
    }

    /// Delete the old copies of moves older than `retention` at the end of the run.
    pub fn retention(mut self, retention: std::time::Duration) -> Self {
        self.options.retention_ms = retention.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    /// Files per `MOVE` commit.
    pub fn batch(mut self, files: usize) -> Self {
        self.options.batch = files.max(1);
        self
    }

    /// Report progress as files finish copying (operation `tier run`).
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.options.progress = Some(std::sync::Arc::new(f));
        self
    }

    async fn run(self) -> Result<MoveReport> {
        self.session.tiers().run_moves(self.plan, self.options).await
    }
}

impl std::fmt::Debug for TierRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierRun")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

into_future!(TierRun => MoveReport);

impl Session {
    async fn heat(&self) -> Result<ReadHeat> {
        let ctx = self.lake.catalog.context();
        let mut heat = stratalake_table::heat::load(ctx.tiers.metadata()).await?;
        heat.merge(ctx.reads.pending());
        Ok(heat)
    }

    async fn table_states(&self, only: Option<&TableIdent>) -> Result<Vec<TableState>> {
        let state = self.lake.catalog.state().await?;
        let mut out = Vec::new();
        for (ns, tables) in &state.namespaces {
            for t in tables.keys() {
                let ident = TableIdent::new(ns, t);
                if only.is_some_and(|o| o != &ident) {
                    continue;
                }
                let table = self.lake.catalog.table(&ident).await?;
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

    fn tier_infos(&self, states: &[TableState]) -> Result<Vec<TierInfo>> {
        let usage = stratalake_tiering::plan::tier_usage(states);
        let ctx = self.lake.catalog.context();
        let meta_url = ctx.tiers.metadata().url().to_string();
        let mut out = Vec::new();
        for (order, spec) in self.lake.policy.tiers.iter().enumerate() {
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
}

/// Store option names that hold credentials: refused by [`Tiers::add`], which would write
/// them into `stratalake.toml` (they belong in the environment, `AWS_*`).
const SECRET_OPTION_WORDS: [&str; 9] = [
    "secret",
    "token",
    "password",
    "access_key",
    "account_key",
    "master_key",
    "service_account_key",
    "sas",
    "customer_key",
];

impl Session {
    /// The lake folder, with an exclusive lock on `stratalake.toml.lock` held until the file
    /// handle returned is dropped: changes of the configuration never overwrite each other.
    fn lock_config(&self) -> Result<(PathBuf, std::fs::File)> {
        let dir = self.lake.dir.clone().ok_or_else(|| Error::Config {
            path: CONFIG_FILE.into(),
            reason: "this lake has no folder (its configuration is at a store URL or was given in code): \
                     change its [[tier]] entries there (docs/operations.md, section 11)"
                .into(),
        })?;
        let lock_path = dir.join(format!("{CONFIG_FILE}.lock"));
        let io = |e: std::io::Error| Error::Config {
            path: lock_path.display().to_string(),
            reason: e.to_string(),
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        f.lock().map_err(io)?;
        Ok((dir, f))
    }

    /// Fail unless a lake would open with `config` (tiers, rules, pins, quotas, cache).
    fn check_opens(&self, config: &LakeConfig, dir: &Path) -> Result<()> {
        let provider = self.lake.catalog.context().keyring.provider().clone();
        Lake::assemble(
            config.clone(),
            Some(dir),
            provider,
            self.lake.clock.clone(),
            Default::default(),
            &Default::default(),
        )
        .map(|_| ())
    }
}

fn tier_names(config: &LakeConfig) -> String {
    config
        .tiers
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of `stratalake.toml` at `path` and what it says.
fn read_config(path: &Path) -> Result<(String, LakeConfig)> {
    let err = |reason: String| Error::Config {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let config = LakeConfig::parse(&text).map_err(err)?;
    Ok((text, config))
}

/// A tier's store, its URL resolved as [`Lake::builder`] does (relative to the lake folder).
fn open_tier(dir: &Path, t: &TierConfig) -> Result<Store> {
    let url = if t.url.contains("://") || Path::new(&t.url).is_absolute() {
        t.url.clone()
    } else {
        dir.join(&t.url).display().to_string()
    };
    Ok(Store::open(&url, &t.options)?)
}

/// Where a tier's files are, without creating anything: `file:///abs/path` (symbolic links and
/// `..` resolved as far as the path exists) or the store URL.
fn location(dir: &Path, t: &TierConfig) -> std::result::Result<String, String> {
    let url = t.url.trim();
    if url.contains("://") && !url.starts_with("file://") {
        if !Store::is_cloud_url(url) {
            return Err(format!(
                "{url:?}: unsupported scheme: use a folder, file://, s3://, gs://, az:// or abfs://"
            ));
        }
        return Ok(url.trim_end_matches('/').to_string());
    }
    let p = Path::new(url.strip_prefix("file://").unwrap_or(url));
    Ok(format!("file://{}", resolve_local(&dir.join(p)).display()))
}

/// `p` made absolute with `.` and `..` applied and symbolic links resolved as far as the path
/// exists (as the file system will resolve it once the folder is created).
fn resolve_local(p: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out = canonical_prefix(&out);
                out.pop();
            }
            c => out.push(c),
        }
    }
    canonical_prefix(&out)
}

/// `p` with its longest existing ancestor canonicalized (`p` holds no `.` or `..`).
fn canonical_prefix(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut base = p;
    loop {
        if let Ok(mut out) = base.canonicalize() {
            out.extend(rest.iter().rev());
            return out;
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                base = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Whether two stores are the same place or one lies inside the other (S3 prefixes at different
/// endpoints are different places).
fn overlaps((a, ta): (&str, &TierConfig), (b, tb): (&str, &TierConfig)) -> bool {
    if Store::is_cloud_url(a) && ta.options.get("endpoint") != tb.options.get("endpoint") {
        return false;
    }
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// Some object the store holds, if any (one listing request, not a whole listing).
async fn first_object(store: &Store) -> Result<Option<String>> {
    let root = store.path("");
    let first = store.object_store().list(Some(&root)).next().await;
    match first {
        None => Ok(None),
        Some(Ok(meta)) => Ok(Some(meta.location.to_string())),
        Some(Err(e)) => Err(Error::Config {
            path: store.url().to_string(),
            reason: format!("cannot list the store: {e}"),
        }),
    }
}

/// `text` with `tier`'s `[[tier]]` table appended, if that reads back as `config`; else
/// `config` rendered whole.
fn append_tier(text: &str, tier: &TierConfig, config: &LakeConfig) -> String {
    #[derive(Serialize)]
    struct One<'a> {
        tier: [&'a TierConfig; 1],
    }
    let Ok(block) = toml::to_string(&One { tier: [tier] }) else {
        return config.to_toml();
    };
    let appended = format!("{}\n\n{block}", text.trim_end());
    match LakeConfig::parse(&appended) {
        Ok(c) if &c == config => appended,
        _ => config.to_toml(),
    }
}

/// Replace `path` with `data` atomically: a fresh private file (mode 0600: the configuration
/// may name credentials) next to it, synced, renamed over it, the folder synced.
fn replace_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(".{CONFIG_FILE}.{}.tmp", crate::uuid_like()));
    let err = |e: std::io::Error| Error::Config {
        path: path.display().to_string(),
        reason: format!("cannot replace it: {e}"),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    let written = f.write_all(data).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
