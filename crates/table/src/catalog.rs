//! The catalog: namespaces and tables, committed as a log under `_catalog/_log/` on the
//! metadata tier, with the same create-if-absent protocol as table logs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::action::{CommitInfo, Metadata};
use crate::clock::now_ms;
use crate::log;
use crate::names::validate_ident;
use crate::schema::TableSchema;
use crate::table::{StorageContext, Table, TableIdent, info};
use crate::{Error, Result};

const CATALOG_LOG: &str = "_catalog/_log";

/// One catalog change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CatalogAction {
    /// A namespace appears.
    CreateNamespace {
        /// Name.
        name: String,
    },
    /// A namespace disappears.
    DropNamespace {
        /// Name.
        name: String,
    },
    /// A table appears.
    CreateTable {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Id.
        table_id: String,
    },
    /// An access-control change.
    Access(crate::access::AccessAction),
    /// Tables restored from a backup appear (with their namespaces), and, for a whole-lake
    /// restore, the backup's access state replaces the current one. One commit publishes them all.
    Restore {
        /// Namespaces (including empty ones).
        #[serde(default)]
        namespaces: Vec<String>,
        /// The tables.
        tables: Vec<RestoredTable>,
        /// The access state to install, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<crate::access::AccessState>,
    },
    /// A table disappears.
    DropTable {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Id.
        table_id: String,
    },
}

/// A table published by a restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredTable {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Id (the backed-up table's: its files' encryption is bound to it).
    pub table_id: String,
}

/// A catalog commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatalogCommit {
    /// Version.
    pub version: u64,
    /// Who and when.
    pub info: CommitInfo,
    /// Changes.
    pub actions: Vec<CatalogAction>,
}

/// A table's catalog entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Id.
    pub table_id: String,
    /// Creation time.
    pub created_ms: i64,
}

/// The catalog at one version.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CatalogState {
    /// Version, or `None` before the first commit.
    pub version: Option<u64>,
    /// Namespaces and their tables.
    pub namespaces: BTreeMap<String, BTreeMap<String, TableEntry>>,
    /// Principals, roles and grants.
    #[serde(default)]
    pub access: crate::access::AccessState,
}

impl CatalogState {
    fn apply(&mut self, c: &CatalogCommit, path: &str) -> Result<()> {
        let expected = self.version.map_or(0, |v| v + 1);
        if c.version != expected {
            return Err(Error::CorruptLog {
                path: path.into(),
                reason: format!("holds version {}, expected {expected}", c.version),
            });
        }
        for a in &c.actions {
            match a {
                CatalogAction::CreateNamespace { name } => {
                    self.namespaces.entry(name.clone()).or_default();
                }
                CatalogAction::DropNamespace { name } => {
                    self.namespaces.remove(name);
                    self.access
                        .grants
                        .retain(|g| g.on != crate::access::Securable::Namespace { name: name.clone() });
                }
                CatalogAction::CreateTable {
                    namespace,
                    name,
                    table_id,
                } => {
                    self.namespaces.entry(namespace.clone()).or_default().insert(
                        name.clone(),
                        TableEntry {
                            table_id: table_id.clone(),
                            created_ms: c.info.timestamp_ms,
                        },
                    );
                }
                CatalogAction::DropTable { namespace, name, .. } => {
                    if let Some(ns) = self.namespaces.get_mut(namespace) {
                        ns.remove(name);
                    }
                    self.access.row_filters.remove(&format!("{namespace}.{name}"));
                    self.access.masks.remove(&format!("{namespace}.{name}"));
                    self.access.grants.retain(|g| {
                        g.on != crate::access::Securable::Table {
                            namespace: namespace.clone(),
                            name: name.clone(),
                        }
                    });
                }
                CatalogAction::Access(a) => self.access.apply(a),
                CatalogAction::Restore {
                    namespaces,
                    tables,
                    access,
                } => {
                    for n in namespaces {
                        self.namespaces.entry(n.clone()).or_default();
                    }
                    for t in tables {
                        self.namespaces.entry(t.namespace.clone()).or_default().insert(
                            t.name.clone(),
                            TableEntry {
                                table_id: t.table_id.clone(),
                                created_ms: c.info.timestamp_ms,
                            },
                        );
                    }
                    if let Some(a) = access {
                        // the restored lake is closed if the backed-up one was
                        self.access = a.clone();
                        self.access.initialized = a.initialized || !a.principals.is_empty();
                    }
                }
            }
        }
        self.version = Some(c.version);
        Ok(())
    }

