//! Principals, roles, grants and clearances, kept in the catalog.
//!
//! * A **principal** is a user or a service, with free attributes (`department`, `region`, ...).
//!   The attribute `clearance` names the highest classification level the principal is cleared
//!   for.
//! * A **role** groups principals and other roles (nested), and may carry a clearance too.
//! * A **grant** gives a principal or role a privilege (`select`, `insert`, `admin`) on the lake,
//!   a namespace, or a table. `admin` implies `select` and `insert`; a grant on the lake or a
//!   namespace covers every table in it, present and future.
//! * A session's **clearance** is the highest level among its own attribute and its roles'
//!   clearances; without any, only the lowest level. Lake administrators are cleared for every
//!   level. Columns above the clearance are returned as NULL and their keys are never unwrapped.
//!
//! A lake without any principal is in *bootstrap mode*: every session acts as an administrator
//! (as `Lake::in_memory` lakes do until a principal is created). `stratalake init` creates the
//! first administrator, which ends bootstrap mode: from then on an unknown principal is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::schema::Classifications;
use crate::{Error, Result, TableIdent};

/// A privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// Read rows.
    Select,
    /// Add rows (INSERT, ingest) and change them (UPDATE, DELETE).
    Insert,
    /// Everything, including DDL and access management.
    Admin,
}

impl Privilege {
    /// Parse `select`, `insert` or `admin`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "select" | "read" => Ok(Privilege::Select),
            "insert" | "write" => Ok(Privilege::Insert),
            "admin" | "all" => Ok(Privilege::Admin),
            other => Err(Error::InvalidName {
                kind: "privilege",
                name: other.to_string(),
                reason: "use select, insert or admin".into(),
            }),
        }
    }

    fn implies(self, wanted: Privilege) -> bool {
        self == Privilege::Admin || self == wanted
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Admin => "ADMIN",
        })
    }
}

/// What a grant applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Securable {
    /// The whole lake.
    Lake,
    /// A namespace and every table in it.
    Namespace {
        /// Namespace.
        name: String,
    },
    /// One table.
    Table {
        /// Namespace.
        namespace: String,
        /// Table.
        name: String,
    },
}

impl Securable {
    fn covers(&self, namespace: Option<&str>, table: Option<&str>) -> bool {
        match self {
            Securable::Lake => true,
            Securable::Namespace { name } => namespace == Some(name.as_str()),
            Securable::Table { namespace: ns, name } => namespace == Some(ns.as_str()) && table == Some(name.as_str()),
        }
    }
}

impl fmt::Display for Securable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Securable::Lake => f.write_str("LAKE"),
            Securable::Namespace { name } => write!(f, "NAMESPACE {name}"),
            Securable::Table { namespace, name } => write!(f, "TABLE {namespace}.{name}"),
        }
    }
}

/// A grant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// Principal or role receiving it.
    pub grantee: String,
    /// Privilege.
    pub privilege: Privilege,
    /// Where.
    pub on: Securable,
}

impl Grant {
    /// `SELECT ON TABLE ns.t TO g` (or `FROM g` when taken back).
    pub fn describe(&self, give: bool) -> String {
        format!(
            "{} ON {} {} {}",
            self.privilege,
            self.on,
            if give { "TO" } else { "FROM" },
            self.grantee
        )
    }
}

/// A principal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalEntry {
    /// `user` or `service`.
    pub kind: String,
    /// Attributes (`clearance`, `region`, ...).
    pub attributes: BTreeMap<String, String>,
    /// How it proves who it is: a password's hashes and API tokens' hashes (never a secret).
    #[serde(default, skip_serializing_if = "Credentials::is_empty")]
    pub credentials: Credentials,
}

/// What a principal logs in with, as stored: hashes only
/// ([`stratalake_crypto::password`]). `Debug` shows what is set, never a hash.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Its password, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordEntry>,
    /// Its API tokens by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, TokenEntry>,
}

impl Credentials {
    /// Neither a password nor a token.
    pub fn is_empty(&self) -> bool {
        self.password.is_none() && self.tokens.is_empty()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("password", &self.password.is_some())
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A password as stored: its argon2id hash (for logins that send the password) and its
/// SCRAM-SHA-256 verifier (for PostgreSQL logins, which never send it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordEntry {
    /// argon2id PHC string.
    pub argon2: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub scram: String,
    /// When it was set (ms since the epoch).
    pub set_ms: i64,
}

impl std::fmt::Debug for PasswordEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordEntry")
            .field("set_ms", &self.set_ms)
            .finish_non_exhaustive()
    }
}

/// An API token as stored: the SHA-256 of the token, when it was made and when it expires.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// SHA-256 of the whole token, hex.
    pub hash: String,
    /// What it is for (free text shown in listings).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// When it was made (ms since the epoch).
    pub created_ms: i64,
    /// When it stops working (ms since the epoch); `None`: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

