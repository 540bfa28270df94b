//! Backups through the facade: lake administrators only, every operation audited.

use std::collections::BTreeMap;
use std::path::Path;

use stratalake_backup::{BackupOptions, Manifest, ProgressFn, Repository, RestoreOptions, RestoreSummary};
use stratalake_table::{Store, TableIdent};

use crate::ops::{OnProgress, into_future, quiet};
use crate::{DEFAULT_NAMESPACE, Error, KeysSection, Lake, LakeConfig, Result, Session};
use stratalake_table::access::Operation;
use stratalake_table::progress::Progress;

/// Where a lake created to receive a restore takes its master keys from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A copy of a key file (the backed-up lake's), written into the new lake's folder as
    /// `master.keys` (mode 0600): the restored lake depends on nothing outside its folder.
    Copy(std::path::PathBuf),
    /// An existing key file used in place, recorded by absolute path (a key file the two lakes
    /// share on purpose: a rotation or shred in one then also changes the other's keys).
    File(std::path::PathBuf),
    /// `STRATALAKE_KEY_<LEVEL>` environment variables.
    Env,
}

/// Where a lake notes the backup repositories it created or opened (one object per repository:
/// its URL and the master key versions its key slots are wrapped under), so that retiring a
/// master key version never strands a repository (see [`Keys::retire`](crate::Keys::retire)).
pub(crate) const REPOSITORIES: &str = "_backup/repositories/";

/// What the lake noted about one repository.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct NotedRepository {
    pub id: String,
    pub url: String,
    pub slots: Vec<stratalake_crypto::KeyId>,
}

impl Session {
    async fn note_repository(&self, repo: &Repository) -> Result<()> {
        let noted = NotedRepository {
            id: repo.id().to_string(),
            url: repo.store().url().to_string(),
            slots: repo.key_slots().await?,
        };
        let body = serde_json::to_vec_pretty(&noted)
            .map_err(|e| Error::Table(stratalake_table::Error::Internal(e.to_string())))?;
        let meta = self.lake.catalog.context().tiers.metadata();
        let name = format!("{REPOSITORIES}{}.json", noted.id);
        // written only when it changes (every backup command opens its repository)
        if meta.get_opt(&name).await?.as_deref() != Some(body.as_slice()) {
            meta.put(&name, body.into()).await?;
        }
        Ok(())
    }
}

impl Session {
    /// Backup repositories as this session's principal: create and open repositories, back up,
    /// restore, and forget a repository deleted on purpose. Lake administrators only; audited.
    pub fn backups(&self) -> Backups<'_> {
        Backups { session: self }
    }
}

/// Backups seen through a [`Session`] ([`Session::backups`]).
#[derive(Clone, Copy, Debug)]
pub struct Backups<'a> {
    session: &'a Session,
}

impl<'a> Backups<'a> {
    /// Back up the whole lake, with its principals, roles, grants and policies (or only the
    /// tables given with [`Backup::tables`]) into `repo`. Each table is consistent with one
    /// version; writers may keep writing.
    pub fn create(&self, repo: &'a Repository) -> Backup<'a> {
        Backup {
            session: self.session,
            repo,
            tables: None,
            concurrency: 4,
            progress: quiet(),
        }
    }

    /// Restore backup `id` of `repo` into this lake: a whole lake into an empty one, or one
    /// table ([`Restore::table`]), optionally under a new name and at an older version.
    pub fn restore(&self, repo: &'a Repository, id: &'a str) -> Restore<'a> {
        Restore {
            session: self.session,
            repo,
            id,
            options: RestoreOptions {
                concurrency: 4,
                ..Default::default()
            },
            progress: quiet(),
        }
    }

