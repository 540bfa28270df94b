//! Master key management through the facade: rotation, retirement and crypto-shredding.
//! Lake administrators only; every operation is audited.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use stratalake_crypto::KeyId;
use stratalake_table::access::AccessAction;
use stratalake_table::action::{Action, AddFile};
use stratalake_table::{Table, TableIdent};

use crate::{Error, Result, Session};
use stratalake_table::access::Operation;

/// One master key version and what uses it.
#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    /// Level and version.
    pub id: KeyId,
    /// The version new data is wrapped under.
    pub current: bool,
    /// Destroyed (retired or shredded).
    pub destroyed: bool,
    /// Live files (latest versions) with a data key wrapped under it.
    pub live_files: u64,
    /// Files of any version in the tables' histories with a data key wrapped under it.
    pub history_files: u64,
}

/// What a rotation did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RotateReport {
    /// New key versions created.
    pub new_keys: Vec<KeyId>,
    /// Levels whose provider cannot create versions itself (the current version was used).
    pub notes: Vec<String>,
    /// Per table: name, new version, files re-keyed.
    pub tables: Vec<(String, u64, usize)>,
}

fn key_ids(add: &AddFile) -> impl Iterator<Item = &KeyId> {
    std::iter::once(&add.keys.footer.key).chain(add.keys.groups.iter().map(|g| &g.key.key))
}

impl Session {
    /// The lake's master keys as this session's principal: status, rotation, retirement and
    /// crypto-shredding of a classification level. Lake administrators only; audited.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (id INT CLASSIFICATION public, note VARCHAR CLASSIFICATION secret); \
    ///           INSERT INTO t VALUES (1, 'x')").await?;
    /// let secret = lake.keys().status().await?.into_iter().find(|k| k.id.classification == "secret").unwrap();
    /// assert!(secret.current && secret.live_files == 1);
    /// // shredding a level destroys its keys: its columns can never be read again
    /// lake.keys().shred("secret").await?;
    /// assert!(lake.sql("SELECT note FROM t").await.is_err());
    /// assert_eq!(lake.sql("SELECT id FROM t").await?[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub fn keys(&self) -> Keys<'_> {
        Keys { session: self }
    }
}

/// Master keys seen through a [`Session`] ([`Session::keys`]).
#[derive(Clone, Copy, Debug)]
pub struct Keys<'a> {
    session: &'a Session,
}

