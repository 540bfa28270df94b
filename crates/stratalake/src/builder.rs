//! [`Lake::builder`]: the one way to create or open a lake, whatever holds it (a folder, an
//! object store URL, a configuration given in code) and wherever its keys come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stratalake_crypto::{EnvKeyProvider, KeyFileProvider, KeyProvider};
use stratalake_table::Store;
use stratalake_table::store::redact_url;

use crate::{CONFIG_FILE, Clock, DEFAULT_NAMESPACE, Error, Lake, LakeConfig, Result};

/// Where a lake lives: a folder holding `stratalake.toml`, or a store URL holding it.
#[derive(Clone)]
enum Location {
    Folder(PathBuf),
    Url(String),
    /// Only a configuration given in code ([`LakeBuilder::from_config`]).
    Embedded,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Folder(d) => f.debug_tuple("Folder").field(d).finish(),
            // a URL may carry credentials pasted into it
            Location::Url(u) => f.debug_tuple("Url").field(&redact_url(u)).finish(),
            Location::Embedded => f.write_str("Embedded"),
        }
    }
}

impl Location {
    fn parse(location: &str) -> Location {
        match location.strip_prefix("file://") {
            Some(p) => Location::Folder(PathBuf::from(p)),
            None if location.contains("://") => Location::Url(location.trim_end_matches('/').to_string()),
            None => Location::Folder(PathBuf::from(location)),
        }
    }

    fn config_name(&self) -> String {
        match self {
            Location::Folder(d) => d.join(CONFIG_FILE).display().to_string(),
            Location::Url(u) => format!("{}/{CONFIG_FILE}", redact_url(u)),
            Location::Embedded => "the configuration given to LakeBuilder::from_config".into(),
        }
    }
}

/// Creates or opens a lake ([`Lake::builder`]).
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// // a new lake in a folder: stratalake.toml, a 0600 key file, the `hot` tier in `data/`
/// let lake = stratalake::Lake::builder(dir.path()).admin("records_admin").create().await?;
/// assert_eq!(lake.session("records_admin").namespaces().await?, vec!["default"]);
/// // later, with a memory limit for this process's queries
/// let lake = stratalake::Lake::builder(dir.path()).memory_limit(512 << 20).open().await?;
/// assert_eq!(lake.query_runtime().memory_limit(), Some(512 << 20));
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until .create() or .open()"]
pub struct LakeBuilder {
    location: Location,
    config: Option<LakeConfig>,
    store: Option<String>,
    store_options: BTreeMap<String, String>,
    provider: Option<Arc<dyn KeyProvider>>,
    key_file: Option<PathBuf>,
    admin: Option<String>,
    clock: Clock,
    memory_limit: Option<u64>,
    target_partitions: Option<usize>,
    /// Stores given in code for tiers ([`LakeBuilder::tier_store`]), by tier name.
    tier_stores: BTreeMap<String, Store>,
}

