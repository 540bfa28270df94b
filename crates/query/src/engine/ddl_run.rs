//! Running Stratalake DDL (parsed by [`crate::ddl`] before DataFusion sees the statement): the
//! privilege each statement needs, then namespaces, tables and their columns and constraints,
//! principals, roles, grants, row filters and masks, each committed as the session's principal.

use stratalake_table::access::{Operation, Privilege};
use stratalake_table::{ColumnDef, TableIdent, TableSchema};

use datafusion::execution::context::{SessionConfig, SessionContext};

use super::SqlSession;
use super::audit::Touched;
use crate::ddl::Ddl;
use crate::quality::AlterTable;
use crate::{Error, Result};

impl SqlSession {
    /// Run one DDL statement, returning what it did.
    pub(super) async fn run_ddl(&self, d: Ddl, touched: &Touched) -> Result<String> {
        let p = &self.principal;
        if self.as_of.is_some() {
            return Err(Error::Sql("DDL is not allowed in a read-only --as-of session".into()));
        }
        let subject = self.subject(&self.catalog.state().await?)?;
        match &d {
            Ddl::CreateNamespace { .. }
            | Ddl::DropNamespace { .. }
            | Ddl::Grant { .. }
            | Ddl::Membership { .. }
            | Ddl::CreatePrincipal { .. }
            | Ddl::CreateRole { .. }
            | Ddl::DropPrincipalOrRole { .. }
            | Ddl::CreateRowFilter { .. }
            | Ddl::DropRowFilter { .. }
            | Ddl::DropMask { .. }
            | Ddl::CreateMask { .. }
            | Ddl::SetLevelMask { .. } => subject.check(&Operation::AdministerLake)?,
            Ddl::CreateTable { name, .. } => {
                let ident = self.resolve(name)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                subject.check(&Operation::AdministerNamespace(&ident.namespace))?
            }
            Ddl::DropTable { name, .. }
            | Ddl::Constraint(AlterTable::Add { table: name, .. })
            | Ddl::Constraint(AlterTable::Drop { table: name, .. })
            | Ddl::Constraint(AlterTable::AddColumn { table: name, .. })
            | Ddl::Constraint(AlterTable::RenameColumn { table: name, .. })
            | Ddl::Constraint(AlterTable::AlterType { table: name, .. })
            | Ddl::Constraint(AlterTable::DropColumn { table: name, .. }) => {
                let ident = self.resolve(name)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                subject.check(&Operation::AdministerTable(&ident))?
            }
        }
        match d {
            Ddl::Grant {
                privilege,
                on_kind,
                on_name,
                grantee,
                give,
            } => {
                use stratalake_table::access::{AccessAction, Grant, Securable};
                let on = match (on_kind.as_str(), on_name) {
                    ("lake", _) => Securable::Lake,
                    ("namespace", Some(n)) => {
                        stratalake_table::names::validate_ident("namespace", &n)?;
                        Securable::Namespace { name: n }
                    }
                    (_, Some(t)) => {
                        let id = self.resolve(&t.split('.').map(String::from).collect::<Vec<_>>())?;
                        touched.lock().expect("touched lock").push(id.to_string());
                        Securable::Table {
                            namespace: id.namespace,
                            name: id.name,
                        }
                    }
                    _ => return Err(Error::Sql("GRANT needs what it is on".into())),
                };
                let grant = Grant {
                    grantee,
                    privilege: Privilege::parse(&privilege)?,
                    on,
                };
                let text = grant.describe(give);
                let action = if give {
                    AccessAction::Grant(grant)
                } else {
                    AccessAction::Revoke(grant)
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("{} {text}", if give { "granted" } else { "revoked" }))
            }
            Ddl::CreatePrincipal {
                name,
                service,
                attributes,
            } => {
                use stratalake_table::access::AccessAction;
                let kind = if service { "service" } else { "user" };
                let action = AccessAction::CreatePrincipal {
                    name: name.clone(),
                    kind: kind.into(),
                    attributes: attributes.into_iter().collect(),
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("principal {name} created"))
            }
            Ddl::CreateRole { name, clearance } => {
                use stratalake_table::access::AccessAction;
                self.catalog
                    .change_access(
                        vec![AccessAction::CreateRole {
                            name: name.clone(),
                            clearance,
                        }],
                        p,
                    )
                    .await?;
                Ok(format!("role {name} created"))
            }
            Ddl::DropPrincipalOrRole { name, role } => {
                use stratalake_table::access::AccessAction;
                let a = if role {
                    AccessAction::DropRole { name: name.clone() }
                } else {
                    AccessAction::DropPrincipal { name: name.clone() }
                };
                self.catalog.change_access(vec![a], p).await?;
                Ok(format!("{} {name} dropped", if role { "role" } else { "principal" }))
            }
            Ddl::CreateRowFilter {
                name,
                table,
                grantee,
                predicate,
            } => {
                use stratalake_table::access::{AccessAction, RowFilter};
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let t = self.catalog.table(&ident).await?;
                crate::policy::check_row_filter(&t.snapshot().await?.metadata.schema.arrow_schema(), &predicate)?;
                let action = AccessAction::SetRowFilter {
                    table: ident.to_string(),
                    name: name.clone(),
                    filter: RowFilter { grantee, predicate },
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("row filter {name} on {ident} created"))
            }
            Ddl::CreateMask {
                table,
                column,
                grantee,
                mask,
            } => {
                use stratalake_table::access::{AccessAction, Mask};
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let mask = Mask::parse(&mask)?;
                let t = self.catalog.table(&ident).await?;
                crate::policy::check_mask(&t.snapshot().await?.metadata.schema.arrow_schema(), &column, &mask)?;
                let action = AccessAction::SetMask {
                    table: ident.to_string(),
                    column: column.clone(),
                    grantee,
                    mask,
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("mask on {ident}({column}) created"))
            }
            Ddl::DropRowFilter { name, table } => {
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let action = stratalake_table::access::AccessAction::DropRowFilter {
                    table: ident.to_string(),
                    name: name.clone(),
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("row filter {name} on {ident} dropped"))
            }
            Ddl::DropMask { table, column, grantee } => {
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let action = stratalake_table::access::AccessAction::DropMask {
                    table: ident.to_string(),
                    column: column.clone(),
                    grantee: grantee.clone(),
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("mask on {ident}({column}) for {grantee} dropped"))
            }
            Ddl::SetLevelMask { level, mask } => {
                use stratalake_table::access::{AccessAction, Mask};
                let m = if mask == "none" {
                    None
                } else {
                    Some(Mask::parse(&mask)?)
                };
                let text = m
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "NULL (no policy)".into());
                self.catalog
                    .change_access(
                        vec![AccessAction::SetLevelMask {
                            level: level.clone(),
                            mask: m,
                        }],
                        p,
                    )
                    .await?;
                Ok(format!(
                    "columns classified {level} are shown as {text} to sessions not cleared for it"
                ))
            }
            Ddl::Membership { role, member, give } => {
                use stratalake_table::access::AccessAction;
                let action = if give {
                    AccessAction::AddMember {
                        role: role.clone(),
                        member: member.clone(),
                    }
                } else {
                    AccessAction::RemoveMember {
                        role: role.clone(),
                        member: member.clone(),
                    }
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(if give {
                    format!("{member} is a member of {role}")
                } else {
                    format!("{member} is no longer a member of {role}")
                })
            }
            Ddl::CreateNamespace { name, if_not_exists } => {
                self.catalog.create_namespace(&name, if_not_exists, p).await?;
                Ok(format!("namespace {name} created"))
            }
            Ddl::DropNamespace { name, if_exists } => match self.catalog.drop_namespace(&name, p).await {
                Err(stratalake_table::Error::NamespaceNotFound(_)) if if_exists => {
                    Ok(format!("namespace {name} does not exist"))
                }
                r => r.map(|_| format!("namespace {name} dropped")).map_err(Into::into),
            },
            Ddl::Constraint(AlterTable::Add { table, constraint }) => {
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let what = format!("{} {}", constraint.name(), constraint.describe());
                let v = crate::quality::add_constraint(&t, constraint, p).await?;
                Ok(format!("constraint {what} added to {ident} (version {v})"))
            }
            Ddl::Constraint(AlterTable::AddColumn { table, column, default }) => {
                use stratalake_table::evolve::SchemaChange;
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let ty = self
                    .resolve_types(std::slice::from_ref(&column.sql_type))
                    .await?
                    .remove(0);
                let level = match column.classification {
                    Some(l) => l,
                    None => t.context().keyring.classifications().default.clone(),
                };
                let mut c = ColumnDef::new(&column.name, ty, level);
                c.nullable = !column.not_null;
                c.default = default;
                let v = stratalake_table::evolve::evolve(&t, SchemaChange::AddColumn(c), p).await?;
                Ok(format!("column {} added to {ident} (version {v})", column.name))
            }
            Ddl::Constraint(AlterTable::RenameColumn { table, from, to }) => {
                let ident = self.resolve(&table)?;
                self.refuse_if_policies_use(&ident, &from).await?;
                let t = self.catalog.table(&ident).await?;
                let change = stratalake_table::evolve::SchemaChange::RenameColumn {
                    from: from.clone(),
                    to: to.clone(),
                };
                let v = stratalake_table::evolve::evolve(&t, change, p).await?;
                Ok(format!("column {from} of {ident} renamed to {to} (version {v})"))
            }
            Ddl::Constraint(AlterTable::AlterType {
                table,
                column,
                sql_type,
            }) => {
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let to = self.resolve_types(std::slice::from_ref(&sql_type)).await?.remove(0);
                let change = stratalake_table::evolve::SchemaChange::WidenColumn {
                    column: column.clone(),
                    to: to.clone(),
                };
                let v = stratalake_table::evolve::evolve(&t, change, p).await?;
                Ok(format!("column {column} of {ident} is now {to} (version {v})"))
            }
            Ddl::Constraint(AlterTable::DropColumn { table, column }) => {
                let ident = self.resolve(&table)?;
                self.refuse_if_policies_use(&ident, &column).await?;
                let t = self.catalog.table(&ident).await?;
                let change = stratalake_table::evolve::SchemaChange::DropColumn { column: column.clone() };
                let v = stratalake_table::evolve::evolve(&t, change, p).await?;
                Ok(format!("column {column} dropped from {ident} (version {v})"))
            }
            Ddl::Constraint(AlterTable::Drop { table, name }) => {
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let v = crate::quality::drop_constraint(&t, &name, p).await?;
                Ok(format!("constraint {name} dropped from {ident} (version {v})"))
            }
            Ddl::DropTable { name, if_exists } => {
                let ident = self.resolve(&name)?;
                match self.catalog.drop_table(&ident, p).await {
                    Err(stratalake_table::Error::TableNotFound(_)) if if_exists => {
                        Ok(format!("table {ident} does not exist"))
                    }
                    r => r
                        .map(|n| format!("table {ident} dropped ({n} objects deleted)"))
                        .map_err(Into::into),
                }
            }
            Ddl::CreateTable {
                name,
                if_not_exists,
                columns,
                partition_by,
            } => {
                let ident = self.resolve(&name)?;
                let types = self
                    .resolve_types(&columns.iter().map(|c| c.sql_type.clone()).collect::<Vec<_>>())
                    .await?;
                let default_level = self.catalog.context().keyring.classifications().default.clone();
                let schema = TableSchema {
                    columns: columns
                        .into_iter()
                        .zip(types)
                        .map(|(c, t)| ColumnDef {
                            name: c.name,
                            data_type: t,
                            nullable: !c.not_null,
                            classification: c.classification.unwrap_or_else(|| default_level.clone()),
                            aliases: Vec::new(),
                            default: None,
                        })
                        .collect(),
                    partition_by,
                };
                match self.catalog.create_table(&ident, schema, Default::default(), p).await {
                    Err(stratalake_table::Error::TableExists(_)) if if_not_exists => {
                        Ok(format!("table {ident} already exists"))
                    }
                    r => r.map(|_| format!("table {ident} created")).map_err(Into::into),
                }
            }
        }
    }

