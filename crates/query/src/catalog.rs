//! DataFusion catalog and schema providers over the lake's catalog: one schema per namespace.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::Result as DFResult;
use datafusion::error::DataFusionError;
use stratalake_table::access::Subject;
use stratalake_table::catalog::{Catalog, CatalogState};
use stratalake_table::{Access, TableIdent};

use crate::error::external;
use crate::provider::LakeTableProvider;
use stratalake_table::access::Operation;

/// Which version of each table a session reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// A version number (applies to every table read).
    Version(u64),
    /// A point in time, milliseconds since the epoch.
    Timestamp(i64),
}

/// Shared by the providers of one statement.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub catalog: Arc<Catalog>,
    /// Levels this statement may decrypt: the subject's clearance (and the engine's own limit).
    pub access: Access,
    pub subject: Subject,
    pub as_of: Option<AsOf>,
    /// Tables this statement resolved, for the audit record.
    pub(crate) touched: crate::engine::Touched,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("principal", &self.subject.principal)
            .field("as_of", &self.as_of)
            .finish()
    }
}

impl Ctx {
    pub(crate) async fn provider(
        &self,
        ident: &TableIdent,
        as_of: Option<AsOf>,
    ) -> stratalake_table::Result<LakeTableProvider> {
        self.touched.lock().expect("touched lock").push(ident.to_string());
        // Seeing a table at all needs a privilege on it; reading needs SELECT (checked by scan).
        self.subject.check(&Operation::KnowTable(ident))?;
        let table = self.catalog.table(ident).await?;
        let (snap, current) = match as_of {
            None => (table.snapshot().await?, None),
            Some(AsOf::Version(v)) => (table.snapshot_at(v).await?, Some(table.snapshot().await?)),
            Some(AsOf::Timestamp(ts)) => (table.snapshot_as_of(ts).await?, Some(table.snapshot().await?)),
        };
        let writable = current.is_none();
        Ok(LakeTableProvider::new(
            table,
            snap,
            self.access.clone(),
            self.subject.clone(),
            writable,
            current.as_ref().map(|c| &c.metadata.schema),
        )
        .recording_policies(self.touched.policies.clone()))
    }
}

/// The lake as a DataFusion catalog, frozen at one catalog state for one statement.
#[derive(Debug)]
pub struct LakeCatalogProvider {
    ctx: Ctx,
    state: CatalogState,
    extra: BTreeMap<String, Arc<dyn SchemaProvider>>,
}

impl LakeCatalogProvider {
    pub(crate) fn new(ctx: Ctx, state: CatalogState) -> Self {
        Self {
            ctx,
            state,
            extra: BTreeMap::new(),
        }
    }

    pub(crate) fn with_schema(mut self, name: &str, schema: Arc<dyn SchemaProvider>) -> Self {
        self.extra.insert(name.to_string(), schema);
        self
    }
}

impl CatalogProvider for LakeCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        self.state.namespaces.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.extra.get(name) {
            return Some(s.clone());
        }
        let tables: Vec<String> = self.state.namespaces.get(name)?.keys().cloned().collect();
        // Listings (SHOW TABLES, information_schema) name only the tables the subject holds a
        // privilege on; naming another table directly gets a clear "permission denied".
        let listed: Vec<String> = tables
            .iter()
            .filter(|t| {
                self.ctx
                    .subject
                    .may(&Operation::KnowTable(&stratalake_table::TableIdent::new(
                        name,
                        t.as_str(),
                    )))
            })
            .cloned()
            .collect();
        Some(Arc::new(LakeSchemaProvider {
            ctx: self.ctx.clone(),
            namespace: name.to_string(),
            tables,
            listed,
        }))
    }
}

/// One namespace.
#[derive(Debug)]
pub struct LakeSchemaProvider {
    ctx: Ctx,
    namespace: String,
    /// Every table of the namespace (resolvable by name).
    tables: Vec<String>,
    /// The tables listings show to this subject.
    listed: Vec<String>,
}

#[async_trait]
impl SchemaProvider for LakeSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.listed.clone()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if !self.tables.iter().any(|t| t == name) {
            return Ok(None);
        }
        let ident = TableIdent::new(&self.namespace, name);
        let p = self.ctx.provider(&ident, self.ctx.as_of).await.map_err(external)?;
        Ok(Some(Arc::new(p)))
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot register {name:?} in namespace {:?}: create lake tables with CREATE TABLE; views are not supported yet",
            self.namespace
        )))
    }

    fn deregister_table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "use DROP TABLE {}.{name}",
            self.namespace
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}