impl TokenEntry {
    /// Whether it still works at `now_ms`.
    pub fn valid_at(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("label", &self.label)
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// A role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleEntry {
    /// Highest level members are cleared for through this role.
    pub clearance: Option<String>,
    /// Direct members: principals and roles.
    pub members: BTreeSet<String>,
}

/// Access-control state of the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessState {
    /// Principals by name.
    pub principals: BTreeMap<String, PrincipalEntry>,
    /// Roles by name.
    pub roles: BTreeMap<String, RoleEntry>,
    /// Grants.
    pub grants: BTreeSet<Grant>,
    /// Row filters by table (`ns.table`) and policy name.
    #[serde(default)]
    pub row_filters: BTreeMap<String, BTreeMap<String, RowFilter>>,
    /// Column masks by table (`ns.table`), column, and grantee.
    #[serde(default)]
    pub masks: BTreeMap<String, BTreeMap<String, BTreeMap<String, Mask>>>,
    /// Lake-wide classification policies: a column of this level is shown with this mask to
    /// every session not cleared for the level (instead of NULL), in every table.
    #[serde(default)]
    pub level_masks: BTreeMap<String, Mask>,
    /// Classification levels whose master key was destroyed (crypto-shredded): no session is
    /// cleared for them any more, so their columns read as NULL or their level's mask.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub shredded: BTreeSet<String>,
    /// A principal was created once: bootstrap mode (everything allowed) is over for good, even
    /// if every principal is dropped later (which then locks everyone out: fail closed).
    #[serde(default)]
    pub initialized: bool,
}

/// How a masked column is shown to the principals a mask applies to. Masks are computed inside
/// the scan from the raw value; every operator above (WHERE, JOIN, GROUP BY, ...) sees only the
/// masked value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mask {
    /// NULL.
    Null,
    /// `****` for text, NULL for other types.
    Redact,
    /// A keyed hash (HMAC-SHA-256 under a key derived from the lake's master key, first 16 bytes
    /// in hex): equal values give equal pseudonyms across tables, so masked columns still join
    /// and group, and nobody without the key can reverse or recompute them. Text columns only.
    Hash,
    /// Text with all but the last `keep_last` characters replaced by `*`.
    Partial {
        /// Characters kept at the end.
        keep_last: u32,
    },
    /// Any SQL expression over the row (e.g. `date_trunc('year', born)`, `round(income, -3)`),
    /// cast to the column's type; may use `current_principal()` and
    /// `current_principal_attribute('key')`.
    Expr {
        /// The expression.
        sql: String,
    },
    /// Buckets: a number rounded down to a multiple of `width` (`1000`: 52 340 → 52 000), a date
    /// or timestamp truncated to the `width` unit (`day`, `week`, `month`, `quarter`, `year`);
    /// NULL for other types.
    Bucket {
        /// A positive number, or a calendar unit.
        width: String,
    },
    /// The column may not be read at all: a query that selects it or filters, groups, joins or
    /// orders on it is refused (its key is never unwrapped). `count(*)` and the other columns
    /// still work.
    Deny,
}

/// Calendar units a date bucket may use.
pub const BUCKET_UNITS: [&str; 5] = ["day", "week", "month", "quarter", "year"];

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Null => f.write_str("null"),
            Mask::Redact => f.write_str("redact"),
            Mask::Hash => f.write_str("hash"),
            Mask::Partial { keep_last } => write!(f, "partial({keep_last})"),
            Mask::Expr { sql } => write!(f, "expr({sql})"),
            Mask::Bucket { width } => write!(f, "bucket({width})"),
            Mask::Deny => f.write_str("deny"),
        }
    }
}

impl Mask {
    /// The kind of mask, without its parameters.
    pub fn kind(&self) -> &'static str {
        match self {
            Mask::Null => "null",
            Mask::Redact => "redact",
            Mask::Hash => "hash",
            Mask::Partial { .. } => "partial",
            Mask::Expr { .. } => "expr",
            Mask::Bucket { .. } => "bucket",
            Mask::Deny => "deny",
        }
    }

    /// Parse `null`, `redact`, `hash`, `partial:N`, `bucket:W`, `deny` or `expr:SQL`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidName {
            kind: "mask",
            name: s.to_string(),
            reason: "use null, redact, hash, partial:N (keep the last N characters), bucket:W (a number, or day, week, month, quarter, year), deny or expr:SQL".into(),
        }
        };
        match s.split_once(':') {
            None if s.eq_ignore_ascii_case("null") => Ok(Mask::Null),
            None if s.eq_ignore_ascii_case("deny") => Ok(Mask::Deny),
            Some((k, w)) if k.eq_ignore_ascii_case("bucket") => {
                let w = w.trim().to_lowercase();
                let number = w.parse::<f64>().is_ok_and(|n| n > 0.0 && n.is_finite());
                if !number && !BUCKET_UNITS.contains(&w.as_str()) {
                    return Err(bad());
                }
                Ok(Mask::Bucket { width: w })
            }
            None if s.eq_ignore_ascii_case("redact") => Ok(Mask::Redact),
            None if s.eq_ignore_ascii_case("hash") => Ok(Mask::Hash),
            Some((k, n)) if k.eq_ignore_ascii_case("partial") => Ok(Mask::Partial {
                keep_last: n.trim().parse().map_err(|_| bad())?,
            }),
            Some((k, e)) if k.eq_ignore_ascii_case("expr") && !e.trim().is_empty() => {
                Ok(Mask::Expr { sql: e.trim().into() })
            }
            _ => Err(bad()),
        }
    }
}

/// A row filter: the rows of a table that principals of `grantee` may see.
///
/// On a table with row filters, a session sees the rows matching the OR of the predicates of the
/// filters that apply to it (its principal or one of its roles); a session to which none
/// applies sees no rows, unless it holds `admin` on the table. Predicates are SQL over the
/// table's columns and may use `current_principal()` and `current_principal_attribute('key')`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFilter {
    /// The principal or role it applies to.
    pub grantee: String,
    /// SQL predicate.
    pub predicate: String,
}

