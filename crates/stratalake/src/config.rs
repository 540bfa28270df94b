//! `stratalake.toml`: the lake's configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stratalake_table::Classifications;
use stratalake_tiering::{PinConfig, Policy, QuotaConfig, RuleConfig, TieringSection};

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Lake-wide settings.
    #[serde(default)]
    pub lake: LakeSection,
    /// Classification levels.
    #[serde(default)]
    pub classifications: Classifications,
    /// Where master keys come from.
    #[serde(default)]
    pub keys: KeysSection,
    /// Storage tiers, hottest first.
    #[serde(rename = "tier")]
    pub tiers: Vec<TierConfig>,
    /// The mover and the read cache.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tiering: TieringSection,
    /// Placement rules.
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Pins.
    #[serde(default, rename = "pin", skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<PinConfig>,
    /// Quotas.
    #[serde(default, rename = "quota", skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaConfig>,
    /// The query runtime all sessions share.
    #[serde(default, skip_serializing_if = "is_default")]
    pub query: QuerySection,
    /// `stratalake serve`: where it listens, its certificate, its limits.
    #[serde(default, skip_serializing_if = "is_default")]
    pub server: ServerSection,
}

/// `[server]`: how `stratalake serve` listens and what it allows. Every setting is optional
/// (the server's defaults apply) and a command-line flag of the same name overrides it. The
/// server crate reads these (`stratalake_server::ServerConfig::from_section`) and names the
/// setting in any error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address of the PostgreSQL protocol, e.g. `"0.0.0.0:5432"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Certificate chain (PEM); a relative path is taken from the lake folder (for a lake at a
    /// URL, from the server's working directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The certificate's private key (PEM), readable only by the server's user; relative as `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Accept connections without TLS (only on a loopback `listen` address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_plaintext: Option<bool>,
    /// Connections at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Statements one principal may have running at once, over all its connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queries_per_principal: Option<usize>,
    /// Largest result of one statement the server holds before sending it, e.g. `"1GiB"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_result_size: Option<String>,
    /// Time from connecting to a finished login, e.g. `"10s"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_timeout: Option<String>,
    /// Close a logged-in connection that sends nothing this long, e.g. `"15m"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Stop a statement that runs longer, e.g. `"5m"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<String>,
    /// Connections from one address that may be logging in at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_per_address: Option<usize>,
    /// Failed logins from one address within a minute after which its logins are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failed_logins: Option<u32>,
    /// On SIGTERM or Ctrl-C: how long running statements may take to finish before they are
    /// canceled, e.g. `"30s"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<String>,
}

/// `[query]`: the runtime every session of the lake shares.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    /// Memory all running statements may hold together, e.g. `"4GiB"` (no limit when absent).
    /// A statement that needs more fails; nothing is spilled to disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    /// Partitions a scan is split into (default: the machine's cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_partitions: Option<usize>,
}

impl QuerySection {
    /// The runtime options these settings give; the error names the bad setting.
    pub fn runtime_options(&self) -> Result<stratalake_query::RuntimeOptions, String> {
        let memory_limit = self
            .memory_limit
            .as_deref()
            .map(|m| stratalake_tiering::units::parse_size(m).map_err(|e| format!("[query] memory_limit: {e}")))
            .transpose()?;
        if memory_limit == Some(0) {
            return Err("[query] memory_limit: 0 would refuse every statement; leave it out for no limit".into());
        }
        if self.target_partitions == Some(0) {
            return Err("[query] target_partitions: must be at least 1".into());
        }
        Ok(stratalake_query::RuntimeOptions {
            memory_limit,
            target_partitions: self.target_partitions,
        })
    }
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// `[lake]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSection {
    /// Tier holding the catalog and table logs.
    pub metadata_tier: String,
    /// Tier receiving newly written data files.
    pub write_tier: String,
    /// Write a log checkpoint every N commits.
    pub checkpoint_interval: u64,
    /// Roll data files at about this many MiB.
    pub target_file_size_mib: u64,
    /// `table vacuum` refuses a shorter retention (in hours) without `--force`.
    pub vacuum_min_retention_hours: u64,
    /// The longest a write may take from its first staged data file to its commit (`6h` when
    /// absent, at least `15m`). Vacuum never deletes unreferenced files younger than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staging_grace: Option<String>,
    /// How long writers keep retrying commits that lost a race (`120s` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_retry: Option<String>,
}