impl std::fmt::Debug for LakeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // store options may hold credentials: only their names are shown
        f.debug_struct("LakeBuilder")
            .field("location", &self.location)
            .field("store", &self.store.as_deref().map(redact_url))
            .field("store_options", &self.store_options.keys().collect::<Vec<_>>())
            .field("provider", &self.provider.as_ref().map(|p| p.describe()))
            .field("key_file", &self.key_file)
            .field("admin", &self.admin)
            .field("memory_limit", &self.memory_limit)
            .field("target_partitions", &self.target_partitions)
            .field(
                "tier_stores",
                &self
                    .tier_stores
                    .iter()
                    .map(|(name, s)| (name, redact_url(s.url())))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl LakeBuilder {
    /// A lake described only by `config` (a service keeping its configuration elsewhere):
    /// tier URLs must be absolute or store URLs, and no read cache folder is used unless the
    /// configuration names an absolute one.
    pub fn from_config(config: LakeConfig) -> LakeBuilder {
        let mut b = Lake::builder("");
        b.location = Location::Embedded;
        b.config = Some(config);
        b
    }
}

impl Lake {
    /// Create or open the lake at `location`: a folder (`/srv/lake`, `file:///srv/lake`) holding
    /// `stratalake.toml`, or a store URL (`s3://bucket/prefix`, `memory://name`) holding it.
    pub fn builder(location: impl AsRef<Path>) -> LakeBuilder {
        let location = location.as_ref().to_string_lossy();
        LakeBuilder {
            location: Location::parse(&location),
            config: None,
            store: None,
            store_options: BTreeMap::new(),
            provider: None,
            key_file: None,
            admin: None,
            clock: Clock::system(),
            memory_limit: None,
            target_partitions: None,
            tier_stores: BTreeMap::new(),
        }
    }
}

impl LakeBuilder {
    /// Use this configuration instead of reading `stratalake.toml` (a service that keeps its
    /// configuration elsewhere). Relative tier URLs resolve against a folder location.
    pub fn config(mut self, config: LakeConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// For [`create`](Self::create) of a folder lake: the store URL of its `hot` tier (default:
    /// the folder `data` inside the lake folder).
    pub fn store(mut self, url: impl Into<String>) -> Self {
        self.store = Some(url.into());
        self
    }

    /// Options of the store: for a new folder lake, its `hot` tier's (S3 endpoint, region,
    /// `allow_http`); for a lake at a URL, how to reach the store holding its configuration.
    pub fn store_options(mut self, options: BTreeMap<String, String>) -> Self {
        self.store_options = options;
        self
    }

    /// Master keys from this provider (e.g. a KMS) instead of the configuration's `[keys]`.
    /// A lake created with a provider records `[keys] provider = "external"` and must be
    /// opened with one again.
    pub fn key_provider(mut self, provider: Arc<dyn KeyProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The master key file: where [`create`](Self::create) writes it (default `master.keys` in
    /// a lake folder; required for a lake at a URL) and where [`open`](Self::open) reads it
    /// (for a lake at a URL the default is `STRATALAKE_KEY_FILE`, else the config's absolute
    /// path). For a folder lake a relative path is inside the folder.
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// For [`create`](Self::create): the lake's first administrator (required).
    pub fn admin(mut self, principal: impl Into<String>) -> Self {
        self.admin = Some(principal.into());
        self
    }

    /// The clock tier plans, capacity forecasts and retention windows read (default: the
    /// system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Memory all running statements may hold together, overriding `[query] memory_limit`.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Partitions a scan is split into, overriding `[query] target_partitions`.
    pub fn target_partitions(mut self, n: usize) -> Self {
        self.target_partitions = Some(n);
        self
    }

    /// Use `store` as the tier `name` instead of opening the URL the configuration gives it: for
    /// a service that reaches its object store its own way (its own credentials or client, a
    /// wrapper that meters or limits requests). The configuration must declare the tier; its
    /// URL stays in the configuration but is not opened; the tier's `cache` setting applies as
    /// to any store. Give the configuration in code too ([`config`](Self::config) or
    /// [`from_config`](Self::from_config)): it is then never read from a store the builder
    /// does not use. Each tier needs its own store, and the store's URL must say truthfully
    /// what it is (a `memory://` URL promises answers that are never lost on the way).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// use std::sync::Arc;
    /// use stratalake::table::Store;
    /// // an object store the service built itself (here one in memory)
    /// let own = Arc::new(object_store::memory::InMemory::new());
    /// let hot = Store::from_object_store("memory://svc-own", own, Default::default());
    /// let config = stratalake::LakeConfig::single_tier("s3://svc-bucket/lake");
    /// let keys = Arc::new(stratalake::crypto::MemoryKeyProvider::new());
    /// let lake = stratalake::LakeBuilder::from_config(config)
    ///     .key_provider(keys)
    ///     .tier_store("hot", hot.clone())
    ///     .admin("svc")
    ///     .create()
    ///     .await?;
    /// lake.session("svc").sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// // the catalog and the table's log are in the service's store
    /// assert!(!hot.list("_catalog/_log").await?.is_empty());
    /// assert_eq!(hot.list("default/t/_log").await?.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn tier_store(mut self, name: &str, store: Store) -> Self {
        self.tier_stores.insert(name.to_string(), store);
        self
    }

    /// Open an existing lake.
    pub async fn open(self) -> Result<Lake> {
        self.check_tier_stores()?;
        let (config, base) = match (&self.config, &self.location) {
            (Some(c), Location::Folder(d)) => (c.clone(), Some(d.clone())),
            (Some(c), Location::Url(u)) => {
                let mut c = c.clone();
                resolve_tier_urls(&mut c, u);
                self.reach_lake_store(&mut c, u);
                (c, None)
            }
            (Some(c), Location::Embedded) => (c.clone(), None),
            (None, Location::Folder(d)) => (read_folder_config(d)?, Some(d.clone())),
            (None, Location::Url(u)) => (self.read_url_config(u).await?, None),
            (None, Location::Embedded) => unreachable!("from_config sets the configuration"),
        };
        let provider = self.provider_for(&config, base.as_deref())?;
        self.assemble(config, base.as_deref(), provider)
    }

    /// Create a new lake: refuses a location that already holds one. Writes its configuration
    /// (unless given with [`config`](Self::config)) and, without a key provider, a new key file
    /// (mode 0600) with a master key per classification; creates the `default` namespace and
    /// makes [`admin`](Self::admin) the lake's administrator.
    pub async fn create(self) -> Result<Lake> {
        let location = self.location.config_name();
        let admin = self.admin.clone().ok_or_else(|| Error::Config {
            path: location.clone(),
            reason: "a new lake needs its first administrator: Lake::builder(..).admin(NAME)".into(),
        })?;
        stratalake_table::names::validate_ident("principal", &admin)?;
        self.check_tier_stores()?;
        let lake = match (&self.config, &self.location) {
            (Some(c), loc) => {
                let base = match loc {
                    Location::Folder(d) => Some(d.clone()),
                    Location::Url(_) | Location::Embedded => None,
                };
                let provider = self.provider_for(c, base.as_deref())?;
                let lake = self.assemble(c.clone(), base.as_deref(), provider)?;
                let store = lake.catalog.context().tiers.metadata().clone();
                check_empty_store(&store, &location).await?;
                lake
            }
            (None, Location::Folder(d)) => self.create_folder(d).await?,
            (None, Location::Url(u)) => self.create_url(u).await?,
            (None, Location::Embedded) => unreachable!("from_config sets the configuration"),
        };
        lake.catalog.create_namespace(DEFAULT_NAMESPACE, true, &admin).await?;
        lake.session(&admin).access().bootstrap_admin().await?;
        Ok(lake)
    }

    /// Stores given with [`tier_store`](Self::tier_store) come with the configuration in code,
    /// and no two tiers share one (vacuum would take one tier's files for another's leftovers).
    fn check_tier_stores(&self) -> Result<()> {
        if self.tier_stores.is_empty() {
            return Ok(());
        }
        let refuse = |reason: String| Error::Config {
            path: self.location.config_name(),
            reason,
        };
        if self.config.is_none() {
            return Err(refuse(
                "a lake on stores given with .tier_store(..) needs its configuration in code: .config(..)".into(),
            ));
        }
        let mut seen = std::collections::BTreeMap::new();
        for (name, store) in &self.tier_stores {
            if let Some(other) = seen.insert(store.url().to_string(), name) {
                return Err(refuse(format!(
                    "tiers {other:?} and {name:?} were given the same store {}: each tier needs its own",
                    redact_url(store.url())
                )));
            }
        }
        Ok(())
    }

    async fn create_folder(&self, dir: &Path) -> Result<Lake> {
        let cfg_path = crate::new_lake_folder(dir)?;
        let mut config = LakeConfig::single_tier(self.store.as_deref().unwrap_or("data"));
        config.tiers[0].options = self.store_options.clone();
        // Reach the store before writing anything, and never attach new keys to a store that
        // already holds a lake.
        let tier = &config.tiers[0];
        let url = if tier.url.contains("://") {
            tier.url.clone()
        } else {
            dir.join(&tier.url).display().to_string()
        };
        check_empty_store(&Store::open(&url, &tier.options)?, &url).await?;
        if self.provider.is_some() {
            config.keys = external_keys();
        } else {
            let key_path = match &self.key_file {
                Some(k) => {
                    config.keys.file = Some(k.display().to_string());
                    if k.is_absolute() { k.clone() } else { dir.join(k) }
                }
                None => dir.join(config.keys.file.as_deref().unwrap_or("master.keys")),
            };
            KeyFileProvider::create(&key_path, &config.classifications.levels)?;
        }
        crate::write_private(&cfg_path, config.to_toml().as_bytes()).map_err(|e| Error::Config {
            path: cfg_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let provider = self.provider_for(&config, Some(dir))?;
        self.assemble(config, Some(dir), provider)
    }

    async fn create_url(&self, url: &str) -> Result<Lake> {
        if self.store.is_some() {
            return Err(Error::Config {
                path: self.location.config_name(),
                reason: "a lake at a URL keeps its `hot` tier below that URL: leave out .store(..)".into(),
            });
        }
        let store = Store::open(url, &self.store_options)?;
        if store.get_opt(CONFIG_FILE).await?.is_some() {
            return Err(Error::LakeExists(redact_url(url)));
        }
        store.check_conditional_create().await?;
        let mut config = LakeConfig::single_tier("data");
        let mut key_file = None;
        if self.provider.is_some() {
            config.keys = external_keys();
        } else {
            let k = self.key_file.as_deref().ok_or_else(|| Error::Config {
                path: self.location.config_name(),
                reason: "a lake at a URL needs a local key file for its master keys: .key_file(PATH)".into(),
            })?;
            let k = std::path::absolute(k).map_err(|e| Error::Config {
                path: k.display().to_string(),
                reason: e.to_string(),
            })?;
            KeyFileProvider::create(&k, &config.classifications.levels)?;
            // The key file's path stays on this machine: a configuration in the store names
            // no local file (whoever can write the store could point it at another one).
            config.keys.file = None;
            key_file = Some(k);
        }
        if !store.put_create(CONFIG_FILE, config.to_toml().into()).await? {
            return Err(Error::LakeExists(redact_url(url)));
        }
        resolve_tier_urls(&mut config, url);
        self.reach_lake_store(&mut config, url);
        let provider = match key_file {
            Some(k) => Arc::new(KeyFileProvider::open(k)?) as Arc<dyn KeyProvider>,
            None => self.provider_for(&config, None)?,
        };
        self.assemble(config, None, provider)
    }

    async fn read_url_config(&self, url: &str) -> Result<LakeConfig> {
        let store = Store::open(url, &self.store_options)?;
        let cfg_name = self.location.config_name();
        let text = store.get_opt(CONFIG_FILE).await?.ok_or_else(|| Error::Config {
            path: cfg_name.clone(),
            reason: "not found: create the lake with `stratalake init URL --key-file PATH`".into(),
        })?;
        let text = String::from_utf8(text.to_vec()).map_err(|_| Error::Config {
            path: cfg_name.clone(),
            reason: "not UTF-8".into(),
        })?;
        let mut config = LakeConfig::parse(&text).map_err(|reason| Error::Config {
            path: cfg_name.clone(),
            reason,
        })?;
        resolve_tier_urls(&mut config, url);
        // Whoever can write the store can write this file: it may not choose credentials,
        // endpoints, profiles or plain HTTP. Tiers in the lake's own store are reached as the
        // configuration was, with the options given to the builder.
        // Nor may it point this process at its local files.
        let untrusted = |reason: String| Error::Config {
            path: cfg_name.clone(),
            reason: format!("{reason} (a configuration kept in the store may not choose it)"),
        };
        for t in &mut config.tiers {
            stratalake_table::store::check_untrusted_options(&t.url, &t.options).map_err(|e| Error::Config {
                path: cfg_name.clone(),
                reason: format!("tier {:?}: {e}", t.name),
            })?;
            if !t.url.contains("://") || t.url.starts_with("file://") {
                return Err(untrusted(format!("tier {:?} is a local folder", t.name)));
            }
        }
        if config.tiering.cache_dir.is_some() {
            return Err(untrusted("[tiering] cache_dir names a local folder".into()));
        }
        self.reach_lake_store(&mut config, url);
        Ok(config)
    }

    /// Tiers below the lake's URL are in the store the builder was told how to reach: they get
    /// its store options.
    fn reach_lake_store(&self, config: &mut LakeConfig, url: &str) {
        for t in &mut config.tiers {
            if t.url == url || t.url.starts_with(&format!("{url}/")) {
                t.options.extend(self.store_options.clone());
            }
        }
    }

    /// The key provider: the one given, else the configuration's `[keys]` (this is the only
    /// place that chooses).
    fn provider_for(&self, config: &LakeConfig, base: Option<&Path>) -> Result<Arc<dyn KeyProvider>> {
        if let Some(p) = &self.provider {
            return Ok(p.clone());
        }
        let cfg_name = self.location.config_name();
        Ok(match config.keys.provider.as_str() {
            "env" => Arc::new(EnvKeyProvider::new()),
            "file" => {
                let path = match base {
                    // relative paths are inside the lake folder, as `create` wrote them
                    Some(dir) => dir.join(
                        self.key_file
                            .as_deref()
                            .unwrap_or_else(|| Path::new(config.keys.file.as_deref().unwrap_or("master.keys"))),
                    ),
                    // A lake at a URL: its configuration lies in the store, where whoever can
                    // write the store can edit it, so the key file comes only from this
                    // process (never from `[keys] file`).
                    None => self
                        .key_file
                        .clone()
                        .or_else(|| std::env::var("STRATALAKE_KEY_FILE").ok().map(PathBuf::from))
                        .ok_or_else(|| Error::Config {
                            path: cfg_name.clone(),
                            reason: "a lake at a URL needs its key file: set STRATALAKE_KEY_FILE".into(),
                        })?,
                };
                Arc::new(KeyFileProvider::open(path)?)
            }
            "external" => {
                return Err(Error::Config {
                    path: cfg_name,
                    reason: "this lake's master keys come from a provider the embedding service passes: Lake::builder(..).key_provider(..)".into(),
                });
            }
            other => {
                return Err(Error::Config {
                    path: cfg_name,
                    reason: format!("[keys] provider {other:?} is not known: use \"file\" or \"env\""),
                });
            }
        })
    }

    fn assemble(&self, config: LakeConfig, base: Option<&Path>, provider: Arc<dyn KeyProvider>) -> Result<Lake> {
        let mut runtime = config.query.runtime_options().map_err(|reason| Error::Config {
            path: self.location.config_name(),
            reason,
        })?;
        if let Some(m) = self.memory_limit {
            runtime.memory_limit = Some(m);
        }
        if let Some(n) = self.target_partitions {
            runtime.target_partitions = Some(n);
        }
        Lake::assemble(config, base, provider, self.clock.clone(), runtime, &self.tier_stores)
    }
}

fn external_keys() -> crate::KeysSection {
    crate::KeysSection {
        provider: "external".into(),
        file: None,
    }
}

/// Relative tier URLs of a lake at `url` resolve below it.
fn resolve_tier_urls(config: &mut LakeConfig, url: &str) {
    for t in &mut config.tiers {
        if !t.url.contains("://") && !Path::new(&t.url).is_absolute() {
            t.url = format!("{url}/{}", t.url.trim_start_matches("./"));
        }
    }
}

async fn check_empty_store(store: &Store, name: &str) -> Result<()> {
    store.check_conditional_create().await?;
    if !store.list("_catalog").await?.is_empty() {
        return Err(Error::LakeExists(format!(
            "{name} (the store already holds a lake's catalog)"
        )));
    }
    Ok(())
}

fn read_folder_config(dir: &Path) -> Result<LakeConfig> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::Config {
        path: cfg_path.display().to_string(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "not found: create a lake with `stratalake init` or pass --lake".into()
        } else {
            e.to_string()
        },
    })?;
    LakeConfig::parse(&text).map_err(|reason| Error::Config {
        path: cfg_path.display().to_string(),
        reason,
    })
}