    /// A table's entry.
    pub fn table(&self, ident: &TableIdent) -> Option<&TableEntry> {
        self.namespaces.get(&ident.namespace)?.get(&ident.name)
    }
}

/// The lake's catalog. Keeps the last state read and reads only newer commits.
#[derive(Debug)]
pub struct Catalog {
    ctx: Arc<StorageContext>,
    cached: Mutex<CatalogState>,
    audit: Arc<crate::audit::AuditLog>,
}

/// A catalog change as a [`crate::logstore::LogEntry`]: computed afresh from the newest state
/// before every attempt, so a change that lost a race is recomputed on top of the winner (and
/// checked again, e.g. a namespace created meanwhile); the catalog has no conflict rules.
struct CatalogChange<'a, F> {
    catalog: &'a Catalog,
    /// Kept across attempts: its token recognises our own commit.
    info: CommitInfo,
    change: F,
    /// The version of the last attempt.
    version: u64,
}

#[async_trait::async_trait]
impl<F> crate::logstore::LogEntry for CatalogChange<'_, F>
where
    F: Fn(&CatalogState) -> Result<Vec<CatalogAction>> + Send + Sync,
{
    type Output = CatalogState;

    fn log(&self) -> String {
        "_catalog".into()
    }

    async fn attempt(&mut self) -> Result<crate::logstore::Attempt> {
        let state = self.catalog.state().await?;
        self.version = state.version.map_or(0, |v| v + 1);
        let commit = CatalogCommit {
            version: self.version,
            info: self.info.clone(),
            actions: (self.change)(&state)?,
        };
        Ok(crate::logstore::Attempt {
            number: self.version,
            body: log::encode(&commit)?,
        })
    }

    fn is_ours(&self, found: &[u8]) -> Option<bool> {
        crate::logstore::carries_token(&log::commit_path(CATALOG_LOG, self.version), found, &self.info.token)
    }

    /// Committed: a failure to read the state back must not read as "not committed".
    async fn landed(&mut self, version: u64) -> Result<CatalogState> {
        self.catalog.state().await.map_err(|e| Error::CommitUnknown {
            path: self
                .catalog
                .ctx
                .tiers
                .metadata()
                .path(&log::commit_path(CATALOG_LOG, version))
                .to_string(),
            source: Box::new(e),
        })
    }

    /// Someone else's change came first: the next attempt recomputes ours from the new state.
    async fn lost(&mut self, _version: u64, _theirs: bytes::Bytes) -> Result<()> {
        Ok(())
    }
}

impl Catalog {
    /// The catalog of a lake.
    pub fn new(ctx: Arc<StorageContext>) -> Self {
        let audit = crate::audit::AuditLog::new(ctx.tiers.metadata().clone(), ctx.commit.clone());
        Self {
            ctx,
            cached: Mutex::new(CatalogState::default()),
            audit,
        }
    }

    /// The lake's audit log.
    pub fn audit(&self) -> &Arc<crate::audit::AuditLog> {
        &self.audit
    }

    /// The storage context.
    pub fn context(&self) -> &Arc<StorageContext> {
        &self.ctx
    }

    /// The current catalog state.
    pub async fn state(&self) -> Result<CatalogState> {
        let mut cached = self.cached.lock().await;
        let store = self.ctx.tiers.metadata();
        let l = log::list(store, CATALOG_LOG, cached.version).await?;
        for v in l.commits {
            let c: CatalogCommit = log::read(store, CATALOG_LOG, v).await?;
            cached.apply(&c, &log::commit_path(CATALOG_LOG, v))?;
        }
        Ok(cached.clone())
    }