/// An access-control change (a catalog action).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "access", rename_all = "snake_case")]
pub enum AccessAction {
    /// A principal appears.
    CreatePrincipal {
        /// Name.
        name: String,
        /// `user` or `service`.
        kind: String,
        /// Attributes.
        attributes: BTreeMap<String, String>,
    },
    /// A principal disappears (with its grants and memberships).
    DropPrincipal {
        /// Name.
        name: String,
    },
    /// Set (or with `None` remove) an attribute.
    SetAttribute {
        /// Principal.
        principal: String,
        /// Key.
        key: String,
        /// Value.
        value: Option<String>,
    },
    /// A role appears.
    CreateRole {
        /// Name.
        name: String,
        /// Clearance it gives.
        clearance: Option<String>,
    },
    /// A role disappears (with its grants and memberships).
    DropRole {
        /// Name.
        name: String,
    },
    /// A principal or role becomes a member of a role.
    AddMember {
        /// Role.
        role: String,
        /// Member.
        member: String,
    },
    /// A membership ends.
    RemoveMember {
        /// Role.
        role: String,
        /// Member.
        member: String,
    },
    /// A grant is given.
    Grant(Grant),
    /// A grant is taken back.
    Revoke(Grant),
    /// A row filter is created (or replaced).
    SetRowFilter {
        /// `ns.table`.
        table: String,
        /// Policy name.
        name: String,
        /// The filter.
        filter: RowFilter,
    },
    /// A column mask for a grantee is set (or replaced).
    SetMask {
        /// `ns.table`.
        table: String,
        /// Column.
        column: String,
        /// Principal or role.
        grantee: String,
        /// The mask.
        mask: Mask,
    },
    /// A column mask is dropped.
    DropMask {
        /// `ns.table`.
        table: String,
        /// Column.
        column: String,
        /// Principal or role.
        grantee: String,
    },
    /// A classification policy is set (`None` removes it).
    SetLevelMask {
        /// Classification level.
        level: String,
        /// Mask for sessions not cleared for it.
        mask: Option<Mask>,
    },
    /// A classification's master key was destroyed: nobody is cleared for it any more.
    ShredLevel {
        /// Classification level.
        level: String,
    },
    /// A row filter is dropped.
    DropRowFilter {
        /// `ns.table`.
        table: String,
        /// Policy name.
        name: String,
    },
    /// A principal's password is set, replacing the old one (`None` removes it).
    SetPassword {
        /// Principal.
        principal: String,
        /// The new password's hashes.
        password: Option<PasswordEntry>,
    },
    /// An API token is made for a principal.
    CreateToken {
        /// Principal.
        principal: String,
        /// Token id (the part of the token shown in listings).
        id: String,
        /// Its hash and lifetime.
        token: TokenEntry,
    },
    /// An API token stops working for good.
    RevokeToken {
        /// Principal.
        principal: String,
        /// Token id.
        id: String,
    },
}

/// The name every lake's administrators role has.
pub const ADMIN_ROLE: &str = "lake_admins";

impl AccessState {
    /// The lake's levels that have not been shredded (whose columns can still be decrypted).
    pub fn readable_levels(&self, classes: &Classifications) -> BTreeSet<String> {
        classes
            .levels
            .iter()
            .filter(|l| !self.shredded.contains(*l))
            .cloned()
            .collect()
    }

    /// Whether the lake is still in bootstrap mode (no principal exists).
    pub fn bootstrap(&self) -> bool {
        !self.initialized && self.principals.is_empty()
    }