    /// Stop keeping track of the backup repository at `url` (or with that id): key retirement
    /// no longer opens it to keep its key slots current. For a repository deleted on purpose.
    /// Returns how many notes were removed. Lake administrators only.
    pub async fn detach(&self, url_or_id: &str) -> Result<usize> {
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            let meta = self.session.lake.catalog.context().tiers.metadata();
            // the note holds the store's own spelling of the URL (a folder becomes file://...)
            let spelled = Store::open(url_or_id, &BTreeMap::new())
                .ok()
                .map(|s| s.url().to_string());
            let mut removed = 0;
            for (name, _) in meta.list(REPOSITORIES).await? {
                let Some(raw) = meta.get_opt(&name).await? else {
                    continue;
                };
                let matches = serde_json::from_slice::<NotedRepository>(&raw)
                    .map(|n| n.url == url_or_id || n.id == url_or_id || Some(&n.url) == spelled.as_ref())
                    .unwrap_or(false);
                if matches {
                    meta.delete(&name).await?;
                    removed += 1;
                }
            }
            Ok(removed)
        }
        .await;
        self.session
            .record("backup", format!("BACKUP DETACH {url_or_id}"), vec![], None, &r)
            .await?;
        r
    }

    /// Create a backup repository at `url` (a folder, `file:///…`, `memory://…` or
    /// `s3://bucket/prefix`), keyed to this lake's master keys. Lake administrators only.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let repo = lake.backups().init("memory://doc-backups", &Default::default()).await?;
    /// let first = lake.backups().create(&repo).await?;
    /// assert_eq!(first.totals.new_files, 1);
    /// // nothing changed: the second backup copies no data
    /// let second = lake.backups().create(&repo).await?;
    /// assert_eq!((second.totals.files, second.totals.new_files), (1, 0));
    /// assert!(repo.verify(true, &|_| {}).await?.problems.is_empty());
    /// // restore into a new lake sharing the master keys
    /// let copy = lake.backups().empty_twin("memory://doc-restored").await?;
    /// copy.backups().restore(&repo, &second.id).await?;
    /// assert_eq!(copy.sql("SELECT sum(x) AS s FROM t").await?[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn init(&self, url: &str, options: &BTreeMap<String, String>) -> Result<Repository> {
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            let store = Store::open(url, options)?;
            let repo = Repository::init(store, &self.session.lake.catalog.context().keyring).await?;
            self.session.note_repository(&repo).await?;
            Ok(repo)
        }
        .await;
        self.session
            .record("backup", format!("BACKUP INIT {url}"), vec![], None, &r)
            .await?;
        r
    }

    /// Open the backup repository at `url` with this lake's master keys. Lake administrators only.
    pub async fn open(&self, url: &str, options: &BTreeMap<String, String>) -> Result<Repository> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let store = Store::open(url, options)?;
        let repo = Repository::open(store, &self.session.lake.catalog.context().keyring).await?;
        self.session.note_repository(&repo).await?;
        Ok(repo)
    }

    /// Back up `tables` (`None`: the whole lake, with its principals, roles, grants and
    /// policies) into `repo`. Each table is consistent with one version; writers may keep
    /// writing. Lake administrators only.
    async fn create_with(
        &self,
        repo: &Repository,
        tables: Option<&[String]>,
        concurrency: usize,
        progress: ProgressFn<'_>,
    ) -> Result<Manifest> {
        let idents = tables
            .map(|ts| {
                ts.iter()
                    .map(|t| TableIdent::parse(t, DEFAULT_NAMESPACE))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let names: Vec<String> = idents.iter().flatten().map(|i| i.to_string()).collect();
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            let opts = BackupOptions {
                tables: idents,
                principal: self.session.principal.clone(),
                concurrency,
            };
            Ok(repo.create(&self.session.lake.catalog, opts, progress).await?)
        }
        .await;
        let what = if names.is_empty() {
            "ALL".to_string()
        } else {
            names.join(", ")
        };
        self.session
            .record(
                "backup",
                format!("BACKUP {what} TO {}", repo.store().url()),
                names,
                None,
                &r,
            )
            .await?;
        r
    }

    /// Restore backup `id` of `repo` into this lake (see [`RestoreOptions`]): a whole lake into
    /// an empty one, or one table, optionally under a new name and at an older version.
    /// Lake administrators only.
    async fn restore_with(
        &self,
        repo: &Repository,
        id: &str,
        mut opts: RestoreOptions,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreSummary> {
        opts.principal = self.session.principal.clone();
        if opts.concurrency == 0 {
            opts.concurrency = 4;
        }
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            Ok(repo
                .restore(id, &self.session.lake.catalog, opts.clone(), progress)
                .await?)
        }
        .await;
        let tables = r
            .as_ref()
            .map(|s| s.tables.iter().map(|t| t.table.clone()).collect())
            .unwrap_or_default();
        self.session
            .record(
                "restore",
                format!("RESTORE {id} FROM {}", repo.store().url()),
                tables,
                None,
                &r,
            )
            .await?;
        r
    }

    /// A lake with this lake's configuration and master keys but its own (empty) store at
    /// `url`: a restore target for drills and tests. Lake administrators only (the twin starts in
    /// bootstrap mode with this lake's keys).
    pub async fn empty_twin(&self, url: &str) -> Result<Session> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let mut config = self.session.lake.config.clone();
        config.tiers.truncate(1);
        config.tiers[0].url = url.to_string();
        config.tiers[0].name = config.lake.metadata_tier.clone();
        config.lake.write_tier = config.lake.metadata_tier.clone();
        Lake::assemble(
            config,
            None,
            self.session.lake.catalog.context().keyring.provider().clone(),
            self.session.lake.clock.clone(),
            Default::default(),
            &Default::default(),
        )
        .map(|mut l| {
            // the twin's statements share this lake's memory pool
            l.runtime = self.session.lake.runtime.clone();
            l.session(&self.session.principal)
        })
    }
}

