//! Who may do what: principals, roles, grants (`principal`, `role`, `grant`, `revoke`,
//! `grants`) and the policies on what they see (`policy`).

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::args::{Cli, ident, kv};
use crate::lake::open;
use crate::output::{self, print_rows};

#[derive(Subcommand, Debug)]
pub enum PrincipalCmd {
    /// Create a principal.
    Create {
        name: String,
        /// A service identity rather than a user.
        #[arg(long)]
        service: bool,
        /// Attribute KEY=VALUE (e.g. clearance=confidential, region=north); repeatable.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Make it a member of this role; repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List principals with their roles and attributes.
    List,
    /// Set an attribute (or remove it when no value is given).
    Set {
        name: String,
        key: String,
        value: Option<String>,
    },
    /// Drop a principal with its grants and memberships.
    Drop { name: String },
    /// Set a principal's password (asked twice on the terminal, or one line from stdin with
    /// --password-stdin); its login to `stratalake serve`. Only hashes are stored.
    Passwd {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Remove the password instead (tokens keep working).
        #[arg(long, conflicts_with = "password_stdin")]
        clear: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// Create a role.
    Create {
        name: String,
        /// Highest classification level its members are cleared for.
        #[arg(long)]
        clearance: Option<String>,
    },
    /// List roles with their clearance and members.
    List,
    /// Add a principal or role to a role.
    Add { role: String, member: String },
    /// Remove a member from a role.
    Remove { role: String, member: String },
    /// Drop a role with its grants and memberships.
    Drop { name: String },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Create or replace a row filter: principals of GRANTEE see only rows matching WHERE (OR
    /// across the filters that apply to them; none applying means no rows, except for table admins).
    RowFilter {
        /// Policy name.
        name: String,
        /// The table.
        #[arg(long)]
        table: String,
        /// The principal or role it applies to.
        #[arg(long = "to")]
        grantee: String,
        /// SQL condition; may use current_principal() and current_principal_attribute('key').
        #[arg(long = "where")]
        predicate: String,
    },
    /// Drop a row filter.
    Drop {
        name: String,
        #[arg(long)]
        table: String,
    },
    /// Mask a column for a principal or role: null, redact, hash, partial:N, bucket:W, deny or expr:SQL.
    Mask {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The principal or role.
        #[arg(long = "to")]
        grantee: String,
        /// null | redact | hash | partial:N (keep the last N characters) | bucket:W (a number, or day/week/month/quarter/year) | deny | expr:SQL
        #[arg(long)]
        mask: String,
    },
    /// Remove a column mask.
    Unmask {
        table: String,
        column: String,
        #[arg(long = "from")]
        grantee: String,
    },
    /// Classification policy: every session not cleared for LEVEL sees that level's columns, in
    /// every table, through MASK (none: NULL again).
    Classification {
        /// The classification level.
        level: String,
        /// null | redact | hash | partial:N | bucket:W | deny | none
        #[arg(long)]
        mask: String,
    },
    /// List row filters, column masks and classification policies.
    List,
}

#[derive(Args, Debug)]
pub struct GrantArgs {
    /// select, insert or admin.
    pub privilege: String,
    /// lake, namespace or table.
    #[arg(long = "on", default_value = "lake")]
    pub on: String,
    /// The namespace or table (ns.table) name.
    pub name: Option<String>,
    /// The principal or role.
    #[arg(long = "to", visible_alias = "from")]
    pub grantee: String,
}

/// The commands that change or list principals, roles and grants.
pub enum AccessCmd<'a> {
    Principal(&'a PrincipalCmd),
    Role(&'a RoleCmd),
    Grant(&'a GrantArgs, bool),
    List,
}

/// `stratalake principal|role|grant|revoke|grants`.
pub async fn run(cli: &Cli, c: AccessCmd<'_>) -> Result<()> {
    let fmt = cli.format;
    use stratalake::table::access::{AccessAction as A, Grant, Privilege};
    let lake = open(cli).await?;
    let done = |what: String| output::done(fmt, what);
    match c {
        AccessCmd::Principal(PrincipalCmd::Create {
            name,
            service,
            attrs,
            roles,
        }) => {
            let attributes = attrs.iter().map(|a| kv(a)).collect::<Result<_>>()?;
            let kind = if *service { "service" } else { "user" };
            let mut actions = vec![A::CreatePrincipal {
                name: name.clone(),
                kind: kind.into(),
                attributes,
            }];
            actions.extend(roles.iter().map(|r| A::AddMember {
                role: r.clone(),
                member: name.clone(),
            }));
            lake.access().change(actions).await?;
            done(format!("principal {name} created"))?;
        }
        AccessCmd::Principal(PrincipalCmd::Set { name, key, value }) => {
            lake.access()
                .change(vec![A::SetAttribute {
                    principal: name.clone(),
                    key: key.clone(),
                    value: value.clone(),
                }])
                .await?;
            done(format!(
                "principal {name}: {key} {}",
                value.as_deref().map(|v| format!("= {v}")).unwrap_or("removed".into())
            ))?;
        }
        AccessCmd::Principal(PrincipalCmd::Drop { name }) => {
            lake.access()
                .change(vec![A::DropPrincipal { name: name.clone() }])
                .await?;
            done(format!("principal {name} dropped"))?;
        }
        AccessCmd::Principal(PrincipalCmd::Passwd {
            name,
            password_stdin,
            clear,
        }) => {
            if *clear {
                lake.access().clear_password(name).await?;
                done(format!("principal {name}: password removed"))?;
            } else {
                let password = crate::credentials::read_password(name, *password_stdin)?;
                lake.access().set_password(name, &password).await?;
                done(format!("principal {name}: password set"))?;
            }
        }
        AccessCmd::Principal(PrincipalCmd::List) => {
            let st = lake.access().state().await?;
            let rows = st
                .principals
                .iter()
                .map(|(n, p)| {
                    let attrs: Vec<String> = p.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let roles: Vec<String> = st.member_roles(n).into_iter().collect();
                    vec![n.clone(), p.kind.clone(), roles.join(", "), attrs.join(", ")]
                })
                .collect();
            print_rows(&["principal", "kind", "roles", "attributes"], rows, fmt)?;
        }
        AccessCmd::Role(RoleCmd::Create { name, clearance }) => {
            lake.access()
                .change(vec![A::CreateRole {
                    name: name.clone(),
                    clearance: clearance.clone(),
                }])
                .await?;
            done(format!("role {name} created"))?;
        }
        AccessCmd::Role(RoleCmd::Add { role, member }) => {
            lake.access()
                .change(vec![A::AddMember {
                    role: role.clone(),
                    member: member.clone(),
                }])
                .await?;
            done(format!("{member} is a member of {role}"))?;
        }
        AccessCmd::Role(RoleCmd::Remove { role, member }) => {
            lake.access()
                .change(vec![A::RemoveMember {
                    role: role.clone(),
                    member: member.clone(),
                }])
                .await?;
            done(format!("{member} is no longer a member of {role}"))?;
        }
        AccessCmd::Role(RoleCmd::Drop { name }) => {
            lake.access().change(vec![A::DropRole { name: name.clone() }]).await?;
            done(format!("role {name} dropped"))?;
        }
        AccessCmd::Role(RoleCmd::List) => {
            let st = lake.access().state().await?;
            let rows = st
                .roles
                .iter()
                .map(|(n, r)| {
                    let members: Vec<String> = r.members.iter().cloned().collect();
                    vec![n.clone(), r.clearance.clone().unwrap_or_default(), members.join(", ")]
                })
                .collect();
            print_rows(&["role", "clearance", "members"], rows, fmt)?;
        }
        AccessCmd::Grant(g, give) => {
            let grant = Grant {
                grantee: g.grantee.clone(),
                privilege: Privilege::parse(&g.privilege)?,
                on: stratalake::parse_securable(&g.on, g.name.as_deref())?,
            };
            let text = grant.describe(give);
            if give {
                lake.access().grant(grant).await?;
                done(format!("granted {text}"))?;
            } else {
                lake.access().revoke(grant).await?;
                done(format!("revoked {text}"))?;
            }
        }
        AccessCmd::List => {
            let st = lake.access().state().await?;
            let rows = st
                .grants
                .iter()
                .map(|g| vec![g.grantee.clone(), g.privilege.to_string(), g.on.to_string()])
                .collect();
            print_rows(&["grantee", "privilege", "on"], rows, fmt)?;
        }
    }
    Ok(())
}

/// `stratalake policy ...`.
pub async fn policy(cli: &Cli, c: &PolicyCmd) -> Result<()> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    match c {
        PolicyCmd::RowFilter {
            name,
            table,
            grantee,
            predicate,
        } => {
            lake.access().set_row_filter(table, name, grantee, predicate).await?;
            output::done(
                fmt,
                format!("row filter {name} on {} applies to {grantee}", ident(table)?),
            )?;
        }
        PolicyCmd::Drop { name, table } => {
            let table = ident(table)?.to_string();
            lake.access()
                .change(vec![stratalake::table::access::AccessAction::DropRowFilter {
                    table: table.clone(),
                    name: name.clone(),
                }])
                .await?;
            output::done(fmt, format!("row filter {name} on {table} dropped"))?;
        }
        PolicyCmd::Mask {
            table,
            column,
            grantee,
            mask,
        } => {
            let m = stratalake::table::access::Mask::parse(mask)?;
            lake.access().set_mask(table, column, grantee, m.clone()).await?;
            output::done(fmt, format!("{}.{column} is shown to {grantee} as {m}", ident(table)?))?;
        }
        PolicyCmd::Unmask { table, column, grantee } => {
            let table = ident(table)?.to_string();
            lake.access()
                .change(vec![stratalake::table::access::AccessAction::DropMask {
                    table: table.clone(),
                    column: column.clone(),
                    grantee: grantee.clone(),
                }])
                .await?;
            output::done(fmt, format!("mask of {table}.{column} for {grantee} dropped"))?;
        }
        PolicyCmd::Classification { level, mask } => {
            let m = match mask.to_ascii_lowercase().as_str() {
                "none" => None,
                _ => Some(stratalake::table::access::Mask::parse(mask)?),
            };
            lake.access()
                .change(vec![stratalake::table::access::AccessAction::SetLevelMask {
                    level: level.to_lowercase(),
                    mask: m.clone(),
                }])
                .await?;
            match m {
                Some(m) => output::done(
                    fmt,
                    format!("columns classified {level} are shown as {m} to sessions not cleared for it"),
                )?,
                None => output::done(
                    fmt,
                    format!("columns classified {level} read as NULL to sessions not cleared for it"),
                )?,
            }
        }
        PolicyCmd::List => {
            let st = lake.access().state().await?;
            let mut rows = Vec::new();
            for (level, m) in &st.level_masks {
                rows.push(vec![
                    "(every table)".to_string(),
                    format!("classification {level}"),
                    "sessions not cleared for it".to_string(),
                    m.to_string(),
                ]);
            }
            for (table, filters) in &st.row_filters {
                for (name, f) in filters {
                    rows.push(vec![
                        table.clone(),
                        name.clone(),
                        f.grantee.clone(),
                        f.predicate.clone(),
                    ]);
                }
            }
            for (table, cols) in &st.masks {
                for (col, by) in cols {
                    for (g, m) in by {
                        rows.push(vec![table.clone(), format!("mask {col}"), g.clone(), m.to_string()]);
                    }
                }
            }
            print_rows(&["table", "policy", "applies_to", "rule"], rows, fmt)?;
        }
    }
    Ok(())
}