    /// A column that a mask or row filter names cannot be renamed or dropped: the policy would
    /// stop applying (a mask) or stop planning (a filter).
    async fn refuse_if_policies_use(&self, ident: &TableIdent, column: &str) -> Result<()> {
        let state = self.catalog.state().await?;
        let key = ident.to_string();
        if let Some(cols) = state.access.masks.get(&key)
            && cols.keys().any(|c| c.eq_ignore_ascii_case(column))
        {
            return Err(Error::Sql(format!(
                "column {column:?} of {ident} has a mask: remove the mask first (and create it again afterwards)"
            )));
        }
        if let Some(filters) = state.access.row_filters.get(&key)
            && let Some((name, _)) = filters.iter().find(|(_, f)| {
                f.predicate
                    .to_lowercase()
                    .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                    .any(|w| w == column.to_lowercase())
            })
        {
            return Err(Error::Sql(format!(
                "row filter {name:?} on {ident} uses column {column:?}: drop it first (and create it again afterwards)"
            )));
        }
        Ok(())
    }

    /// Turn SQL type names into Arrow types exactly as DataFusion's SQL planner does.
    async fn resolve_types(&self, sql_types: &[String]) -> Result<Vec<arrow::datatypes::DataType>> {
        // Tables store plain Utf8/Binary; DataFusion's view types are a query-time choice.
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false),
        );
        let mut out = Vec::with_capacity(sql_types.len());
        for t in sql_types {
            let df = ctx
                .sql(&format!("SELECT CAST(NULL AS {t}) AS c"))
                .await
                .map_err(|e| Error::Sql(format!("unknown column type {t}: {e}")))?;
            out.push(df.schema().field(0).data_type().clone());
        }
        Ok(out)
    }
}
