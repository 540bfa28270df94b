//! The PostgreSQL system catalog (`pg_catalog`) as far as clients need it to find their way in a
//! lake: psql's `\dt`, `\d table`, `\dn`, `\l`, `\du` and the introspection of JDBC-style tools.
//!
//! Every statement that names `pg_catalog` gets a schema of that name built for its principal
//! from the catalog state the statement plans against: `pg_class` and `pg_attribute` hold only
//! the tables the principal may know, `pg_roles` every principal and role for lake
//! administrators and the principal itself and its roles for anyone else. There are no indexes,
//! triggers, rules, policies in PostgreSQL's sense, publications or inheritance: those tables
//! exist (clients join them) and are empty. Object ids are stable hashes of names, so the ids a
//! client reads in one statement find the same objects in the next.
//!
//! Before planning, every statement's PostgreSQL spellings are turned into what DataFusion
//! plans: `OPERATOR(pg_catalog.~)`, `COLLATE pg_catalog.default` (and `"C"`), casts to
//! `regclass`, `regtype`, `oid` and `pg_catalog.text`, function names qualified with
//! `pg_catalog.`, and in statements on the catalog `ARRAY(subquery)` and scalar subqueries.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int16Array, Int32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result as DFResult;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CastKind, Expr, FunctionArguments, ObjectName, ObjectNamePart, SelectItem, SetExpr,
    TableFactor, Value, VisitMut, VisitorMut, visit_expressions_mut,
};
use stratalake_table::TableIdent;
use stratalake_table::access::{Operation, Subject};
use stratalake_table::catalog::{Catalog, CatalogState};
use stratalake_table::schema::ColumnDef;

/// The schema's name.
pub const PG_CATALOG: &str = "pg_catalog";

/// The owner every table is shown with: the lake itself (PostgreSQL's bootstrap superuser has
/// this id). Stratalake tables have no owning principal; administrators are whoever holds ADMIN.
const LAKE_OWNER_OID: i64 = 10;
const LAKE_OWNER: &str = "stratalake";
const PG_CATALOG_OID: i64 = 11;
const INFORMATION_SCHEMA_OID: i64 = 13_000;
const DATABASE_OID: i64 = 16_383;
/// Object ids of lake objects start here, as user objects' do in PostgreSQL.
const FIRST_OID: i64 = 16_384;

/// PostgreSQL's types that Stratalake's columns are announced as: (oid, `typname`, the name
/// `format_type` gives, `typlen`, `typcategory`).
const TYPES: &[(u32, &str, &str, i16, &str)] = &[
    (16, "bool", "boolean", 1, "B"),
    (17, "bytea", "bytea", -1, "U"),
    (18, "char", "\"char\"", 1, "S"),
    (19, "name", "name", 64, "S"),
    (20, "int8", "bigint", 8, "N"),
    (21, "int2", "smallint", 2, "N"),
    (23, "int4", "integer", 4, "N"),
    (25, "text", "text", -1, "S"),
    (26, "oid", "oid", 4, "N"),
    (700, "float4", "real", 4, "N"),
    (701, "float8", "double precision", 8, "N"),
    (1043, "varchar", "character varying", -1, "S"),
    (1082, "date", "date", 4, "D"),
    (1083, "time", "time without time zone", 8, "D"),
    (1114, "timestamp", "timestamp without time zone", 8, "D"),
    (1184, "timestamptz", "timestamp with time zone", 8, "D"),
    (1186, "interval", "interval", 16, "T"),
    (1700, "numeric", "numeric", -1, "N"),
];

/// The PostgreSQL type (its oid) a column of Arrow type `t` is announced as, over the wire and
/// in `pg_attribute`. Types without a PostgreSQL counterpart (lists, structs, maps) are `text`,
/// in Arrow's spelling.
pub fn pg_type_oid(t: &DataType) -> u32 {
    match t {
        DataType::Boolean => 16,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Int64 | DataType::UInt32 => 20,
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => 1700,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 1043,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => 17,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Time32(_) | DataType::Time64(_) => 1083,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Interval(_) | DataType::Duration(_) => 1186,
        DataType::Dictionary(_, v) => pg_type_oid(v),
        _ => 25,
    }
}

/// PostgreSQL's type modifier of a column: precision and scale of a decimal, -1 otherwise.
fn type_modifier(t: &DataType) -> i32 {
    match t {
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => ((i32::from(*p) << 16) | (i32::from(*s) & 0xffff)) + 4,
        DataType::Dictionary(_, v) => type_modifier(v),
        _ => -1,
    }
}

/// `format_type(oid, typmod)`: the SQL name of a type.
fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let (_, _, display, _, _) = TYPES.iter().find(|t| i64::from(t.0) == oid)?;
    Some(match typmod {
        Some(m) if oid == 1700 && m >= 4 => format!("numeric({},{})", (m - 4) >> 16, (m - 4) & 0xffff),
        _ => (*display).to_string(),
    })
}

/// A stable object id for an object of `kind` named `name`, in the range of user objects.
fn oid_of(kind: &str, name: &str) -> i64 {
    let mut h = crc32fast::Hasher::new();
    h.update(kind.as_bytes());
    h.update(&[0]);
    h.update(name.as_bytes());
    FIRST_OID + i64::from(h.finalize() % 0x7000_0000)
}

#[derive(Debug)]
struct Relation {
    oid: i64,
    namespace_oid: i64,
    ident: TableIdent,
    /// Whether the principal may know its row and byte counts ([`Subject::table_sight`]):
    /// not under a row filter, whose hidden rows they would count.
    counts: bool,
    /// Its columns, rows and bytes, when the statement reads them ([`PgSnapshot::load_tables`]).
    columns: Vec<ColumnDef>,
    rows: Option<u64>,
    bytes: Option<u64>,
}

#[derive(Debug)]
struct Role {
    oid: i64,
    name: String,
    /// A principal (may log in) rather than a role.
    login: bool,
    superuser: bool,
    /// The roles it is a direct member of.
    member_of: Vec<i64>,
}

/// What one statement's principal may see of the catalog, with object ids.
#[derive(Debug)]
pub(crate) struct PgSnapshot {
    subject: Subject,
    default_namespace: String,
    namespaces: Vec<(i64, String)>,
    relations: Vec<Relation>,
    roles: Vec<Role>,
}