impl LakeSection {
    /// The commit policy these settings give; the error names the bad setting.
    pub fn commit_policy(&self) -> Result<stratalake_table::logstore::CommitPolicy, String> {
        use std::time::Duration;
        use stratalake_table::logstore::{CommitPolicy, MIN_STAGING_GRACE};
        use stratalake_table::units::parse_duration_ms;
        let mut p = CommitPolicy::default();
        if let Some(g) = &self.staging_grace {
            let ms = parse_duration_ms(g).map_err(|e| format!("[lake] staging_grace: {e}"))?;
            p.staging_grace = Duration::from_millis(ms.max(0) as u64);
            if p.staging_grace < MIN_STAGING_GRACE {
                return Err(format!(
                    "[lake] staging_grace: {g:?} is shorter than the minimum of {} minutes",
                    MIN_STAGING_GRACE.as_secs() / 60
                ));
            }
        }
        if let Some(r) = &self.commit_retry {
            let ms = parse_duration_ms(r).map_err(|e| format!("[lake] commit_retry: {e}"))?;
            p.retry_for = Duration::from_millis(ms.max(0) as u64);
        }
        Ok(p)
    }
}

impl Default for LakeSection {
    fn default() -> Self {
        Self {
            metadata_tier: "hot".into(),
            write_tier: "hot".into(),
            checkpoint_interval: 10,
            target_file_size_mib: 128,
            vacuum_min_retention_hours: 168,
            staging_grace: None,
            commit_retry: None,
        }
    }
}

/// `[keys]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// `file` (a 0600 key file) or `env` (`STRATALAKE_KEY_<LEVEL>` variables).
    pub provider: String,
    /// Key file path, relative to the lake folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Default for KeysSection {
    fn default() -> Self {
        Self {
            provider: "file".into(),
            file: Some("master.keys".into()),
        }
    }
}

/// `[[tier]]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Name (`hot`, `cold`, ...).
    pub name: String,
    /// Store URL: a path relative to the lake folder, `file:///abs`, `memory://name`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    pub url: String,
    /// Store options (S3: `endpoint`, `region`, `profile`, ...; object_store's GCS and Azure
    /// keys for `gs://` and `az://`). Credentials belong in the environment
    /// (`AWS_ACCESS_KEY_ID`, ...) or an AWS profile (`~/.aws/credentials`), not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Capacity limit (`500GiB`): fill-level placement, free space and the forecast use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Fill fraction above which the coldest files move to the next tier (0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<f64>,
    /// Fill fraction they move down to (0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_watermark: Option<f64>,
    /// Read through the local cache (default: yes for tiers that are not local folders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
}

impl std::fmt::Debug for TierConfig {
    /// Option values may hold credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("capacity", &self.capacity)
            .field(
                "options",
                &self
                    .options
                    .keys()
                    .map(|k| format!("{k}=<redacted>"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl LakeConfig {
    /// The default: one `hot` tier at `url`, key file `master.keys`.
    pub fn single_tier(url: &str) -> Self {
        Self {
            lake: LakeSection::default(),
            classifications: Classifications::default(),
            keys: KeysSection::default(),
            tiers: vec![TierConfig {
                name: "hot".into(),
                url: url.into(),
                options: BTreeMap::new(),
                capacity: None,
                high_watermark: None,
                low_watermark: None,
                cache: None,
            }],
            tiering: TieringSection::default(),
            rules: Vec::new(),
            pins: Vec::new(),
            quotas: Vec::new(),
            query: QuerySection::default(),
            server: ServerSection::default(),
        }
    }

    /// The tiering policy (tiers in order, rules, pins, quotas), validated.
    pub fn policy(&self) -> Result<Policy, stratalake_tiering::Error> {
        let tiers: Vec<stratalake_tiering::config::TierFields<'_>> = self
            .tiers
            .iter()
            .map(|t| stratalake_tiering::config::TierFields {
                name: &t.name,
                capacity: t.capacity.as_deref(),
                high_watermark: t.high_watermark,
                low_watermark: t.low_watermark,
            })
            .collect();
        Policy::new(&tiers, &self.tiering, &self.rules, &self.pins, &self.quotas)
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        // toml's own message quotes the offending line, which may hold a credential: report
        // the position and the reason only.
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            }
        })
    }

    /// Render as TOML with explanatory comments.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("config serializes");
        format!(
            "# Stratalake lake configuration. Edit with care; see docs/operations.md.\n\
             # Tier URLs: a path relative to this folder, file:///abs/path, memory://name,\n\
             # s3://bucket/prefix (gs://, az://) with [tier.options] endpoint/region/profile;\n\
             # credentials come from the environment or ~/.aws profiles, never from this file.\n\n{body}"
        )
    }
}