/// A backup into a repository ([`Backups::create`]); await it to run it.
#[must_use = "a backup does nothing until awaited"]
pub struct Backup<'a> {
    session: &'a Session,
    repo: &'a Repository,
    tables: Option<Vec<String>>,
    concurrency: usize,
    progress: OnProgress<'a>,
}

impl<'a> Backup<'a> {
    /// Only these tables (default: the whole lake).
    pub fn tables<S: Into<String>>(mut self, tables: impl IntoIterator<Item = S>) -> Self {
        self.tables = Some(tables.into_iter().map(Into::into).collect());
        self
    }

    /// Files copied at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Report progress as files are copied (operation `backup`).
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'a) -> Self {
        self.progress = Box::new(f);
        self
    }

    async fn run(self) -> Result<Manifest> {
        self.session
            .backups()
            .create_with(self.repo, self.tables.as_deref(), self.concurrency, &self.progress)
            .await
    }
}

impl std::fmt::Debug for Backup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("tables", &self.tables)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

into_future!(Backup => Manifest);

/// A restore from a repository ([`Backups::restore`]); await it to run it.
#[must_use = "a restore does nothing until awaited"]
pub struct Restore<'a> {
    session: &'a Session,
    repo: &'a Repository,
    id: &'a str,
    options: RestoreOptions,
    progress: OnProgress<'a>,
}

impl<'a> Restore<'a> {
    /// Only this table of the backup (default: every table it holds, with the lake's
    /// principals, roles, grants and policies, into an empty lake).
    pub fn table(mut self, table: &str) -> Result<Self> {
        self.options.table = Some(TableIdent::parse(table, DEFAULT_NAMESPACE)?);
        Ok(self)
    }

    /// Restore the table under this name (with its grants, row filters and masks).
    pub fn rename(mut self, to: &str) -> Result<Self> {
        self.options.rename = Some(TableIdent::parse(to, DEFAULT_NAMESPACE)?);
        Ok(self)
    }