impl PgSnapshot {
    pub(crate) fn new(state: &CatalogState, subject: &Subject, default_namespace: &str) -> Self {
        let mut namespaces = vec![
            (PG_CATALOG_OID, PG_CATALOG.to_string()),
            (INFORMATION_SCHEMA_OID, "information_schema".to_string()),
        ];
        let mut relations = Vec::new();
        for (ns, tables) in &state.namespaces {
            let namespace_oid = oid_of("namespace", ns);
            namespaces.push((namespace_oid, ns.clone()));
            for name in tables.keys() {
                let ident = TableIdent::new(ns, name);
                let sight = subject.table_sight(ns, name);
                if sight.known {
                    relations.push(Relation {
                        oid: oid_of("table", &ident.to_string()),
                        namespace_oid,
                        ident,
                        counts: sight.counts,
                        columns: Vec::new(),
                        rows: None,
                        bytes: None,
                    });
                }
            }
        }
        let admin = subject.may(&Operation::AdministerLake);
        let access = &state.access;
        let member_of = |name: &str| -> Vec<i64> {
            access
                .roles
                .iter()
                .filter(|(_, r)| r.members.contains(name))
                .map(|(role, _)| oid_of("role", role))
                .collect()
        };
        let mut roles = Vec::new();
        for name in access.principals.keys() {
            if !admin && name != &subject.principal {
                continue;
            }
            let superuser = if name == &subject.principal {
                admin
            } else {
                access
                    .resolve(name, &Default::default())
                    .is_ok_and(|s| s.may(&Operation::AdministerLake))
            };
            roles.push(Role {
                oid: oid_of("role", name),
                name: name.clone(),
                login: true,
                superuser,
                member_of: member_of(name),
            });
        }
        for name in access.roles.keys() {
            if !admin && !subject.roles.contains(name) {
                continue;
            }
            roles.push(Role {
                oid: oid_of("role", name),
                name: name.clone(),
                login: false,
                superuser: false,
                member_of: member_of(name),
            });
        }
        if !access.principals.contains_key(&subject.principal) {
            // Bootstrap mode, or the engine's own identity: the session still has a name.
            roles.push(Role {
                oid: oid_of("role", &subject.principal),
                name: subject.principal.clone(),
                login: true,
                superuser: admin,
                member_of: Vec::new(),
            });
        }
        Self {
            subject: subject.clone(),
            default_namespace: default_namespace.to_string(),
            namespaces,
            relations,
            roles,
        }
    }

    /// Read the current version of every table in the snapshot: its columns, rows and bytes.
    pub(crate) async fn load_tables(&mut self, catalog: &Catalog) -> crate::Result<()> {
        for r in &mut self.relations {
            let snap = catalog.table(&r.ident).await?.snapshot().await?;
            r.columns = snap.metadata.schema.columns.clone();
            if r.counts {
                r.rows = Some(snap.rows());
                r.bytes = Some(snap.bytes());
            }
        }
        Ok(())
    }

    /// Whether the session holds any of `privileges` (PostgreSQL's comma-separated list) on
    /// a table.
    fn has_privilege(&self, ident: &TableIdent, privileges: &str) -> bool {
        privileges.split(',').any(|p| {
            let p = p.trim().to_ascii_uppercase();
            let p = p.trim_end_matches(" WITH GRANT OPTION");
            match p {
                "SELECT" => self.subject.may(&Operation::ReadRows(ident)),
                "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" => self.subject.may(&Operation::WriteRows(ident)),
                _ => false,
            }
        })
    }

    fn relation(&self, oid: i64) -> Option<&Relation> {
        self.relations.iter().find(|r| r.oid == oid)
    }

    fn role_name(&self, oid: i64) -> String {
        if oid == LAKE_OWNER_OID {
            return LAKE_OWNER.into();
        }
        match self.roles.iter().find(|r| r.oid == oid) {
            Some(r) => r.name.clone(),
            None => format!("unknown (OID={oid})"),
        }
    }

    /// `'name'::regclass`: the id of a table the principal may see, by `name` or
    /// `namespace.name` (unqualified: the default namespace).
    fn regclass(&self, name: &str) -> Option<i64> {
        let name = name.trim();
        let system = name.strip_prefix("pg_catalog.").unwrap_or(name);
        if let Some((_, oid)) = SYSTEM_OIDS.iter().find(|(n, _)| *n == system) {
            return Some(*oid);
        }
        let ident = TableIdent::parse(name.trim_matches('"'), &self.default_namespace).ok()?;
        self.relations.iter().find(|r| r.ident == ident).map(|r| r.oid)
    }
}

/// The `pg_catalog` schema of one statement.
#[derive(Debug)]
pub(crate) struct PgCatalogSchema {
    snapshot: Arc<PgSnapshot>,
    /// Each table built once per statement, however often the statement names it.
    built: std::sync::Mutex<std::collections::HashMap<&'static str, Arc<dyn TableProvider>>>,
}

impl PgCatalogSchema {
    pub(crate) fn new(snapshot: Arc<PgSnapshot>) -> Self {
        Self {
            snapshot,
            built: Default::default(),
        }
    }
}

