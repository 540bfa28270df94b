//! Access management through the facade: who the lake's own operations act as, and changes to
//! principals, roles and grants (lake administrators only).

use std::collections::BTreeMap;

use stratalake_table::access::{ADMIN_ROLE, AccessAction, AccessState, Grant, Privilege, Securable, Subject};

use crate::{DEFAULT_NAMESPACE, Result, Session, TableIdent};
use stratalake_table::access::Operation;

impl Session {
    /// What this handle's principal may do, resolved against the catalog now.
    pub async fn subject(&self) -> Result<Subject> {
        let state = self.lake.catalog.state().await?;
        Ok(state
            .access
            .resolve(&self.principal, self.lake.catalog.context().keyring.classifications())?)
    }

    /// Drop an empty namespace (lake administrators only).
    pub async fn drop_namespace(&self, name: &str) -> Result<()> {
        self.subject().await?.check(&Operation::AdministerLake)?;
        Ok(self.lake.catalog.drop_namespace(name, &self.principal).await?)
    }
}

impl Session {
    /// Principals, roles, grants, row filters, masks and classifications as this session's
    /// principal: each change is checked against its grants and audited.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// use stratalake::table::access::{Grant, Privilege, Securable};
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE permits (id INT, region VARCHAR); \
    ///           INSERT INTO permits VALUES (1, 'north'), (2, 'south')").await?;
    /// let access = lake.access();
    /// access.bootstrap_admin().await?; // "admin" becomes the lake's first administrator
    /// access.create_principal("ana", "user", &[]).await?;
    /// access.grant(Grant {
    ///     grantee: "ana".into(),
    ///     privilege: Privilege::Select,
    ///     on: stratalake::parse_securable("table", Some("permits"))?,
    /// }).await?;
    /// access.set_row_filter("permits", "north_only", "ana", "region = 'north'").await?;
    /// let rows = lake.session("ana").sql("SELECT id FROM permits").await?;
    /// assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    /// // someone without ADMIN cannot change access
    /// assert!(lake.session("ana").access().revoke(Grant {
    ///     grantee: "ana".into(), privilege: Privilege::Select, on: Securable::Lake,
    /// }).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn access(&self) -> Access<'_> {
        Access { session: self }
    }
}

/// Access control seen through a [`Session`] ([`Session::access`]).
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    pub(crate) session: &'a Session,
}

impl<'a> Access<'a> {
    /// Principals, roles and grants (lake administrators only).
    pub async fn state(&self) -> Result<AccessState> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        Ok(self.session.lake.catalog.state().await?.access)
    }

    /// Apply access changes in one catalog commit (lake administrators only).
    pub async fn change(&self, actions: Vec<AccessAction>) -> Result<()> {
        let statement = format!("{actions:?}");
        let r = async {
            self.session.subject().await?.check(&Operation::AdministerLake)?;
            Ok(self
                .session
                .lake
                .catalog
                .change_access(actions, &self.session.principal)
                .await?)
        }
        .await;
        self.session.record("access", statement, vec![], None, &r).await?;
        r
    }

    /// Make this handle's principal the first administrator: it gets the `lake_admins` role, which
    /// holds ADMIN on the lake. Ends bootstrap mode. Does nothing if the principal is already
    /// a lake administrator.
    pub async fn bootstrap_admin(&self) -> Result<()> {
        let state = self.session.lake.catalog.state().await?.access;
        let me = &self.session.principal;
        let mut actions = Vec::new();
        if !state.principals.contains_key(me) {
            actions.push(AccessAction::CreatePrincipal {
                name: me.clone(),
                kind: "user".into(),
                attributes: BTreeMap::new(),
            });
        }
        if !state.roles.contains_key(ADMIN_ROLE) {
            actions.push(AccessAction::CreateRole {
                name: ADMIN_ROLE.into(),
                clearance: None,
            });
            actions.push(AccessAction::Grant(Grant {
                grantee: ADMIN_ROLE.into(),
                privilege: Privilege::Admin,
                on: Securable::Lake,
            }));
        }
        if !state.roles.get(ADMIN_ROLE).is_some_and(|r| r.members.contains(me)) {
            actions.push(AccessAction::AddMember {
                role: ADMIN_ROLE.into(),
                member: me.clone(),
            });
        }
        if actions.is_empty() {
            return Ok(());
        }
        self.change(actions).await
    }

    /// Create a principal (`kind` is `user` or `service`) with attributes such as `clearance`.
    pub async fn create_principal(&self, name: &str, kind: &str, attributes: &[(&str, &str)]) -> Result<()> {
        let attributes = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.change(vec![AccessAction::CreatePrincipal {
            name: name.into(),
            kind: kind.into(),
            attributes,
        }])
        .await
    }

    /// Give a grant.
    pub async fn grant(&self, grant: Grant) -> Result<()> {
        self.change(vec![AccessAction::Grant(grant)]).await
    }

    /// Take a grant back; it stops applying at the next statement of every session.
    pub async fn revoke(&self, grant: Grant) -> Result<()> {
        self.change(vec![AccessAction::Revoke(grant)]).await
    }

    /// Create or replace a row filter on `table` for `grantee` (lake administrators only). The
    /// predicate is SQL over the table's columns and may use `current_principal()` and
    /// `current_principal_attribute('key')`; it is checked against the table now.
    pub async fn set_row_filter(&self, table: &str, name: &str, grantee: &str, predicate: &str) -> Result<()> {
        let ident = TableIdent::parse(table, DEFAULT_NAMESPACE)?;
        let t = self.session.lake.catalog.table(&ident).await?;
        let schema = t.snapshot().await?.metadata.schema.arrow_schema();
        stratalake_query::check_row_filter(&schema, predicate)?;
        self.change(vec![AccessAction::SetRowFilter {
            table: ident.to_string(),
            name: name.into(),
            filter: stratalake_table::access::RowFilter {
                grantee: grantee.into(),
                predicate: predicate.into(),
            },
        }])
        .await
    }

    /// Mask `column` of `table` for `grantee` (lake administrators only).
    pub async fn set_mask(
        &self,
        table: &str,
        column: &str,
        grantee: &str,
        mask: stratalake_table::access::Mask,
    ) -> Result<()> {
        let ident = TableIdent::parse(table, DEFAULT_NAMESPACE)?;
        let t = self.session.lake.catalog.table(&ident).await?;
        let schema = t.snapshot().await?.metadata.schema.arrow_schema();
        stratalake_query::check_mask(&schema, column, &mask)?;
        self.change(vec![AccessAction::SetMask {
            table: ident.to_string(),
            column: column.into(),
            grantee: grantee.into(),
            mask,
        }])
        .await
    }

    /// Set a column's classification (administrators of the table only).
    pub async fn classify(&self, table: &str, column: &str, level: &str) -> Result<u64> {
        let ident = TableIdent::parse(table, DEFAULT_NAMESPACE)?;
        self.session
            .subject()
            .await?
            .check(&Operation::AdministerTable(&ident))?;
        let t = self.session.lake.catalog.table(&ident).await?;
        Ok(t.classify(column, level, &self.session.principal).await?)
    }
}