    /// Restore this version of the table instead of the backed-up one (needs [`Restore::table`]).
    pub fn version(mut self, version: u64) -> Self {
        self.options.version = Some(version);
        self
    }

    /// Drop target tables of the same names first (otherwise a non-empty target is refused).
    pub fn force(mut self, yes: bool) -> Self {
        self.options.force = yes;
        self
    }

    /// Files fetched at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = n.max(1);
        self
    }

    /// All options at once (the principal is always this session's).
    pub fn options(mut self, options: RestoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Report progress as files are checked and written (operation `restore`).
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'a) -> Self {
        self.progress = Box::new(f);
        self
    }

    async fn run(self) -> Result<RestoreSummary> {
        self.session
            .backups()
            .restore_with(self.repo, self.id, self.options, &self.progress)
            .await
    }
}

impl std::fmt::Debug for Restore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restore")
            .field("id", &self.id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

into_future!(Restore => RestoreSummary);

impl Lake {
    /// Create an empty lake in folder `dir` to restore a backup into: one `hot` tier in
    /// `dir/data`, master keys from `keys` (the backed-up lake's: its data keys are wrapped under
    /// them). No namespace, no principal: the restore brings them.
    pub async fn init_for_restore(dir: impl AsRef<Path>, keys: KeySource) -> Result<Lake> {
        let dir = dir.as_ref();
        if let KeySource::Copy(p) | KeySource::File(p) = &keys {
            // a key file that cannot be read is refused before anything is created
            stratalake_crypto::KeyFileProvider::open(p)?;
        }
        let cfg_path = crate::new_lake_folder(dir)?;
        let mut config = LakeConfig::single_tier("data");
        config.keys = match keys {
            KeySource::Copy(p) => {
                let bytes = std::fs::read(&p).map_err(|e| Error::Config {
                    path: p.display().to_string(),
                    reason: format!("cannot read the key file: {e}"),
                })?;
                let dest = dir.join("master.keys");
                copy_key_file(&bytes, &dest)?;
                KeysSection {
                    provider: "file".into(),
                    file: Some("master.keys".into()),
                }
            }
            KeySource::File(p) => KeysSection {
                provider: "file".into(),
                file: Some(
                    std::path::absolute(&p)
                        .map_err(|e| Error::Config {
                            path: p.display().to_string(),
                            reason: e.to_string(),
                        })?
                        .display()
                        .to_string(),
                ),
            },
            KeySource::Env => KeysSection {
                provider: "env".into(),
                file: None,
            },
        };
        let store = Store::open(&dir.join("data").display().to_string(), &Default::default())?;
        store.check_conditional_create().await?;
        crate::write_private(&cfg_path, config.to_toml().as_bytes()).map_err(|e| Error::Config {
            path: cfg_path.display().to_string(),
            reason: e.to_string(),
        })?;
        Lake::builder(dir).open().await
    }
}

/// Put a copy of the master keys at `dest`, whole or not at all. A copy left by a restore stopped before it wrote the lake's
/// configuration is taken as it is when it holds the same keys; a different key file is never
/// overwritten.
fn copy_key_file(bytes: &[u8], dest: &Path) -> Result<()> {
    let fail = |e: std::io::Error| Error::Config {
        path: dest.display().to_string(),
        reason: format!("cannot write the key file: {e}"),
    };
    if let Ok(existing) = std::fs::read(dest) {
        if existing == bytes {
            return Ok(());
        }
        return Err(Error::Config {
            path: dest.display().to_string(),
            reason: "a different key file is already there (left by another lake?): remove it or restore into another folder"
                .into(),
        });
    }
    match crate::write_private(dest, bytes) {
        Ok(()) => Ok(()),
        // another restore of the same backup linked the same keys first
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && std::fs::read(dest).is_ok_and(|b| b == bytes) => {
            Ok(())
        }
        Err(e) => Err(fail(e)),
    }
}
