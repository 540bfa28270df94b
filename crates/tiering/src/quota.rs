//! Quotas checked at commit time: a write that would take a namespace or table over its limit
//! fails with [`stratalake_table::Error::QuotaExceeded`] and commits nothing.
//!
//! A table quota compares the table's live bytes at the version the commit lands on plus what the
//! commit adds. A namespace quota adds the latest live bytes of the namespace's other tables;
//! writers committing to different tables of one namespace at the same moment can each pass
//! and together overshoot by at most their own writes.

use std::sync::Arc;

use stratalake_table::catalog::Catalog;
use stratalake_table::{CommitGuard, PendingCommit, StorageContext, TableIdent};

use crate::config::{Quota, Scope};
use crate::units::fmt_bytes;

/// The lake's quotas, as a commit guard.
pub struct QuotaGuard {
    quotas: Vec<Quota>,
    /// A context of the same lake without this guard, to read other tables' sizes.
    ctx: Arc<StorageContext>,
}

impl std::fmt::Debug for QuotaGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaGuard")
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

impl QuotaGuard {
    /// A guard for `quotas`; `ctx` is the lake's storage context (its own guard is ignored).
    pub fn new(quotas: Vec<Quota>, ctx: &StorageContext) -> Self {
        let mut ctx = ctx.clone();
        ctx.guard = None;
        Self {
            quotas,
            ctx: Arc::new(ctx),
        }
    }

    async fn namespace_bytes(&self, ns: &str, except: &TableIdent) -> stratalake_table::Result<u64> {
        let catalog = Catalog::new(self.ctx.clone());
        let mut total = 0;
        for name in catalog.tables(ns).await? {
            let ident = TableIdent::new(ns, &name);
            if &ident == except {
                continue;
            }
            total += catalog.table(&ident).await?.snapshot().await?.bytes();
        }
        Ok(total)
    }
}

#[async_trait::async_trait]
impl CommitGuard for QuotaGuard {
    async fn check(&self, c: &PendingCommit<'_>) -> stratalake_table::Result<()> {
        for q in self.quotas.iter().filter(|q| q.scope.contains(c.table)) {
            let used = match &q.scope {
                Scope::Namespace(ns) => c.bytes_before + self.namespace_bytes(ns, c.table).await?,
                _ => c.bytes_before,
            };
            let adding = c.bytes_delta.max(0) as u64;
            if used + adding > q.max_bytes {
                tracing::info!(table = %c.table, scope = %q.scope, "write refused by quota");
                return Err(stratalake_table::Error::QuotaExceeded {
                    scope: q.scope.to_string(),
                    limit: fmt_bytes(q.max_bytes),
                    used: fmt_bytes(used),
                    adding: fmt_bytes(adding),
                });
            }
        }
        Ok(())
    }
}