    /// Apply a change computed from the current state, retrying if another writer got there first.
    async fn mutate<F>(&self, principal: &str, operation: &str, f: F) -> Result<CatalogState>
    where
        F: Fn(&CatalogState) -> Result<Vec<CatalogAction>> + Send + Sync,
    {
        let log =
            crate::logstore::LogStore::new(self.ctx.tiers.metadata().clone(), CATALOG_LOG, self.ctx.commit.clone());
        let mut change = CatalogChange {
            catalog: self,
            info: info(principal, operation, BTreeMap::new()),
            change: f,
            version: 0,
        };
        log.commit(&mut change).await
    }

    /// Apply access-control changes in one catalog commit, after checking each against the
    /// state it applies to. The caller checks that `principal` may do it.
    pub async fn change_access(&self, actions: Vec<crate::access::AccessAction>, principal: &str) -> Result<()> {
        let classes = self.ctx.keyring.classifications().clone();
        self.mutate(principal, "ACCESS", |s| {
            let mut probe = s.access.clone();
            for a in &actions {
                probe.validate(a, &classes)?;
                probe.apply(a);
            }
            // Nobody could manage access any more (and bootstrap mode never returns).
            if !s.access.lake_admins().is_empty() && probe.lake_admins().is_empty() {
                return Err(Error::PermissionDenied {
                    principal: principal.to_string(),
                    reason: "may not remove the lake's last administrator (revoking ADMIN ON LAKE, dropping or leaving its role): grant ADMIN ON LAKE to another principal first".into(),
                });
            }
            Ok(actions.iter().cloned().map(CatalogAction::Access).collect())
        })
        .await
        .map(|_| ())
    }

    /// Create a namespace. `if_not_exists` turns an existing one into success.
    pub async fn create_namespace(&self, name: &str, if_not_exists: bool, principal: &str) -> Result<()> {
        validate_ident("namespace", name)?;
        crate::names::refuse_system_schema(name)?;
        let exists = self.state().await?.namespaces.contains_key(name);
        if exists {
            return if if_not_exists {
                Ok(())
            } else {
                Err(Error::NamespaceExists(name.into()))
            };
        }
        self.mutate(principal, "CREATE NAMESPACE", |s| {
            if s.namespaces.contains_key(name) {
                return Err(Error::NamespaceExists(name.into()));
            }
            Ok(vec![CatalogAction::CreateNamespace { name: name.into() }])
        })
        .await
        .map(|_| ())
    }

    /// Drop an empty namespace.
    pub async fn drop_namespace(&self, name: &str, principal: &str) -> Result<()> {
        self.mutate(principal, "DROP NAMESPACE", |s| match s.namespaces.get(name) {
            None => Err(Error::NamespaceNotFound(name.into())),
            Some(t) if !t.is_empty() => Err(Error::NamespaceNotEmpty {
                name: name.into(),
                tables: t.len(),
            }),
            Some(_) => Ok(vec![CatalogAction::DropNamespace { name: name.into() }]),
        })
        .await
        .map(|_| ())
    }