impl<'a> Keys<'a> {
    /// Every master key version of every level, with the live and historical files using it.
    /// Lake administrators only.
    pub async fn status(&self) -> Result<Vec<KeyStatus>> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let mut live: BTreeMap<KeyId, u64> = BTreeMap::new();
        let mut history: BTreeMap<KeyId, BTreeSet<(String, String)>> = BTreeMap::new();
        for t in self.session.all_tables().await? {
            let snap = t.snapshot().await?;
            for add in snap.files.values() {
                for id in key_ids(add) {
                    *live.entry(id.clone()).or_default() += 1;
                }
            }
            for v in 0..=snap.version {
                for a in t.read_commit(v).await?.actions {
                    let (path, ids): (String, Vec<KeyId>) = match &a {
                        Action::Add(f) => (f.path.clone(), key_ids(f).cloned().collect()),
                        Action::Rekey(r) => (
                            r.path.clone(),
                            std::iter::once(r.keys.footer.key.clone())
                                .chain(r.keys.groups.iter().map(|g| g.key.key.clone()))
                                .collect(),
                        ),
                        _ => continue,
                    };
                    for id in ids {
                        history
                            .entry(id)
                            .or_default()
                            .insert((t.id().to_string(), path.clone()));
                    }
                }
            }
        }
        let provider = self.session.lake.catalog.context().keyring.provider();
        let mut out = Vec::new();
        for level in &self.session.lake.config.classifications.levels {
            let current = provider.current_id(level).await.ok();
            for (id, destroyed) in provider.versions(level).await? {
                out.push(KeyStatus {
                    current: current.as_ref() == Some(&id),
                    destroyed,
                    live_files: live.get(&id).copied().unwrap_or(0),
                    history_files: history.get(&id).map_or(0, |s| s.len() as u64),
                    id,
                });
            }
        }
        Ok(out)
    }

    /// Rotate the master key of `level` (every level not shredded when `None`): create a new
    /// version, then re-wrap the data keys of every live file under it, one log-only commit per
    /// table; no data file is read or rewritten. Older versions stay until retired
    /// ([`Keys::retire`]), since time travel to earlier versions and older backups use them.
    /// Lake administrators only.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT CLASSIFICATION confidential); INSERT INTO t VALUES (1)").await?;
    /// let r = lake.keys().rotate(Some("confidential")).await?;
    /// assert_eq!(r.new_keys[0].to_string(), "confidential/v2");
    /// assert_eq!(r.tables[0].2, 1); // one file re-keyed
    /// assert_eq!(lake.sql("SELECT x FROM t").await?[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn rotate(&self, level: Option<&str>) -> Result<RotateReport> {
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            let state = self.session.lake.catalog.state().await?;
            let levels: BTreeSet<String> = match level {
                Some(l) => {
                    self.session.lake.config.classifications.rank(l)?;
                    if state.access.shredded.contains(l) {
                        let provider = self.session.lake.catalog.context().keyring.provider();
                        let newest = provider.versions(l).await?.into_iter().map(|(id, _)| id).max();
                        return Err(Error::Crypto(stratalake_crypto::Error::KeyDestroyed {
                            id: newest.unwrap_or_else(|| KeyId::new(l, 1)),
                        }));
                    }
                    [l.to_string()].into()
                }
                None => state.access.readable_levels(&self.session.lake.config.classifications),
            };
            let provider = self.session.lake.catalog.context().keyring.provider();
            let mut report = RotateReport::default();
            for l in &levels {
                match provider.rotate(l).await {
                    Ok(id) => report.new_keys.push(id),
                    Err(e @ stratalake_crypto::Error::Unsupported { .. }) => report.notes.push(e.to_string()),
                    Err(e) => return Err(e.into()),
                }
            }
            for t in self.session.all_tables().await? {
                if let Some((v, n)) = t.rekey(Some(&levels), &self.session.principal).await? {
                    tracing::info!(table = %t.ident(), version = v, files = n, "re-keyed");
                    report.tables.push((t.ident().to_string(), v, n));
                }
            }
            Ok(report)
        }
        .await;
        let tables = r
            .as_ref()
            .map(|r| r.tables.iter().map(|t| t.0.clone()).collect())
            .unwrap_or_default();
        self.session
            .record(
                "key",
                format!("KEY ROTATE {}", level.unwrap_or("ALL")),
                tables,
                None,
                &r,
            )
            .await?;
        r
    }

    /// Destroy one old master key version. Refused while it is current or any live file uses it
    /// (run [`Keys::rotate`] first), and while table histories use it unless
    /// `drop_history`: then time travel to those versions, and restores of backups taken before
    /// the rotation, fail naming this key. Retiring a version of the lowest level first opens
    /// every backup repository the lake has used whose key slots would all be gone (adding a
    /// slot under the current version), and is refused, naming it, for one it cannot open
    /// (detach a repository deleted on purpose with [`Backups::detach`](crate::Backups::detach)).
    /// Lake administrators only.
    pub async fn retire(&self, id: &KeyId, drop_history: bool) -> Result<()> {
        let r = async {
            let status = self.status().await?;
            let s = status.iter().find(|s| &s.id == id).ok_or_else(|| {
                Error::Crypto(stratalake_crypto::Error::KeyNotFound {
                    id: id.clone(),
                    provider: self.session.lake.catalog.context().keyring.provider().describe(),
                })
            })?;
            let refuse = |reason: String| {
                Err(Error::KeyInUse {
                    id: id.to_string(),
                    reason,
                })
            };
            if s.current {
                return refuse("is the current version: rotate first (`stratalake key rotate`)".into());
            }
            if s.live_files > 0 {
                return refuse(format!(
                    "{} live file(s) still use it: run `stratalake key rotate --classification {}` (a writer that started before the rotation may have added some)",
                    s.live_files, id.classification
                ));
            }
            if s.history_files > 0 && !drop_history {
                return refuse(format!(
                    "{} file(s) of older table versions use it: time travel to them and restores of backups taken before the rotation need it; pass --drop-history to give that up",
                    s.history_files
                ));
            }
            // A backup repository's key is wrapped under the lowest level's master keys: one
            // whose every slot would be gone could not be opened any more, even for backups
            // taken after the rotation. Each repository the lake has used is opened (which adds
            // a slot under the current version); one that cannot be opened stops the retirement.
            let keyring = &self.session.lake.catalog.context().keyring;
            if id.classification == keyring.classifications().lowest() {
                let meta = self.session.lake.catalog.context().tiers.metadata();
                for (name, _) in meta.list(crate::backups::REPOSITORIES).await? {
                    let Some(raw) = meta.get_opt(&name).await? else { continue };
                    let noted: crate::backups::NotedRepository = serde_json::from_slice(&raw).map_err(|e| {
                        Error::KeyInUse {
                            id: id.to_string(),
                            reason: format!("the lake's note {name} on a backup repository cannot be read ({e}); fix or remove it, then retire"),
                        }
                    })?;
                    if self.session.slot_survives(&noted.slots, id).await {
                        continue;
                    }
                    let slots = match self.session.reslot_repository(&noted.url).await {
                        Ok(slots) => slots,
                        Err(e) => {
                            return refuse(format!(
                                "backup repository {} ({}) holds its key only under it and could not be opened to add a slot under the current version ({e}): open it once (`stratalake backup list --repo {} [--repo-option ...]`), or, if it is gone for good, `stratalake backup detach --repo {}`; then retire",
                                noted.url, noted.id, noted.url, noted.url
                            ));
                        }
                    };
                    if !self.session.slot_survives(&slots, id).await {
                        return refuse(format!(
                            "backup repository {} ({}) has no key slot that opens without it; open it with a lake holding the current version, then retire",
                            noted.url, noted.id
                        ));
                    }
                }
            }
            keyring
                .provider()
                .destroy(&id.classification, Some(id.version))
                .await?;
            Ok(())
        }
        .await;
        self.session
            .record("key", format!("KEY RETIRE {id}"), vec![], None, &r)
            .await?;
        r
    }

    /// Crypto-shred a classification: record in the catalog that nobody is cleared for it any
    /// more (its columns read as NULL, or its classification mask, for every session from the
    /// next statement on), then destroy every version of its master key, so those columns are
    /// unreadable everywhere, backups included. The lowest level (which protects every file's
    /// footer) cannot be shredded. Irreversible. Lake administrators only.
    pub async fn shred(&self, level: &str) -> Result<Vec<KeyId>> {
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            self.session
                .lake
                .catalog
                .change_access(
                    vec![AccessAction::ShredLevel {
                        level: level.to_string(),
                    }],
                    &self.session.principal,
                )
                .await?;
            let destroyed = self
                .session
                .lake
                .catalog
                .context()
                .keyring
                .provider()
                .destroy(level, None)
                .await?;
            // nothing of the level's values stays in this process's planner statistics
            stratalake_query::forget_cached_statistics();
            Ok(destroyed)
        }
        .await;
        self.session
            .record("key", format!("KEY SHRED {level}"), vec![], None, &r)
            .await?;
        r
    }
}

impl Session {
    async fn all_tables(&self) -> Result<Vec<Table>> {
        let state = self.lake.catalog.state().await?;
        let mut out = Vec::new();
        for (ns, tables) in &state.namespaces {
            for t in tables.keys() {
                out.push(self.lake.catalog.table(&TableIdent::new(ns, t)).await?);
            }
        }
        Ok(out)
    }

    /// Open the repository at `url` with default options, which adds a key slot under the
    /// current version of the lowest level; its slots afterwards.
    async fn reslot_repository(&self, url: &str) -> Result<Vec<KeyId>> {
        let repo = self.backups().open(url, &Default::default()).await?;
        Ok(repo.key_slots().await?)
    }

    /// Whether a key slot other than `retiring` is sealed under a master key version the
    /// provider still holds (asked by id, so a KMS that never releases key bytes answers too).
    async fn slot_survives(&self, slots: &[KeyId], retiring: &KeyId) -> bool {
        let provider = self.lake.catalog.context().keyring.provider();
        for k in slots.iter().filter(|k| *k != retiring) {
            let held = provider.versions(&k.classification).await.unwrap_or_default();
            if held.iter().any(|(id, destroyed)| id == k && !destroyed) {
                return true;
            }
        }
        false
    }
}