/// Parse `lake`, `namespace NAME`/`NAME`, or `table NS.NAME` into a securable.
pub fn parse_securable(kind: &str, name: Option<&str>) -> Result<Securable> {
    let need = |what: &str| {
        crate::Error::Table(stratalake_table::Error::InvalidName {
            kind: "securable",
            name: kind.into(),
            reason: format!("{what} needs a name"),
        })
    };
    match kind.to_ascii_lowercase().as_str() {
        "lake" => Ok(Securable::Lake),
        "namespace" | "schema" => {
            let n = name.ok_or_else(|| need("namespace"))?;
            stratalake_table::names::validate_ident("namespace", n)?;
            Ok(Securable::Namespace { name: n.into() })
        }
        "table" => {
            let id = TableIdent::parse(name.ok_or_else(|| need("table"))?, DEFAULT_NAMESPACE)?;
            Ok(Securable::Table {
                namespace: id.namespace,
                name: id.name,
            })
        }
        other => Err(crate::Error::Table(stratalake_table::Error::InvalidName {
            kind: "securable",
            name: other.into(),
            reason: "use lake, namespace or table".into(),
        })),
    }
}

impl Session {
    /// Record a facade operation (ingest, access change) with its outcome.
    pub(crate) async fn record<T>(
        &self,
        kind: &str,
        statement: String,
        tables: Vec<String>,
        rows: Option<u64>,
        r: &Result<T>,
    ) -> Result<()> {
        let failure = r.as_ref().err().map(|e| {
            let denied = matches!(e, crate::Error::Table(stratalake_table::Error::PermissionDenied { .. }));
            (e.to_string(), denied)
        });
        let ran = failure.is_none();
        let written = self
            .lake
            .catalog
            .audit()
            .record(&self.principal, kind, &statement, tables, rows, failure)
            .await;
        match written {
            Ok(_) => Ok(()),
            // what ran is committed: the caller must hear that its record is missing
            Err(e) if ran => Err(e.after_success().into()),
            // the operation failed on its own; its error says more than the audit log's (which
            // usually failed for the same reason, an unavailable store)
            Err(e) => {
                tracing::warn!(kind, error = %e, "the audit record of a failed operation could not be written");
                Ok(())
            }
        }
    }
}

impl Session {
    /// The lake's audit log as this session's principal (lake administrators only).
    pub fn audit(&self) -> Audit<'_> {
        Audit { session: self }
    }
}

/// The audit log seen through a [`Session`] ([`Session::audit`]).
#[derive(Clone, Copy, Debug)]
pub struct Audit<'a> {
    session: &'a Session,
}

impl<'a> Audit<'a> {
    /// Every audit record, oldest first (lake administrators only).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); SELECT * FROM t").await?;
    /// let log = lake.audit().records().await?;
    /// assert_eq!(log.len(), 2);
    /// assert_eq!(log[1].event.tables, vec!["default.t"]);
    /// assert!(lake.audit().verify().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn records(&self) -> Result<Vec<stratalake_table::audit::Record>> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        Ok(self.session.lake.catalog.audit().records().await?)
    }

    /// Check the audit log's hash chain; one line per problem (lake administrators only).
    pub async fn verify(&self) -> Result<Vec<String>> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        Ok(self.session.lake.catalog.audit().verify().await?)
    }
}