/// The tables of `pg_catalog`, with the columns clients read (PostgreSQL 15's names; object
/// ids as `bigint`, `"char"` as text).
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "pg_namespace",
        &[
            ("oid", Col::Oid),
            ("nspname", Col::Text),
            ("nspowner", Col::Oid),
            ("nspacl", Col::TextList),
        ],
    ),
    (
        "pg_class",
        &[
            ("oid", Col::Oid),
            ("relname", Col::Text),
            ("relnamespace", Col::Oid),
            ("reltype", Col::Oid),
            ("reloftype", Col::Oid),
            ("relowner", Col::Oid),
            ("relam", Col::Oid),
            ("relfilenode", Col::Oid),
            ("reltablespace", Col::Oid),
            ("relpages", Col::Int),
            ("reltuples", Col::Real),
            ("relallvisible", Col::Int),
            ("reltoastrelid", Col::Oid),
            ("relhasindex", Col::Bool),
            ("relisshared", Col::Bool),
            ("relpersistence", Col::Text),
            ("relkind", Col::Text),
            ("relnatts", Col::Small),
            ("relchecks", Col::Small),
            ("relhasrules", Col::Bool),
            ("relhastriggers", Col::Bool),
            ("relhassubclass", Col::Bool),
            ("relrowsecurity", Col::Bool),
            ("relforcerowsecurity", Col::Bool),
            ("relispopulated", Col::Bool),
            ("relreplident", Col::Text),
            ("relispartition", Col::Bool),
            ("relrewrite", Col::Oid),
            ("relacl", Col::TextList),
            ("reloptions", Col::TextList),
            ("relpartbound", Col::Text),
        ],
    ),
    (
        "pg_attribute",
        &[
            ("attrelid", Col::Oid),
            ("attname", Col::Text),
            ("atttypid", Col::Oid),
            ("attlen", Col::Small),
            ("attnum", Col::Small),
            ("atttypmod", Col::Int),
            ("attndims", Col::Small),
            ("attnotnull", Col::Bool),
            ("atthasdef", Col::Bool),
            ("attidentity", Col::Text),
            ("attgenerated", Col::Text),
            ("attisdropped", Col::Bool),
            ("attislocal", Col::Bool),
            ("attinhcount", Col::Int),
            ("attcollation", Col::Oid),
            ("attstattarget", Col::Int),
            ("attstorage", Col::Text),
            ("attcompression", Col::Text),
            ("attacl", Col::TextList),
            ("attoptions", Col::TextList),
            ("attfdwoptions", Col::TextList),
        ],
    ),
    (
        "pg_type",
        &[
            ("oid", Col::Oid),
            ("typname", Col::Text),
            ("typnamespace", Col::Oid),
            ("typowner", Col::Oid),
            ("typlen", Col::Small),
            ("typbyval", Col::Bool),
            ("typtype", Col::Text),
            ("typcategory", Col::Text),
            ("typisdefined", Col::Bool),
            ("typrelid", Col::Oid),
            ("typelem", Col::Oid),
            ("typarray", Col::Oid),
            ("typbasetype", Col::Oid),
            ("typtypmod", Col::Int),
            ("typnotnull", Col::Bool),
            ("typcollation", Col::Oid),
        ],
    ),
    (
        "pg_database",
        &[
            ("oid", Col::Oid),
            ("datname", Col::Text),
            ("datdba", Col::Oid),
            ("encoding", Col::Int),
            ("datlocprovider", Col::Text),
            ("datistemplate", Col::Bool),
            ("datallowconn", Col::Bool),
            ("datconnlimit", Col::Int),
            ("dattablespace", Col::Oid),
            ("datcollate", Col::Text),
            ("datctype", Col::Text),
            ("daticulocale", Col::Text),
            ("datacl", Col::TextList),
        ],
    ),
    (
        "pg_roles",
        &[
            ("oid", Col::Oid),
            ("rolname", Col::Text),
            ("rolsuper", Col::Bool),
            ("rolinherit", Col::Bool),
            ("rolcreaterole", Col::Bool),
            ("rolcreatedb", Col::Bool),
            ("rolcanlogin", Col::Bool),
            ("rolreplication", Col::Bool),
            ("rolconnlimit", Col::Int),
            ("rolpassword", Col::Text),
            ("rolvaliduntil", Col::Text),
            ("rolbypassrls", Col::Bool),
            ("rolconfig", Col::TextList),
        ],
    ),
    (
        "pg_auth_members",
        &[
            ("roleid", Col::Oid),
            ("member", Col::Oid),
            ("grantor", Col::Oid),
            ("admin_option", Col::Bool),
        ],
    ),
    (
        "pg_am",
        &[
            ("oid", Col::Oid),
            ("amname", Col::Text),
            ("amhandler", Col::Text),
            ("amtype", Col::Text),
        ],
    ),
    (
        "pg_attrdef",
        &[
            ("oid", Col::Oid),
            ("adrelid", Col::Oid),
            ("adnum", Col::Small),
            ("adbin", Col::Text),
        ],
    ),
    (
        "pg_description",
        &[
            ("objoid", Col::Oid),
            ("classoid", Col::Oid),
            ("objsubid", Col::Int),
            ("description", Col::Text),
        ],
    ),
    (
        "pg_collation",
        &[("oid", Col::Oid), ("collname", Col::Text), ("collnamespace", Col::Oid)],
    ),
    (
        "pg_tablespace",
        &[("oid", Col::Oid), ("spcname", Col::Text), ("spcowner", Col::Oid)],
    ),
    (
        "pg_index",
        &[
            ("indexrelid", Col::Oid),
            ("indrelid", Col::Oid),
            ("indnatts", Col::Small),
            ("indisunique", Col::Bool),
            ("indisprimary", Col::Bool),
            ("indisexclusion", Col::Bool),
            ("indimmediate", Col::Bool),
            ("indisclustered", Col::Bool),
            ("indisvalid", Col::Bool),
            ("indisreplident", Col::Bool),
            ("indkey", Col::Text),
            ("indnullsnotdistinct", Col::Bool),
        ],
    ),
    (
        "pg_constraint",
        &[
            ("oid", Col::Oid),
            ("conname", Col::Text),
            ("connamespace", Col::Oid),
            ("contype", Col::Text),
            ("condeferrable", Col::Bool),
            ("condeferred", Col::Bool),
            ("convalidated", Col::Bool),
            ("conrelid", Col::Oid),
            ("contypid", Col::Oid),
            ("conindid", Col::Oid),
            ("conparentid", Col::Oid),
            ("confrelid", Col::Oid),
            ("conislocal", Col::Bool),
            ("connoinherit", Col::Bool),
            ("conkey", Col::TextList),
            ("confkey", Col::TextList),
        ],
    ),
    (
        "pg_inherits",
        &[
            ("inhrelid", Col::Oid),
            ("inhparent", Col::Oid),
            ("inhseqno", Col::Int),
            ("inhdetachpending", Col::Bool),
        ],
    ),
    (
        "pg_policy",
        &[
            ("oid", Col::Oid),
            ("polname", Col::Text),
            ("polrelid", Col::Oid),
            ("polcmd", Col::Text),
            ("polpermissive", Col::Bool),
            ("polroles", Col::Text),
            ("polqual", Col::Text),
            ("polwithcheck", Col::Text),
        ],
    ),
    (
        "pg_trigger",
        &[
            ("oid", Col::Oid),
            ("tgrelid", Col::Oid),
            ("tgparentid", Col::Oid),
            ("tgname", Col::Text),
            ("tgfoid", Col::Oid),
            ("tgtype", Col::Small),
            ("tgenabled", Col::Text),
            ("tgisinternal", Col::Bool),
            ("tgconstraint", Col::Oid),
        ],
    ),
    (
        "pg_rewrite",
        &[
            ("oid", Col::Oid),
            ("rulename", Col::Text),
            ("ev_class", Col::Oid),
            ("ev_type", Col::Text),
        ],
    ),
    (
        "pg_statistic_ext",
        &[
            ("oid", Col::Oid),
            ("stxrelid", Col::Oid),
            ("stxname", Col::Text),
            ("stxnamespace", Col::Oid),
            ("stxowner", Col::Oid),
            ("stxstattarget", Col::Int),
            ("stxkeys", Col::Text),
            ("stxkind", Col::TextList),
        ],
    ),
    (
        "pg_publication",
        &[
            ("oid", Col::Oid),
            ("pubname", Col::Text),
            ("pubowner", Col::Oid),
            ("puballtables", Col::Bool),
            ("pubinsert", Col::Bool),
            ("pubupdate", Col::Bool),
            ("pubdelete", Col::Bool),
            ("pubtruncate", Col::Bool),
            ("pubviaroot", Col::Bool),
        ],
    ),
    (
        "pg_publication_rel",
        &[
            ("oid", Col::Oid),
            ("prpubid", Col::Oid),
            ("prrelid", Col::Oid),
            ("prqual", Col::Text),
            ("prattrs", Col::TextList),
        ],
    ),
    (
        "pg_publication_namespace",
        &[("oid", Col::Oid), ("pnpubid", Col::Oid), ("pnnspid", Col::Oid)],
    ),
    (
        "pg_foreign_table",
        &[
            ("ftrelid", Col::Oid),
            ("ftserver", Col::Oid),
            ("ftoptions", Col::TextList),
        ],
    ),
    (
        "pg_extension",
        &[
            ("oid", Col::Oid),
            ("extname", Col::Text),
            ("extnamespace", Col::Oid),
            ("extversion", Col::Text),
        ],
    ),
];

#[derive(Clone, Copy, Debug)]
enum Col {
    Oid,
    Text,
    TextList,
    Bool,
    Int,
    Small,
    Real,
}