    /// Namespaces.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        Ok(self.state().await?.namespaces.keys().cloned().collect())
    }

    /// Tables of a namespace.
    pub async fn tables(&self, namespace: &str) -> Result<Vec<String>> {
        let s = self.state().await?;
        let ns = s
            .namespaces
            .get(namespace)
            .ok_or_else(|| Error::NamespaceNotFound(namespace.into()))?;
        Ok(ns.keys().cloned().collect())
    }

    /// Create a table: a catalog entry, then its log's version 0.
    pub async fn create_table(
        &self,
        ident: &TableIdent,
        schema: TableSchema,
        properties: BTreeMap<String, String>,
        principal: &str,
    ) -> Result<Table> {
        validate_ident("namespace", &ident.namespace)?;
        validate_ident("table", &ident.name)?;
        schema.validate(&ident.to_string(), self.ctx.keyring.classifications())?;
        let table_id = uuid::Uuid::new_v4().to_string();
        self.mutate(principal, "CREATE TABLE", |s| {
            let ns = s
                .namespaces
                .get(&ident.namespace)
                .ok_or_else(|| Error::NamespaceNotFound(ident.namespace.clone()))?;
            if ns.contains_key(&ident.name) {
                return Err(Error::TableExists(ident.to_string()));
            }
            Ok(vec![CatalogAction::CreateTable {
                namespace: ident.namespace.clone(),
                name: ident.name.clone(),
                table_id: table_id.clone(),
            }])
        })
        .await?;
        let metadata = Metadata {
            table_id: table_id.clone(),
            namespace: ident.namespace.clone(),
            name: ident.name.clone(),
            schema,
            properties,
            constraints: Vec::new(),
            retired_columns: Vec::new(),
            created_ms: now_ms(),
        };
        match Table::create_log(self.ctx.clone(), ident.clone(), metadata, principal).await {
            Ok(t) => Ok(t),
            Err(e) => {
                // Undo the catalog entry so the name is free again.
                let _ = self
                    .mutate(principal, "DROP TABLE", |_| {
                        Ok(vec![CatalogAction::DropTable {
                            namespace: ident.namespace.clone(),
                            name: ident.name.clone(),
                            table_id: table_id.clone(),
                        }])
                    })
                    .await;
                Err(e)
            }
        }
    }

    /// A handle on an existing table.
    pub async fn table(&self, ident: &TableIdent) -> Result<Table> {
        let s = self.state().await?;
        if !s.namespaces.contains_key(&ident.namespace) {
            return Err(Error::NamespaceNotFound(ident.namespace.clone()));
        }
        let e = s.table(ident).ok_or_else(|| Error::TableNotFound(ident.to_string()))?;
        Ok(Table::new(self.ctx.clone(), ident.clone(), e.table_id.clone()))
    }

    /// Publish restored tables in one commit: their logs and files must already be in place.
    /// Fails if any of them exists. `access` (a whole-lake restore) replaces the access state;
    /// `table_access` (grants and policies of a table restored under a new name) is validated
    /// and applied on top. Returns the catalog version.
    pub async fn publish_restore(
        &self,
        namespaces: Vec<String>,
        tables: Vec<RestoredTable>,
        access: Option<crate::access::AccessState>,
        table_access: Vec<crate::access::AccessAction>,
        principal: &str,
    ) -> Result<u64> {
        let classes = self.ctx.keyring.classifications().clone();
        let state = self
            .mutate(principal, "RESTORE", |s| {
                for t in &tables {
                    validate_ident("namespace", &t.namespace)?;
                    validate_ident("table", &t.name)?;
                    let ident = TableIdent::new(&t.namespace, &t.name);
                    if s.table(&ident).is_some() {
                        return Err(Error::TableExists(ident.to_string()));
                    }
                }
                let mut probe = s.access.clone();
                if let Some(a) = &access {
                    probe = a.clone();
                }
                for a in &table_access {
                    probe.validate(a, &classes)?;
                    probe.apply(a);
                }
                for n in &namespaces {
                    validate_ident("namespace", n)?;
                }
                let mut actions = vec![CatalogAction::Restore {
                    namespaces: namespaces.clone(),
                    tables: tables.clone(),
                    access: access.clone(),
                }];
                actions.extend(table_access.iter().cloned().map(CatalogAction::Access));
                Ok(actions)
            })
            .await?;
        Ok(state.version.unwrap_or(0))
    }

    /// Drop a table: remove it from the catalog, then delete its log and data on every tier.
    /// Returns the number of objects deleted.
    pub async fn drop_table(&self, ident: &TableIdent, principal: &str) -> Result<usize> {
        let t = self.table(ident).await?;
        let id = t.id().to_string();
        self.mutate(principal, "DROP TABLE", |s| match s.table(ident) {
            Some(e) if e.table_id == id => Ok(vec![CatalogAction::DropTable {
                namespace: ident.namespace.clone(),
                name: ident.name.clone(),
                table_id: id.clone(),
            }]),
            _ => Err(Error::TableNotFound(ident.to_string())),
        })
        .await?;
        let mut n = 0;
        for (_, store) in self.ctx.tiers.iter() {
            n += store.delete_prefix(&format!("{}/", ident.root())).await?;
        }
        Ok(n)
    }
}