    /// Refuse to drop a grantee that row filters name: dropping the filters with it would lift
    /// filtering from a table whose only filters they were (its other readers would see every
    /// row), and keeping them would leave filters for nobody.
    fn refuse_if_filtered(&self, kind: &'static str, name: &str) -> Result<()> {
        let named: Vec<String> = self
            .row_filters
            .iter()
            .flat_map(|(t, fs)| {
                fs.iter()
                    .filter(|(_, f)| f.grantee == name)
                    .map(move |(n, _)| format!("{n} on {t}"))
            })
            .collect();
        if named.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason: format!(
                "row filters apply to it ({}); drop or reassign them first",
                named.join(", ")
            ),
        })
    }

    /// Principals holding `admin` on the lake (directly or through roles).
    pub fn lake_admins(&self) -> Vec<&String> {
        self.principals
            .keys()
            .filter(|p| {
                let mut names = self.member_roles(p);
                names.insert((*p).clone());
                self.grants
                    .iter()
                    .any(|g| names.contains(&g.grantee) && g.privilege == Privilege::Admin && g.on == Securable::Lake)
            })
            .collect()
    }

    /// The principal `name` (not a role), or an error naming it.
    pub fn principal_entry(&self, name: &str) -> Result<&PrincipalEntry> {
        self.principals.get(name).ok_or_else(|| Error::InvalidName {
            kind: "principal",
            name: name.to_string(),
            reason: if self.roles.contains_key(name) {
                "is a role: roles do not log in".into()
            } else {
                "no such principal".into()
            },
        })
    }

    /// Who owns the API token with this id.
    pub fn token_owner(&self, id: &str) -> Option<(&str, &TokenEntry)> {
        self.principals
            .iter()
            .find_map(|(n, p)| p.credentials.tokens.get(id).map(|t| (n.as_str(), t)))
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.principals.contains_key(name) || self.roles.contains_key(name)
    }

    /// Check an action against the current state (names exist, no duplicates, levels known).
    pub fn validate(&self, a: &AccessAction, classes: &Classifications) -> Result<()> {
        let taken = |n: &str| -> Result<()> {
            crate::names::validate_ident("principal or role", n)?;
            if self.exists(n) {
                return Err(Error::InvalidName {
                    kind: "principal or role",
                    name: n.into(),
                    reason: "already exists".into(),
                });
            }
            Ok(())
        };
        let known = |n: &str| -> Result<()> {
            if self.exists(n) {
                Ok(())
            } else {
                Err(Error::InvalidName {
                    kind: "principal or role",
                    name: n.into(),
                    reason: "does not exist".into(),
                })
            }
        };
        let role = |n: &str| -> Result<()> {
            if self.roles.contains_key(n) {
                Ok(())
            } else {
                Err(Error::InvalidName {
                    kind: "role",
                    name: n.into(),
                    reason: "does not exist".into(),
                })
            }
        };
        match a {
            AccessAction::CreatePrincipal { name, kind, attributes } => {
                taken(name)?;
                if kind != "user" && kind != "service" {
                    return Err(Error::InvalidName {
                        kind: "principal kind",
                        name: kind.clone(),
                        reason: "use user or service".into(),
                    });
                }
                if let Some(c) = attributes.get("clearance") {
                    classes.rank(c)?;
                }
            }
            AccessAction::DropPrincipal { name } => {
                if !self.principals.contains_key(name) {
                    return Err(Error::InvalidName {
                        kind: "principal",
                        name: name.clone(),
                        reason: "does not exist".into(),
                    });
                }
                self.refuse_if_filtered("principal", name)?;
                if self.lake_admins() == [name] {
                    return Err(Error::InvalidName {
                        kind: "principal",
                        name: name.clone(),
                        reason: "is the lake's last administrator; grant ADMIN ON LAKE to another principal first"
                            .into(),
                    });
                }
            }
            AccessAction::SetAttribute { principal, key, value } => {
                if !self.principals.contains_key(principal) {
                    return Err(Error::InvalidName {
                        kind: "principal",
                        name: principal.clone(),
                        reason: "does not exist".into(),
                    });
                }
                if let (Some(v), "clearance") = (value, key.as_str()) {
                    classes.rank(v)?;
                }
            }
            AccessAction::CreateRole { name, clearance } => {
                taken(name)?;
                if let Some(c) = clearance {
                    classes.rank(c)?;
                }
            }
            AccessAction::DropRole { name } => {
                role(name)?;
                self.refuse_if_filtered("role", name)?;
            }
            AccessAction::AddMember { role: r, member } => {
                role(r)?;
                known(member)?;
                // a role may not end up inside itself: `member` must not already hold `r`
                if r == member || (self.roles.contains_key(member) && self.contains(member, r)) {
                    return Err(Error::InvalidName {
                        kind: "role",
                        name: r.clone(),
                        reason: format!("{member} would contain itself"),
                    });
                }
            }
            AccessAction::RemoveMember { role: r, .. } => role(r)?,
            AccessAction::Grant(g) | AccessAction::Revoke(g) => known(&g.grantee)?,
            AccessAction::SetRowFilter { name, filter, .. } => {
                crate::names::validate_ident("policy", name)?;
                known(&filter.grantee)?;
                if filter.predicate.trim().is_empty() {
                    return Err(Error::InvalidName {
                        kind: "row filter",
                        name: name.clone(),
                        reason: "empty predicate".into(),
                    });
                }
            }
            AccessAction::SetMask { grantee, .. } => known(grantee)?,
            AccessAction::ShredLevel { level } => {
                if classes.rank(level)? == 0 {
                    return Err(Error::InvalidName {
                        kind: "classification",
                        name: level.clone(),
                        reason: "the lowest level's key protects every file's footer; it cannot be shredded".into(),
                    });
                }
            }
            AccessAction::SetLevelMask { level, mask } => {
                classes.rank(level)?;
                if matches!(mask, Some(Mask::Expr { .. })) {
                    return Err(Error::InvalidName {
                        kind: "classification mask",
                        name: level.clone(),
                        reason: "use null, redact, hash or partial:N; an expression names columns of one table".into(),
                    });
                }
            }
            AccessAction::DropMask { table, column, grantee } => {
                if !self
                    .masks
                    .get(table)
                    .and_then(|c| c.get(column))
                    .is_some_and(|g| g.contains_key(grantee))
                {
                    return Err(Error::InvalidName {
                        kind: "mask",
                        name: format!("{table}.{column}"),
                        reason: format!("no mask for {grantee}"),
                    });
                }
            }
            AccessAction::SetPassword { principal, .. } => self.principal_entry(principal).map(|_| ())?,
            AccessAction::CreateToken { principal, id, .. } => {
                self.principal_entry(principal)?;
                if self.token_owner(id).is_some() {
                    return Err(Error::InvalidName {
                        kind: "token",
                        name: id.clone(),
                        reason: "already exists".into(),
                    });
                }
            }
            AccessAction::RevokeToken { principal, id } => {
                if !self.principal_entry(principal)?.credentials.tokens.contains_key(id) {
                    return Err(Error::InvalidName {
                        kind: "token",
                        name: id.clone(),
                        reason: format!("{principal} has no such token (see `stratalake token list {principal}`)"),
                    });
                }
            }
            AccessAction::DropRowFilter { table, name } => {
                if !self.row_filters.get(table).is_some_and(|f| f.contains_key(name)) {
                    return Err(Error::InvalidName {
                        kind: "row filter",
                        name: name.clone(),
                        reason: format!("no such filter on {table}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether role `outer` contains `inner` (directly or through nested roles).
    fn contains(&self, outer: &str, inner: &str) -> bool {
        let mut stack = vec![outer.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(r) = stack.pop() {
            if !seen.insert(r.clone()) {
                continue;
            }
            if let Some(e) = self.roles.get(&r) {
                if e.members.contains(inner) {
                    return true;
                }
                stack.extend(e.members.iter().filter(|m| self.roles.contains_key(*m)).cloned());
            }
        }
        false
    }

    pub(crate) fn apply(&mut self, a: &AccessAction) {
        match a {
            AccessAction::CreatePrincipal { name, kind, attributes } => {
                self.initialized = true;
                self.principals.insert(
                    name.clone(),
                    PrincipalEntry {
                        kind: kind.clone(),
                        attributes: attributes.clone(),
                        credentials: Credentials::default(),
                    },
                );
            }
            AccessAction::DropPrincipal { name } | AccessAction::DropRole { name } => {
                self.principals.remove(name);
                self.roles.remove(name);
                for r in self.roles.values_mut() {
                    r.members.remove(name);
                }
                self.grants.retain(|g| &g.grantee != name);
                // (validation refuses while row filters name it; kept for old logs)
                for f in self.row_filters.values_mut() {
                    f.retain(|_, rf| &rf.grantee != name);
                }
                self.row_filters.retain(|_, f| !f.is_empty());
                for cols in self.masks.values_mut() {
                    for g in cols.values_mut() {
                        g.remove(name);
                    }
                    cols.retain(|_, g| !g.is_empty());
                }
                self.masks.retain(|_, c| !c.is_empty());
            }
            AccessAction::SetAttribute { principal, key, value } => {
                if let Some(p) = self.principals.get_mut(principal) {
                    match value {
                        Some(v) => p.attributes.insert(key.clone(), v.clone()),
                        None => p.attributes.remove(key),
                    };
                }
            }
            AccessAction::CreateRole { name, clearance } => {
                self.roles.insert(
                    name.clone(),
                    RoleEntry {
                        clearance: clearance.clone(),
                        members: BTreeSet::new(),
                    },
                );
            }
            AccessAction::AddMember { role, member } => {
                if let Some(r) = self.roles.get_mut(role) {
                    r.members.insert(member.clone());
                }
            }
            AccessAction::RemoveMember { role, member } => {
                if let Some(r) = self.roles.get_mut(role) {
                    r.members.remove(member);
                }
            }
            AccessAction::Grant(g) => {
                self.grants.insert(g.clone());
            }
            AccessAction::Revoke(g) => {
                self.grants.remove(g);
            }
            AccessAction::SetRowFilter { table, name, filter } => {
                self.row_filters
                    .entry(table.clone())
                    .or_default()
                    .insert(name.clone(), filter.clone());
            }
            AccessAction::ShredLevel { level } => {
                self.shredded.insert(level.clone());
            }
            AccessAction::SetLevelMask { level, mask } => match mask {
                Some(m) => {
                    self.level_masks.insert(level.clone(), m.clone());
                }
                None => {
                    self.level_masks.remove(level);
                }
            },
            AccessAction::SetMask {
                table,
                column,
                grantee,
                mask,
            } => {
                self.masks
                    .entry(table.clone())
                    .or_default()
                    .entry(column.clone())
                    .or_default()
                    .insert(grantee.clone(), mask.clone());
            }
            AccessAction::DropMask { table, column, grantee } => {
                if let Some(cols) = self.masks.get_mut(table) {
                    if let Some(g) = cols.get_mut(column) {
                        g.remove(grantee);
                        if g.is_empty() {
                            cols.remove(column);
                        }
                    }
                    if cols.is_empty() {
                        self.masks.remove(table);
                    }
                }
            }
            AccessAction::SetPassword { principal, password } => {
                if let Some(p) = self.principals.get_mut(principal) {
                    p.credentials.password = password.clone();
                }
            }
            AccessAction::CreateToken { principal, id, token } => {
                if let Some(p) = self.principals.get_mut(principal) {
                    p.credentials.tokens.insert(id.clone(), token.clone());
                }
            }
            AccessAction::RevokeToken { principal, id } => {
                if let Some(p) = self.principals.get_mut(principal) {
                    p.credentials.tokens.remove(id);
                }
            }
            AccessAction::DropRowFilter { table, name } => {
                if let Some(f) = self.row_filters.get_mut(table) {
                    f.remove(name);
                    if f.is_empty() {
                        self.row_filters.remove(table);
                    }
                }
            }
        }
    }

    /// Every role `name` belongs to, directly or through nesting.
    pub fn member_roles(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut frontier = vec![name.to_string()];
        while let Some(n) = frontier.pop() {
            for (r, e) in &self.roles {
                if e.members.contains(&n) && out.insert(r.clone()) {
                    frontier.push(r.clone());
                }
            }
        }
        out
    }

    /// What a session acting as `principal` may do. Fails for an unknown principal unless the
    /// lake is in bootstrap mode.
    pub fn resolve(&self, principal: &str, classes: &Classifications) -> Result<Subject> {
        let mut subject = self.resolve_unshredded(principal, classes)?;
        subject.cleared.retain(|l| !self.shredded.contains(l));
        subject.shredded = self.shredded.clone();
        Ok(subject)
    }

    fn resolve_unshredded(&self, principal: &str, classes: &Classifications) -> Result<Subject> {
        if self.bootstrap() {
            return Ok(Subject::superuser(principal, classes));
        }
        let p = self.principals.get(principal).ok_or_else(|| Error::PermissionDenied {
            principal: principal.to_string(),
            reason: "is not a principal of this lake".into(),
        })?;
        let roles = self.member_roles(principal);
        let mut names: BTreeSet<String> = roles.clone();
        names.insert(principal.to_string());
        let grants: Vec<Grant> = self
            .grants
            .iter()
            .filter(|g| names.contains(&g.grantee))
            .cloned()
            .collect();
        let lake_admin = grants
            .iter()
            .any(|g| g.privilege == Privilege::Admin && g.on == Securable::Lake);
        let mut rank = 0usize;
        if let Some(c) = p.attributes.get("clearance") {
            rank = rank.max(classes.rank(c).unwrap_or(0));
        }
        for r in &roles {
            if let Some(c) = self.roles.get(r).and_then(|e| e.clearance.as_ref()) {
                rank = rank.max(classes.rank(c).unwrap_or(0));
            }
        }
        if lake_admin {
            rank = classes.levels.len() - 1;
        }
        let mut subject = Subject {
            principal: principal.to_string(),
            roles,
            attributes: p.attributes.clone(),
            grants,
            cleared: classes.levels[..=rank].iter().cloned().collect(),
            superuser: false,
            row_filters: BTreeMap::new(),
            row_filter_names: BTreeMap::new(),
            masks: BTreeMap::new(),
            level_masks: self.level_masks.clone(),
            shredded: BTreeSet::new(),
        };
        for (table, cols) in &self.masks {
            let (ns, t) = table.split_once('.').unwrap_or(("", table));
            if subject.allows(Privilege::Admin, Some(ns), Some(t)) {
                continue; // table administrators see raw values
            }
            for (col, by_grantee) in cols {
                // the principal's own mask wins; else the first role's (by name)
                let m = by_grantee
                    .get(principal)
                    .or_else(|| by_grantee.iter().find(|(g, _)| names.contains(*g)).map(|(_, m)| m));
                if let Some(m) = m {
                    subject
                        .masks
                        .entry(table.clone())
                        .or_default()
                        .insert(col.clone(), m.clone());
                }
            }
        }
        for (table, filters) in &self.row_filters {
            let (ns, t) = table.split_once('.').unwrap_or(("", table));
            if subject.allows(Privilege::Admin, Some(ns), Some(t)) {
                continue; // table administrators see every row
            }
            let applying: Vec<(&String, &RowFilter)> =
                filters.iter().filter(|(_, f)| names.contains(&f.grantee)).collect();
            subject
                .row_filter_names
                .insert(table.clone(), applying.iter().map(|(n, _)| (*n).clone()).collect());
            subject.row_filters.insert(
                table.clone(),
                applying.iter().map(|(_, f)| f.predicate.clone()).collect(),
            );
        }
        Ok(subject)
    }
}

/// A resolved principal: who, with which roles, grants and clearance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The principal.
    pub principal: String,
    /// Its roles (transitively).
    pub roles: BTreeSet<String>,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Grants to it or its roles.
    pub grants: Vec<Grant>,
    /// Levels it is cleared for.
    pub cleared: BTreeSet<String>,
    /// Bootstrap mode: everything allowed.
    pub superuser: bool,
    /// Row filters by table (`ns.table`): `None` = unrestricted; `Some(predicates)` = the rows
    /// matching any of them (no predicate: no rows).
    pub row_filters: BTreeMap<String, Vec<String>>,
    /// The names of those row filters (same order), for the audit log.
    pub row_filter_names: BTreeMap<String, Vec<String>>,
    /// Masks that apply, by table (`ns.table`) and column.
    pub masks: BTreeMap<String, BTreeMap<String, Mask>>,
    /// Classification policies: how columns of levels above the clearance are shown.
    pub level_masks: BTreeMap<String, Mask>,
    /// Levels whose master keys were destroyed: their columns read as NULL under a NULL or
    /// REDACT mask, and any other query touching them is refused.
    pub shredded: BTreeSet<String>,
}

/// What a principal asks to do: the input of the one permission check, [`Subject::check`].
/// Every layer (SQL, the facade, the CLI, the coming server) names the operation and asks;
/// none decides from grants itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Read a table's rows: SELECT, the read side of MERGE, quality reports, exports (SELECT).
    ReadRows(&'a TableIdent),
    /// Change a table's rows: INSERT, ingest, DELETE, UPDATE, the write side of MERGE (INSERT).
    WriteRows(&'a TableIdent),
    /// Know that a table exists and see its columns: listings, descriptions, naming it in a
    /// query (any privilege on it).
    KnowTable(&'a TableIdent),
    /// Administer a table: drop it, alter it, its constraints, optimize, vacuum, its history, an
    /// unchecked handle on it (ADMIN on the table, its namespace or the lake).
    AdministerTable(&'a TableIdent),
    /// Administer a namespace: create tables in it (ADMIN on the namespace or the lake).
    AdministerNamespace(&'a str),
    /// Administer the lake: namespaces, principals, roles, grants, row filters, masks,
    /// classification policies, keys, backups, tiers and the audit log (ADMIN on the lake).
    AdministerLake,
    /// Set a principal's password or make, list and revoke its API tokens: the principal itself,
    /// or ADMIN on the lake.
    ManageCredentials(&'a str),
}

impl Operation<'_> {
    /// The privilege it needs and where: (privilege, namespace, table).
    fn needs(&self) -> (Privilege, Option<&str>, Option<&str>) {
        match *self {
            Operation::ReadRows(t) | Operation::KnowTable(t) => (Privilege::Select, Some(&t.namespace), Some(&t.name)),
            Operation::WriteRows(t) => (Privilege::Insert, Some(&t.namespace), Some(&t.name)),
            Operation::AdministerTable(t) => (Privilege::Admin, Some(&t.namespace), Some(&t.name)),
            Operation::AdministerNamespace(ns) => (Privilege::Admin, Some(ns), None),
            Operation::AdministerLake | Operation::ManageCredentials(_) => (Privilege::Admin, None, None),
        }
    }
}

impl Subject {
    /// Whether the subject may do `op` ([`Subject::check`] without the error).
    pub fn may(&self, op: &Operation<'_>) -> bool {
        match *op {
            Operation::KnowTable(t) => self.table_sight(&t.namespace, &t.name).known,
            Operation::ManageCredentials(p) if p == self.principal => true,
            _ => {
                let (privilege, ns, table) = op.needs();
                self.allows(privilege, ns, table)
            }
        }
    }

    /// The permission check: `Ok` if the subject may do `op`, else
    /// [`Error::PermissionDenied`] naming the privilege it lacks and where.
    ///
    /// ```
    /// use stratalake_table::TableIdent;
    /// use stratalake_table::access::{Operation, Subject};
    /// use stratalake_table::schema::Classifications;
    /// let t = TableIdent::new("gov", "permits");
    /// let mut ana = Subject::superuser("ana", &Classifications::default());
    /// assert!(ana.check(&Operation::AdministerTable(&t)).is_ok()); // bootstrap mode
    /// ana.superuser = false; // no grants
    /// let e = ana.check(&Operation::ReadRows(&t)).unwrap_err();
    /// assert_eq!(e.to_string(), "permission denied: ana has no SELECT privilege on table gov.permits");
    /// ```
    pub fn check(&self, op: &Operation<'_>) -> Result<()> {
        if self.may(op) {
            return Ok(());
        }
        let (privilege, ns, table) = op.needs();
        self.require(privilege, ns, table)
    }

    /// Everything allowed (bootstrap mode).
    pub fn superuser(principal: &str, classes: &Classifications) -> Self {
        Self {
            principal: principal.to_string(),
            roles: BTreeSet::new(),
            attributes: BTreeMap::new(),
            grants: Vec::new(),
            cleared: classes.levels.iter().cloned().collect(),
            superuser: true,
            row_filters: BTreeMap::new(),
            row_filter_names: BTreeMap::new(),
            masks: BTreeMap::new(),
            level_masks: BTreeMap::new(),
            shredded: BTreeSet::new(),
        }
    }

    /// Whether the subject holds `privilege` on the table (or, with `table = None`, on the
    /// namespace; with both `None`, on the lake). Callers outside this crate ask
    /// [`Subject::may`] / [`Subject::check`] with an [`Operation`].
    pub(crate) fn allows(&self, privilege: Privilege, namespace: Option<&str>, table: Option<&str>) -> bool {
        self.superuser
            || self
                .grants
                .iter()
                .any(|g| g.privilege.implies(privilege) && g.on.covers(namespace, table))
    }

    /// Fail with a clear error unless [`Subject::allows`].
    fn require(&self, privilege: Privilege, namespace: Option<&str>, table: Option<&str>) -> Result<()> {
        if self.allows(privilege, namespace, table) {
            return Ok(());
        }
        let on = match (namespace, table) {
            (Some(ns), Some(t)) => format!("table {ns}.{t}"),
            (Some(ns), None) => format!("namespace {ns}"),
            _ => "the lake".to_string(),
        };
        Err(Error::PermissionDenied {
            principal: self.principal.clone(),
            reason: format!("has no {privilege} privilege on {on}"),
        })
    }

    /// What this principal may know of a table's metadata: the one rule for listings,
    /// descriptions and history (the CLI and the coming server only ask it).
    ///
    /// * `known`: the table shows in listings and may be described — any privilege on it
    ///   (naming it otherwise says "permission denied", as a query would);
    /// * `counts`: its file, row and byte counts — ADMIN, or SELECT without a row filter
    ///   (`count(*)` would tell them anyway; under a row filter they would count hidden rows);
    /// * `history`: every commit with who made it and how many rows it changed — ADMIN.
    pub fn table_sight(&self, namespace: &str, table: &str) -> TableSight {
        let (ns, t) = (Some(namespace), Some(table));
        let admin = self.allows(Privilege::Admin, ns, t);
        let select = self.allows(Privilege::Select, ns, t);
        let filtered = self.row_filters.contains_key(&format!("{namespace}.{table}"));
        TableSight {
            known: admin || select || self.allows(Privilege::Insert, ns, t),
            counts: admin || (select && !filtered),
            history: admin,
        }
    }

    /// What reading `column` (classified `classification`) of table `ns.table` gives this
    /// principal: its values, a mask, or NULL.
    pub fn column_read(&self, table: &str, column: &str, classification: &str) -> ColumnRead {
        if let Some(m) = self.masks.get(table).and_then(|m| m.get(column)) {
            return ColumnRead::Masked(m.clone());
        }
        if self.superuser || self.cleared.contains(classification) {
            return ColumnRead::Values;
        }
        match self.level_masks.get(classification) {
            Some(m) => ColumnRead::MaskedUncleared(m.clone()),
            None => ColumnRead::NullUncleared,
        }
    }
}

/// What a principal may know of a table's metadata ([`Subject::table_sight`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TableSight {
    /// It may know the table exists and see its columns.
    pub known: bool,
    /// It may see the table's file, row and byte counts.
    pub counts: bool,
    /// It may read the table's commit history.
    pub history: bool,
}

/// What reading a column gives a principal ([`Subject::column_read`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnRead {
    /// The stored values.
    Values,
    /// A column mask that applies to the principal.
    Masked(Mask),
    /// The classification's mask: the principal is not cleared for the column's level.
    MaskedUncleared(Mask),
    /// NULL: not cleared for the column's level, and no classification mask.
    NullUncleared,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject_with(grants: &[(Privilege, &str)], filtered: bool) -> Subject {
        let classes = Classifications::default();
        let mut s = Subject::superuser("ana", &classes);
        s.superuser = false;
        s.cleared = ["public".to_string()].into();
        s.grants = grants
            .iter()
            .map(|(p, t)| Grant {
                grantee: "ana".into(),
                privilege: *p,
                on: Securable::Table {
                    namespace: "gov".into(),
                    name: (*t).into(),
                },
            })
            .collect();
        if filtered {
            s.row_filters.insert("gov.t".into(), vec!["region = 'n'".into()]);
        }
        s
    }

    #[test]
    fn each_operation_needs_its_privilege() {
        let t = TableIdent::new("gov", "t");
        let other = TableIdent::new("gov", "u");
        let ops = |s: &Subject, t: &TableIdent| {
            [
                s.may(&Operation::ReadRows(t)),
                s.may(&Operation::WriteRows(t)),
                s.may(&Operation::KnowTable(t)),
                s.may(&Operation::AdministerTable(t)),
            ]
        };
        // SELECT: read and know; INSERT: write and know; ADMIN: everything on the table
        assert_eq!(
            ops(&subject_with(&[(Privilege::Select, "t")], false), &t),
            [true, false, true, false]
        );
        assert_eq!(
            ops(&subject_with(&[(Privilege::Insert, "t")], false), &t),
            [false, true, true, false]
        );
        assert_eq!(
            ops(&subject_with(&[(Privilege::Admin, "t")], false), &t),
            [true, true, true, true]
        );
        // a grant on one table says nothing of another, nor of the namespace or the lake
        let admin_t = subject_with(&[(Privilege::Admin, "t")], false);
        assert_eq!(ops(&admin_t, &other), [false; 4]);
        assert!(!admin_t.may(&Operation::AdministerNamespace("gov")));
        assert!(!admin_t.may(&Operation::AdministerLake));
        // refusals name the privilege and the securable
        let none = subject_with(&[], false);
        for (op, wanted) in [
            (Operation::ReadRows(&t), "has no SELECT privilege on table gov.t"),
            (Operation::KnowTable(&t), "has no SELECT privilege on table gov.t"),
            (Operation::WriteRows(&t), "has no INSERT privilege on table gov.t"),
            (Operation::AdministerTable(&t), "has no ADMIN privilege on table gov.t"),
            (
                Operation::AdministerNamespace("gov"),
                "has no ADMIN privilege on namespace gov",
            ),
            (Operation::AdministerLake, "has no ADMIN privilege on the lake"),
        ] {
            let e = none.check(&op).unwrap_err();
            assert!(
                matches!(e, Error::PermissionDenied { .. }) && e.to_string().ends_with(wanted),
                "{op:?}: {e}"
            );
        }
        // bootstrap mode allows everything
        let boot = Subject::superuser("ana", &Classifications::default());
        assert!(boot.check(&Operation::AdministerLake).is_ok() && boot.check(&Operation::ReadRows(&other)).is_ok());
    }

    #[test]
    fn table_sight_rules() {
        let sight = |grants: &[(Privilege, &str)], filtered| subject_with(grants, filtered).table_sight("gov", "t");
        let none = TableSight {
            known: false,
            counts: false,
            history: false,
        };
        // no privilege on it (a privilege on another table does not count)
        assert_eq!(sight(&[], false), none);
        assert_eq!(sight(&[(Privilege::Admin, "other")], false), none);
        // INSERT: known, nothing more
        assert_eq!(
            sight(&[(Privilege::Insert, "t")], false),
            TableSight { known: true, ..none }
        );
        // SELECT: counts unless a row filter hides rows
        assert_eq!(
            sight(&[(Privilege::Select, "t")], false),
            TableSight {
                known: true,
                counts: true,
                history: false
            }
        );
        assert_eq!(
            sight(&[(Privilege::Select, "t")], true),
            TableSight { known: true, ..none }
        );
        // ADMIN: everything, filtered or not
        let all = TableSight {
            known: true,
            counts: true,
            history: true,
        };
        assert_eq!(sight(&[(Privilege::Admin, "t")], true), all);
        assert_eq!(
            Subject::superuser("x", &Classifications::default()).table_sight("gov", "t"),
            all
        );
    }

    #[test]
    fn column_read_rules() {
        let mut s = subject_with(&[(Privilege::Select, "t")], false);
        assert_eq!(s.column_read("gov.t", "id", "public"), ColumnRead::Values);
        assert_eq!(s.column_read("gov.t", "name", "secret"), ColumnRead::NullUncleared);
        s.level_masks.insert("secret".into(), Mask::Redact);
        assert_eq!(
            s.column_read("gov.t", "name", "secret"),
            ColumnRead::MaskedUncleared(Mask::Redact)
        );
        // a column mask wins, even over a clearance
        s.masks
            .entry("gov.t".into())
            .or_default()
            .insert("id".into(), Mask::Null);
        assert_eq!(s.column_read("gov.t", "id", "public"), ColumnRead::Masked(Mask::Null));
        assert_eq!(s.column_read("gov.u", "id", "public"), ColumnRead::Values);
    }

    #[test]
    fn bootstrap_mode_never_comes_back() {
        let mut s = AccessState::default();
        assert!(s.bootstrap());
        s.apply(&AccessAction::CreatePrincipal {
            name: "ana".into(),
            kind: "user".into(),
            attributes: BTreeMap::new(),
        });
        s.apply(&AccessAction::DropPrincipal { name: "ana".into() });
        assert!(s.principals.is_empty());
        // with no principal left, nobody may do anything: fail closed, not open
        assert!(!s.bootstrap());
        let classes = Classifications::default();
        assert!(s.resolve("anyone", &classes).is_err());
    }
}