impl Col {
    fn data_type(self) -> DataType {
        match self {
            Col::Oid => DataType::Int64,
            Col::Text => DataType::Utf8,
            Col::TextList => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            Col::Bool => DataType::Boolean,
            Col::Int => DataType::Int32,
            Col::Small => DataType::Int16,
            Col::Real => DataType::Float32,
        }
    }
}

fn table_schema(columns: &[(&str, Col)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, c)| Field::new(*n, c.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// One value of a row being built.
enum V {
    I(i64),
    S(String),
    B(bool),
}

impl From<i64> for V {
    fn from(v: i64) -> Self {
        V::I(v)
    }
}
impl From<&str> for V {
    fn from(v: &str) -> Self {
        V::S(v.to_string())
    }
}
impl From<String> for V {
    fn from(v: String) -> Self {
        V::S(v)
    }
}
impl From<bool> for V {
    fn from(v: bool) -> Self {
        V::B(v)
    }
}

/// A batch of `rows` for a table of `columns`: each row names the values it has, the others are
/// NULL.
fn batch(columns: &[(&str, Col)], rows: &[Vec<(&str, V)>]) -> DFResult<RecordBatch> {
    let schema = table_schema(columns);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (name, col) in columns {
        fn value<'a>(row: &'a [(&str, V)], name: &str) -> Option<&'a V> {
            row.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
        }
        let array: ArrayRef = match col {
            Col::Oid => Arc::new(rows.iter().map(|r| int(value(r, name))).collect::<Int64Array>()),
            Col::Int => Arc::new(
                rows.iter()
                    .map(|r| int(value(r, name)).map(|v| v as i32))
                    .collect::<Int32Array>(),
            ),
            Col::Small => Arc::new(
                rows.iter()
                    .map(|r| int(value(r, name)).map(|v| v as i16))
                    .collect::<Int16Array>(),
            ),
            Col::Real => Arc::new(
                rows.iter()
                    .map(|r| int(value(r, name)).map(|v| v as f32))
                    .collect::<datafusion::arrow::array::Float32Array>(),
            ),
            Col::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(match value(r, name) {
                        Some(V::B(v)) => Some(*v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            Col::Text => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(match value(r, name) {
                        Some(V::S(v)) => Some(v.as_str()),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            Col::TextList => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for _ in rows {
                    b.append_null();
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(schema, arrays)?)
}

fn int(v: Option<&V>) -> Option<i64> {
    match v {
        Some(V::I(i)) => Some(*i),
        _ => None,
    }
}

impl PgCatalogSchema {
    fn rows(&self, name: &str) -> Vec<Vec<(&'static str, V)>> {
        let s = &self.snapshot;
        match name {
            "pg_namespace" => s
                .namespaces
                .iter()
                .map(|(oid, n)| {
                    vec![
                        ("oid", V::I(*oid)),
                        ("nspname", n.as_str().into()),
                        ("nspowner", V::I(LAKE_OWNER_OID)),
                    ]
                })
                .collect(),
            "pg_class" => {
                let mut rows = Vec::new();
                for r in &s.relations {
                    rows.push(vec![
                        ("oid", V::I(r.oid)),
                        ("relname", r.ident.name.as_str().into()),
                        ("relnamespace", V::I(r.namespace_oid)),
                        ("reltype", V::I(0)),
                        ("reloftype", V::I(0)),
                        ("relowner", V::I(LAKE_OWNER_OID)),
                        ("relam", V::I(0)),
                        ("relfilenode", V::I(0)),
                        ("reltablespace", V::I(0)),
                        ("relpages", V::I(0)),
                        ("reltuples", V::I(r.rows.map_or(-1, |n| n as i64))),
                        ("relallvisible", V::I(0)),
                        ("reltoastrelid", V::I(0)),
                        ("relhasindex", false.into()),
                        ("relisshared", false.into()),
                        ("relpersistence", "p".into()),
                        ("relkind", "r".into()),
                        ("relchecks", V::I(0)),
                        ("relhasrules", false.into()),
                        ("relhastriggers", false.into()),
                        ("relhassubclass", false.into()),
                        ("relrowsecurity", false.into()),
                        ("relforcerowsecurity", false.into()),
                        ("relispopulated", true.into()),
                        ("relreplident", "n".into()),
                        ("relispartition", false.into()),
                        ("relrewrite", V::I(0)),
                    ]);
                }
                rows
            }
            "pg_attribute" | "pg_attrdef" | "pg_description" => {
                let mut rows = Vec::new();
                for r in &s.relations {
                    for (i, c) in r.columns.iter().enumerate() {
                        let num = i as i64 + 1;
                        match name {
                            "pg_attribute" => {
                                let oid = i64::from(pg_type_oid(&c.data_type));
                                let len = TYPES.iter().find(|t| i64::from(t.0) == oid).map_or(-1, |t| t.3);
                                rows.push(vec![
                                    ("attrelid", V::I(r.oid)),
                                    ("attname", c.name.as_str().into()),
                                    ("atttypid", V::I(oid)),
                                    ("attlen", V::I(len.into())),
                                    ("attnum", V::I(num)),
                                    ("atttypmod", V::I(type_modifier(&c.data_type).into())),
                                    ("attndims", V::I(0)),
                                    ("attnotnull", (!c.nullable).into()),
                                    ("atthasdef", c.default.is_some().into()),
                                    ("attidentity", "".into()),
                                    ("attgenerated", "".into()),
                                    ("attisdropped", false.into()),
                                    ("attislocal", true.into()),
                                    ("attinhcount", V::I(0)),
                                    ("attcollation", V::I(0)),
                                    ("attstattarget", V::I(-1)),
                                    ("attstorage", if len > 0 { "p" } else { "x" }.into()),
                                    ("attcompression", "".into()),
                                ]);
                            }
                            "pg_attrdef" => {
                                if let Some(d) = &c.default {
                                    rows.push(vec![
                                        ("oid", V::I(oid_of("default", &format!("{}.{}", r.ident, c.name)))),
                                        ("adrelid", V::I(r.oid)),
                                        ("adnum", V::I(num)),
                                        ("adbin", d.as_str().into()),
                                    ]);
                                }
                            }
                            _ => rows.push(vec![
                                ("objoid", V::I(r.oid)),
                                ("classoid", V::I(PG_CLASS_OID)),
                                ("objsubid", V::I(num)),
                                ("description", classification_note(&c.classification).into()),
                            ]),
                        }
                    }
                }
                rows
            }
            "pg_type" => TYPES
                .iter()
                .map(|(oid, name, _, len, category)| {
                    vec![
                        ("oid", V::I((*oid).into())),
                        ("typname", (*name).into()),
                        ("typnamespace", V::I(PG_CATALOG_OID)),
                        ("typowner", V::I(LAKE_OWNER_OID)),
                        ("typlen", V::I((*len).into())),
                        ("typbyval", (*len > 0 && *len <= 8).into()),
                        ("typtype", "b".into()),
                        ("typcategory", (*category).into()),
                        ("typisdefined", true.into()),
                        ("typrelid", V::I(0)),
                        ("typelem", V::I(0)),
                        ("typarray", V::I(0)),
                        ("typbasetype", V::I(0)),
                        ("typtypmod", V::I(-1)),
                        ("typnotnull", false.into()),
                        ("typcollation", V::I(0)),
                    ]
                })
                .collect(),
            "pg_database" => vec![vec![
                ("oid", V::I(DATABASE_OID)),
                ("datname", crate::engine::CATALOG_NAME.into()),
                ("datdba", V::I(LAKE_OWNER_OID)),
                ("encoding", V::I(6)),
                ("datlocprovider", "c".into()),
                ("datistemplate", false.into()),
                ("datallowconn", true.into()),
                ("datconnlimit", V::I(-1)),
                ("dattablespace", V::I(0)),
                ("datcollate", "C".into()),
                ("datctype", "C".into()),
            ]],
            "pg_roles" => s
                .roles
                .iter()
                .map(|r| {
                    vec![
                        ("oid", V::I(r.oid)),
                        ("rolname", r.name.as_str().into()),
                        ("rolsuper", r.superuser.into()),
                        ("rolinherit", true.into()),
                        ("rolcreaterole", r.superuser.into()),
                        ("rolcreatedb", false.into()),
                        ("rolcanlogin", r.login.into()),
                        ("rolreplication", false.into()),
                        ("rolconnlimit", V::I(-1)),
                        ("rolpassword", "********".into()),
                        ("rolbypassrls", r.superuser.into()),
                    ]
                })
                .collect(),
            "pg_auth_members" => s
                .roles
                .iter()
                .flat_map(|r| {
                    r.member_of.iter().map(|role| {
                        vec![
                            ("roleid", V::I(*role)),
                            ("member", V::I(r.oid)),
                            ("grantor", V::I(LAKE_OWNER_OID)),
                            ("admin_option", false.into()),
                        ]
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `pg_size_pretty`: bytes in PostgreSQL's units (kB, MB, ... from 10 240 of the smaller).
fn size_pretty(bytes: i64) -> String {
    let sign = if bytes < 0 { "-" } else { "" };
    let mut v = bytes.unsigned_abs();
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if v < 10 * 1024 || unit == "TB" {
            return format!("{sign}{v} {unit}");
        }
        v = v.saturating_add(512) / 1024;
    }
    format!("{sign}{v} TB")
}

/// `pg_class`'s own oid (the `classoid` of table descriptions).
const PG_CLASS_OID: i64 = 1259;

/// The object ids of the catalog's own tables that clients name (`'pg_class'::regclass`), as
/// in PostgreSQL.
const SYSTEM_OIDS: &[(&str, i64)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", PG_CLASS_OID),
    ("pg_authid", 1260),
    ("pg_database", 1262),
    ("pg_description", 2609),
    ("pg_namespace", 2615),
    ("pg_constraint", 2606),
];

/// What `\d+` shows as a column's description: its classification.
fn classification_note(level: &str) -> String {
    format!("classification: {level}")
}

#[async_trait::async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|(n, _)| n.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let Some((name, columns)) = TABLES.iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = built.get(name) {
            return Ok(Some(t.clone()));
        }
        let rows = self.rows(name);
        let b = batch(columns, &rows)?;
        let table: Arc<dyn TableProvider> = Arc::new(ReadOnly(MemTable::try_new(b.schema(), vec![vec![b]])?));
        built.insert(name, table.clone());
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.iter().any(|(n, _)| *n == name)
    }
}

/// Words that make a statement read the current version of every table it may see.
pub(crate) const READS_TABLES: &[&str] = &[
    "pg_attribute",
    "pg_attrdef",
    "pg_description",
    "col_description",
    "reltuples",
    "pg_table_size",
    "pg_relation_size",
    "pg_total_relation_size",
];

/// A catalog table: scanned, never written (a write is refused as DataFusion refuses a write to
/// a table that takes none).
#[derive(Debug)]
struct ReadOnly(MemTable);

#[async_trait::async_trait]
impl TableProvider for ReadOnly {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::View
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

/// Whether a statement needs `pg_catalog`: it names the schema or one of its functions.
pub(crate) fn mentioned(words: impl Iterator<Item = String>) -> bool {
    words.into_iter().any(|w| {
        let w = w.to_ascii_lowercase();
        w == PG_CATALOG
            || FUNCTIONS.iter().any(|(f, _)| *f == w)
            || TABLES.iter().any(|(t, _)| *t == w)
            || w == "regclass"
            || w == "regtype"
    })
}

/// The functions clients call on the catalog, with their result types.
const FUNCTIONS: &[(&str, FnKind)] = &[
    ("pg_get_userbyid", FnKind::Text),
    ("pg_table_is_visible", FnKind::Bool),
    ("pg_type_is_visible", FnKind::Bool),
    ("format_type", FnKind::Text),
    ("obj_description", FnKind::Text),
    ("col_description", FnKind::Text),
    ("shobj_description", FnKind::Text),
    ("pg_get_expr", FnKind::Text),
    ("pg_get_indexdef", FnKind::Text),
    ("pg_get_constraintdef", FnKind::Text),
    ("pg_get_triggerdef", FnKind::Text),
    ("pg_get_ruledef", FnKind::Text),
    ("pg_get_viewdef", FnKind::Text),
    ("pg_get_statisticsobjdef_columns", FnKind::Text),
    ("pg_get_partkeydef", FnKind::Text),
    ("pg_encoding_to_char", FnKind::Text),
    ("current_database", FnKind::Text),
    ("current_schema", FnKind::Text),
    ("has_table_privilege", FnKind::Bool),
    ("has_schema_privilege", FnKind::Bool),
    ("has_database_privilege", FnKind::Bool),
    ("pg_relation_is_publishable", FnKind::Bool),
    ("array_upper", FnKind::Int),
    ("pg_relation_size", FnKind::Int),
    ("pg_table_size", FnKind::Int),
    ("pg_total_relation_size", FnKind::Int),
    ("pg_indexes_size", FnKind::Int),
    ("pg_size_pretty", FnKind::Text),
    (REGCLASS_OID, FnKind::Int),
    (REGCLASS_NAME, FnKind::Text),
    (REGTYPE_NAME, FnKind::Text),
];

const REGCLASS_OID: &str = "stratalake_regclass_oid";
const REGCLASS_NAME: &str = "stratalake_regclass_name";
const REGTYPE_NAME: &str = "stratalake_regtype_name";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum FnKind {
    Text,
    Bool,
    Int,
}

/// Register the catalog functions for one statement: `name` and `pg_catalog.name`.
pub(crate) fn register_functions(ctx: &SessionContext, snapshot: &Arc<PgSnapshot>) {
    for (name, kind) in FUNCTIONS {
        let signature = if matches!(*name, "current_database" | "current_schema") {
            Signature::nullary(Volatility::Stable)
        } else {
            Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Stable,
            )
        };
        let f = PgFunction {
            name,
            kind: *kind,
            signature,
            aliases: vec![format!("{PG_CATALOG}.{name}")],
            snapshot: snapshot.clone(),
        };
        ctx.register_udf(ScalarUDF::new_from_impl(f));
    }
}

#[derive(Debug)]
struct PgFunction {
    name: &'static str,
    kind: FnKind,
    signature: Signature,
    aliases: Vec<String>,
    snapshot: Arc<PgSnapshot>,
}

impl PartialEq for PgFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.snapshot, &other.snapshot)
    }
}
impl Eq for PgFunction {}
impl std::hash::Hash for PgFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DFResult<DataType> {
        Ok(match self.kind {
            FnKind::Text => DataType::Utf8,
            FnKind::Bool => DataType::Boolean,
            FnKind::Int => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = if args.args.is_empty() {
            Vec::new()
        } else {
            ColumnarValue::values_to_arrays(&args.args)?
        };
        let ints = |i: usize| -> DFResult<Int64Array> {
            let a = arrays
                .get(i)
                .ok_or_else(|| DataFusionError::Plan(format!("{} needs an argument {}", self.name, i + 1)))?;
            Ok(cast(a, &DataType::Int64)?
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .expect("int64"))
        };
        let texts = |i: usize| -> DFResult<StringArray> {
            let a = arrays
                .get(i)
                .ok_or_else(|| DataFusionError::Plan(format!("{} needs an argument {}", self.name, i + 1)))?;
            Ok(cast(a, &DataType::Utf8)?
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .expect("utf8"))
        };
        let s = &self.snapshot;
        let per_oid_text = |f: &dyn Fn(i64) -> Option<String>| -> DFResult<ArrayRef> {
            let oids = ints(0)?;
            Ok(Arc::new(oids.iter().map(|o| o.and_then(f)).collect::<StringArray>()))
        };
        let array: ArrayRef = match self.name {
            "pg_get_userbyid" => per_oid_text(&|o| Some(s.role_name(o)))?,
            "pg_table_is_visible" => {
                let oids = ints(0)?;
                Arc::new(
                    oids.iter()
                        .map(|o| o.map(|o| s.relation(o).is_some_and(|r| r.ident.namespace == s.default_namespace)))
                        .collect::<BooleanArray>(),
                )
            }
            "pg_type_is_visible" => Arc::new(ints(0)?.iter().map(|o| o.map(|_| true)).collect::<BooleanArray>()),
            "format_type" => {
                let oids = ints(0)?;
                let mods = if arrays.len() > 1 { Some(ints(1)?) } else { None };
                Arc::new(
                    (0..oids.len())
                        .map(|i| {
                            let m = mods.as_ref().and_then(|m| (!m.is_null(i)).then(|| m.value(i)));
                            (!oids.is_null(i)).then(|| format_type(oids.value(i), m)).flatten()
                        })
                        .collect::<StringArray>(),
                )
            }
            "pg_encoding_to_char" => per_oid_text(&|e| Some(if e == 6 { "UTF8" } else { "" }.to_string()))?,
            "current_database" => Arc::new(StringArray::from(vec![crate::engine::CATALOG_NAME; rows])),
            "current_schema" => Arc::new(StringArray::from(vec![s.default_namespace.as_str(); rows])),
            "has_table_privilege" => {
                // (table, privilege) or (user, table, privilege): the session's own privileges
                // only; another principal's are not told.
                let n = arrays.len();
                if n < 2 {
                    return Err(DataFusionError::Plan(
                        "has_table_privilege needs a table and a privilege".into(),
                    ));
                }
                let tables = &arrays[n - 2];
                let by_name = matches!(
                    tables.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                );
                let (names, oids) = (texts(n - 2)?, if by_name { None } else { Some(ints(n - 2)?) });
                let privileges = texts(n - 1)?;
                let users = if n == 3 { Some(texts(0)?) } else { None };
                Arc::new(
                    (0..rows.max(privileges.len()))
                        .map(|i| {
                            let i = i.min(privileges.len().saturating_sub(1));
                            if privileges.is_null(i) {
                                return None;
                            }
                            if let Some(u) = &users
                                && (u.is_null(i) || u.value(i) != s.subject.principal)
                            {
                                return Some(false);
                            }
                            let oid = match &oids {
                                Some(o) => (!o.is_null(i)).then(|| o.value(i)),
                                None => (!names.is_null(i)).then(|| s.regclass(names.value(i))).flatten(),
                            };
                            let Some(r) = oid.and_then(|o| s.relation(o)) else {
                                return Some(false);
                            };
                            Some(s.has_privilege(&r.ident, privileges.value(i)))
                        })
                        .collect::<BooleanArray>(),
                )
            }
            "has_schema_privilege" | "has_database_privilege" => {
                // every namespace and the one database are listed to every principal
                Arc::new(BooleanArray::from(vec![true; rows]))
            }
            REGCLASS_OID => {
                let names = texts(0)?;
                Arc::new(
                    names
                        .iter()
                        .map(|n| n.and_then(|n| s.regclass(n)))
                        .collect::<Int64Array>(),
                )
            }
            REGCLASS_NAME => per_oid_text(&|o| s.relation(o).map(|r| r.ident.to_string()).or(Some(o.to_string())))?,
            REGTYPE_NAME => per_oid_text(&|o| format_type(o, None).or(Some(o.to_string())))?,
            "array_upper" => {
                // The length of a list (PostgreSQL's arrays here are one-dimensional, from 1).
                let lists = arrays
                    .first()
                    .ok_or_else(|| DataFusionError::Plan("array_upper needs a list".into()))?;
                let lengths = datafusion::arrow::compute::kernels::length::length(lists)
                    .ok()
                    .and_then(|l| cast(&l, &DataType::Int64).ok());
                match lengths {
                    Some(l) => l,
                    None => Arc::new(Int64Array::new_null(rows)),
                }
            }
            "pg_relation_size" | "pg_table_size" | "pg_total_relation_size" => {
                // The bytes of the table's data files at its current version.
                let oids = ints(0)?;
                Arc::new(
                    oids.iter()
                        .map(|o| o.and_then(|o| s.relation(o)?.bytes).map(|b| b as i64))
                        .collect::<Int64Array>(),
                )
            }
            "pg_indexes_size" => Arc::new(ints(0)?.iter().map(|o| o.map(|_| 0)).collect::<Int64Array>()),
            // The expressions the catalog holds (column defaults) are kept as their text.
            "pg_get_expr" => Arc::new(texts(0)?),
            "pg_size_pretty" => {
                let sizes = ints(0)?;
                Arc::new(sizes.iter().map(|b| b.map(size_pretty)).collect::<StringArray>())
            }
            // Indexes, constraints in PostgreSQL's sense, triggers, rules, views, statistics
            // objects, partition keys and comments on tables do not exist: no object has a
            // definition, and sizes are not kept per relation.
            _ => match self.kind {
                FnKind::Text => Arc::new(StringArray::new_null(rows)),
                FnKind::Bool => Arc::new(BooleanArray::new_null(rows)),
                FnKind::Int => Arc::new(Int64Array::new_null(rows)),
            },
        };
        let array = if self.name == "col_description" {
            // The classification of the column, the label `\d+` shows.
            let oids = ints(0)?;
            let nums = ints(1)?;
            let _ = array;
            Arc::new(
                (0..oids.len())
                    .map(|i| {
                        if oids.is_null(i) || nums.is_null(i) {
                            return None;
                        }
                        let column = usize::try_from(nums.value(i) - 1).ok()?;
                        let c = s.relation(oids.value(i))?.columns.get(column)?;
                        Some(classification_note(&c.classification))
                    })
                    .collect::<StringArray>(),
            ) as ArrayRef
        } else {
            array
        };
        if !array.is_empty() && args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            return Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

/// Rewrite the PostgreSQL spellings of catalog queries into what DataFusion plans. Statements
/// without them are left as they are. In a statement on `pg_catalog` (`catalog`), a scalar
/// subquery that does not aggregate is made to (`max(x)`): DataFusion plans correlated scalar
/// subqueries only so, and the catalog's own subqueries find at most one row.
pub(crate) fn rewrite(stmt: &mut DFStatement, catalog: bool) {
    match stmt {
        DFStatement::Statement(s) => {
            let _ = visit_expressions_mut(s.as_mut(), |e| {
                rewrite_expr(e, catalog);
                if catalog
                    && let Expr::Subquery(q) = e
                    && reads_catalog(q)
                {
                    if correlated_by_inequality(q) || reads_table_function(q) {
                        // DataFusion cannot plan it; in the catalog such a subquery asks for
                        // what does not exist here (collations other than the type's).
                        *e = Expr::Value(Value::Null.into());
                        return ControlFlow::Continue(());
                    }
                    aggregate_scalar_subquery(q);
                    if let Some(condition) = hoist_outer_conditions(q) {
                        let subquery = std::mem::replace(e, Expr::Value(Value::Null.into()));
                        *e = Expr::Case {
                            case_token: ast::helpers::attached_token::AttachedToken::empty(),
                            end_token: ast::helpers::attached_token::AttachedToken::empty(),
                            operand: None,
                            conditions: vec![ast::CaseWhen {
                                condition,
                                result: subquery,
                            }],
                            else_result: None,
                        };
                    }
                }
                ControlFlow::<()>::Continue(())
            });
            if catalog {
                let _ = s.visit(&mut DistinctNames);
                let _ = s.visit(&mut QualifyCatalogTables::default());
            }
        }
        DFStatement::Explain(e) => rewrite(&mut e.statement, catalog),
        _ => {}
    }
}

/// The conditions of a subquery's WHERE that name only columns of the outer query (psql's
/// `... AND a.atthasdef`), taken out of it: DataFusion decorrelates a subquery only when each
/// condition also names its own columns. The caller asks them before the subquery instead.
fn hoist_outer_conditions(q: &mut ast::Query) -> Option<Expr> {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    let own = own_names(select);
    let selection = select.selection.take()?;
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    let (outer, inner): (Vec<Expr>, Vec<Expr>) = conjuncts.into_iter().partition(|c| {
        let (outer, inner) = qualifiers(c, &own);
        outer > 0 && inner == 0
    });
    select.selection = inner.into_iter().reduce(and);
    outer.into_iter().reduce(and)
}

/// Whether a subquery's WHERE holds a condition other than `=` between its own columns and the
/// outer query's.
fn correlated_by_inequality(q: &ast::Query) -> bool {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    let own = own_names(select);
    let Some(selection) = select.selection.clone() else {
        return false;
    };
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    conjuncts.iter().any(|c| {
        let (outer, inner) = qualifiers(c, &own);
        outer > 0
            && inner > 0
            && !matches!(
                c,
                Expr::BinaryOp {
                    op: BinaryOperator::Eq,
                    ..
                }
            )
    })
}

/// Whether a subquery reads a table or table function of `pg_catalog`: the subquery rewrites
/// are for the catalog's queries only, and leave every other subquery as written.
fn reads_catalog(q: &ast::Query) -> bool {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|t| {
        std::iter::once(&t.relation)
            .chain(t.joins.iter().map(|j| &j.relation))
            .any(|f| match f {
                TableFactor::Table { name, args, .. } => {
                    let parts: Vec<String> = name
                        .0
                        .iter()
                        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                        .collect();
                    match parts.as_slice() {
                        [t] => TABLES.iter().any(|(n, _)| n == t),
                        // a catalog table, or a table function named as the catalog's
                        // (psql's `pg_catalog.unnest(reloptions)`)
                        [schema, t] if schema == PG_CATALOG => args.is_some() || TABLES.iter().any(|(n, _)| n == t),
                        _ => false,
                    }
                }
                _ => false,
            })
    })
}

/// Whether a subquery reads a table function (psql's `generate_series(...)` over an outer
/// column): DataFusion does not decorrelate those.
fn reads_table_function(q: &ast::Query) -> bool {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|t| {
        std::iter::once(&t.relation)
            .chain(t.joins.iter().map(|j| &j.relation))
            .any(|f| matches!(f, TableFactor::Function { .. } | TableFactor::UNNEST { .. }) || is_table_function(f))
    })
}

fn own_names(select: &ast::Select) -> Vec<String> {
    let mut own: Vec<String> = Vec::new();
    for t in &select.from {
        for f in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { name, alias, .. } = f {
                match alias {
                    Some(a) => own.push(a.name.value.to_ascii_lowercase()),
                    None => own.extend(last_part(name)),
                }
            }
        }
    }
    own
}

/// How many qualified column names in `e` are the outer query's and how many its own (an
/// unqualified name or a subquery counts as its own).
fn qualifiers(e: &Expr, own: &[String]) -> (usize, usize) {
    let (mut outer, mut inner) = (0, 0);
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        match x {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                if own.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) {
                    inner += 1;
                } else {
                    outer += 1;
                }
            }
            Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => inner += 1,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (outer, inner)
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    }
}

fn split_and(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        e => out.push(e),
    }
}

/// `pg_catalog` comes first in PostgreSQL's search path: an unqualified `pg_class` is the
/// catalog's (unless the query names a common table expression so).
#[derive(Default)]
struct QualifyCatalogTables {
    ctes: std::collections::HashSet<String>,
}

impl VisitorMut for QualifyCatalogTables {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes
                .extend(with.cte_tables.iter().map(|c| c.alias.name.value.to_ascii_lowercase()));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        if relation.0.len() == 1
            && let Some(name) = last_part(relation)
            && !self.ctes.contains(&name)
            && TABLES.iter().any(|(t, _)| *t == name)
        {
            relation
                .0
                .insert(0, ObjectNamePart::Identifier(ast::Ident::new(PG_CATALOG)));
        }
        ControlFlow::Continue(())
    }
}

/// PostgreSQL lets a query return several columns of one name (`SELECT NULL, NULL`);
/// DataFusion does not: the second and later get an alias of their own.
struct DistinctNames;

impl VisitorMut for DistinctNames {
    type Break = ();

    fn post_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        let mut seen = std::collections::HashSet::new();
        // `SELECT n.oid, n.*`: the wildcard leaves out the columns named before it (DataFusion
        // refuses a column twice; clients read such columns by name).
        let named: Vec<(String, ast::Ident)> = select
            .projection
            .iter()
            .filter_map(|i| match i {
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) if p.len() == 2 => {
                    Some((p[0].value.to_ascii_lowercase(), p[1].clone()))
                }
                _ => None,
            })
            .collect();
        for item in select.projection.iter_mut() {
            if let SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(n), options) = item
                && options.opt_exclude.is_none()
                && let Some(q) = last_part(n)
            {
                let columns: Vec<ObjectName> = named
                    .iter()
                    .filter(|(t, _)| *t == q)
                    .map(|(_, c)| ObjectName(vec![ObjectNamePart::Identifier(c.clone())]))
                    .collect();
                if !columns.is_empty() {
                    options.opt_exclude = Some(ast::ExcludeSelectItem::Multiple(columns));
                }
            }
        }
        for (i, item) in select.projection.iter_mut().enumerate() {
            if let SelectItem::UnnamedExpr(e) = item {
                let name = e.to_string();
                if !seen.insert(name) && !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                    let e = std::mem::replace(e, Expr::Value(Value::Null.into()));
                    *item = SelectItem::ExprWithAlias {
                        expr: e,
                        alias: ast::Ident::new(format!("column{}", i + 1)),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
];

fn aggregate_scalar_subquery(q: &mut ast::Query) {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(g, _) if g.is_empty());
    if select.projection.len() != 1 || grouped {
        return;
    }
    let expr = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return,
    };
    if let Expr::Function(f) = expr
        && last_part(&f.name).is_some_and(|n| AGGREGATES.contains(&n.as_str()))
    {
        return;
    }
    let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
    *expr = call("max", vec![inner]);
}

fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(ast::Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn rewrite_expr(e: &mut Expr, catalog: bool) {
    match e {
        Expr::Collate { expr, collation } => {
            // The byte order DataFusion compares in is PostgreSQL's `C` collation, and the
            // database's default here; any other collation stays, and is refused.
            let byte_order = last_part(collation).is_some_and(|c| matches!(c.as_str(), "default" | "c" | "posix"));
            if byte_order {
                *e = std::mem::replace(expr.as_mut(), Expr::Value(Value::Null.into()));
            }
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                && let Some(symbol) = parts.last()
            {
                let mapped = match symbol.as_str() {
                    "~" => Some(BinaryOperator::PGRegexMatch),
                    "~*" => Some(BinaryOperator::PGRegexIMatch),
                    "!~" => Some(BinaryOperator::PGRegexNotMatch),
                    "!~*" => Some(BinaryOperator::PGRegexNotIMatch),
                    "=" => Some(BinaryOperator::Eq),
                    "<>" => Some(BinaryOperator::NotEq),
                    "<" => Some(BinaryOperator::Lt),
                    "<=" => Some(BinaryOperator::LtEq),
                    ">" => Some(BinaryOperator::Gt),
                    ">=" => Some(BinaryOperator::GtEq),
                    _ => None,
                };
                if let Some(m) = mapped {
                    *op = m;
                }
            }
        }
        Expr::Function(f) => {
            let array_of_subquery =
                last_part(&f.name).as_deref() == Some("array") && matches!(f.args, FunctionArguments::Subquery(_));
            if array_of_subquery {
                if catalog
                    && let FunctionArguments::Subquery(q) = &f.args
                    && reads_catalog(q)
                {
                    *e = array_subquery(q);
                }
                return;
            }
            if f.name.0.len() == 2 && last_part(&ObjectName(vec![f.name.0[0].clone()])).as_deref() == Some(PG_CATALOG) {
                f.name.0.remove(0);
            }
        }
        Expr::Cast { expr, data_type, .. } => {
            if let ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(element, _)) = data_type
                && let Some(t) = plain_type(element)
            {
                **element = t;
                return;
            }
            let target = match data_type {
                ast::DataType::Regclass => Some("regclass".to_string()),
                ast::DataType::Custom(name, _) => last_part(name),
                ast::DataType::Text => None,
                _ => None,
            };
            let Some(target) = target else { return };
            let inner = std::mem::replace(expr.as_mut(), Expr::Value(Value::Null.into()));
            *e = match target.as_str() {
                "regclass" if is_string_literal(&inner) => call(REGCLASS_OID, vec![inner]),
                "regclass" => call(REGCLASS_NAME, vec![inner]),
                "regtype" => call(REGTYPE_NAME, vec![inner]),
                _ if plain_type(data_type).is_some() => cast_to(inner, plain_type(data_type).expect("mapped")),
                _ => {
                    **expr = inner;
                    return;
                }
            };
        }
        _ => {}
    }
}

/// The DataFusion spelling of a PostgreSQL type name DataFusion does not know.
fn plain_type(t: &ast::DataType) -> Option<ast::DataType> {
    let ast::DataType::Custom(name, _) = t else { return None };
    Some(match last_part(name)?.as_str() {
        "oid" | "regproc" | "regnamespace" | "regrole" | "xid" | "int8" => ast::DataType::BigInt(None),
        "int2" => ast::DataType::SmallInt(None),
        "int4" => ast::DataType::Int(None),
        "float4" => ast::DataType::Real,
        "float8" => ast::DataType::DoublePrecision,
        "bool" => ast::DataType::Boolean,
        "text" | "name" | "char" | "varchar" | "bpchar" | "int2vector" | "oidvector" => ast::DataType::Text,
        _ => return None,
    })
}

fn is_string_literal(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)))
}

fn cast_to(expr: Expr, data_type: ast::DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    }
}

/// `ARRAY(SELECT x FROM ...)`: the values of the subquery as one list, planned as a scalar
/// subquery aggregating them (`(SELECT array_agg(x) FROM ...)`). A subquery over a table
/// function (psql's `unnest(reloptions)`) reads options no lake table has: an empty list.
fn array_subquery(q: &ast::Query) -> Expr {
    let mut q = q.clone();
    if !correlated_by_inequality(&q)
        && !reads_table_function(&q)
        && q.limit_clause.is_none()
        && let SetExpr::Select(select) = q.body.as_mut()
        && select.projection.len() == 1
    {
        let item = select.projection.remove(0);
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        };
        if let Some(expr) = expr {
            let mut agg = call("array_agg", vec![expr]);
            // the order of the list: the subquery's ORDER BY, inside the aggregate
            if let Some(order) = q.order_by.take()
                && let ast::OrderByKind::Expressions(keys) = order.kind
                && let Expr::Function(f) = &mut agg
                && let FunctionArguments::List(list) = &mut f.args
            {
                list.clauses.push(ast::FunctionArgumentClause::OrderBy(keys));
            }
            select.projection = vec![SelectItem::UnnamedExpr(agg)];
            return Expr::Subquery(Box::new(q));
        }
    }
    cast_to(
        Expr::Value(Value::Null.into()),
        ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(ast::DataType::Text),
            None,
        )),
    )
}

fn is_table_function(t: &TableFactor) -> bool {
    matches!(t, TableFactor::Table { args: Some(_), .. })
}
