//! Table schemas: Arrow types, NOT NULL, a classification per column, and partitioning.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::names::validate_column;
use crate::{Error, Result};

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Arrow type, stored in Arrow's own text form (e.g. `Decimal128(12, 2)`).
    #[serde(with = "data_type_text")]
    pub data_type: DataType,
    /// False for NOT NULL columns.
    pub nullable: bool,
    /// Classification level, e.g. `public`, `internal`, `confidential`, `secret`.
    pub classification: String,
    /// Earlier names of the column, oldest first: files written before a rename hold it under
    /// one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The value rows of files written before the column was added read as (SQL literal text);
    /// NULL when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl ColumnDef {
    /// A nullable column with the given classification.
    pub fn new(name: impl Into<String>, data_type: DataType, classification: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            data_type,
            nullable: true,
            classification: classification.into(),
            aliases: Vec::new(),
            default: None,
        }
    }

    /// This column, NOT NULL.
    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }
}

mod data_type_text {
    use super::*;
    pub fn serialize<S: serde::Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_string())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        let s = String::deserialize(d)?;
        DataType::from_str(&s).map_err(serde::de::Error::custom)
    }
}

/// How a partition value is derived from its source column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// The column's own value.
    Identity,
    /// The UTC calendar day of a date or timestamp, `YYYY-MM-DD`.
    Day,
    /// The UTC month, `YYYY-MM`.
    Month,
    /// The UTC year, `YYYY`.
    Year,
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transform::Identity => "identity",
            Transform::Day => "day",
            Transform::Month => "month",
            Transform::Year => "year",
        })
    }
}

/// One partition field: a source column and a transform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionField {
    /// The source column.
    pub column: String,
    /// The transform applied to it.
    pub transform: Transform,
}

impl PartitionField {
    /// The field's name in paths and in the log: the column for identity, else `column_day` etc.
    pub fn name(&self) -> String {
        match self.transform {
            Transform::Identity => self.column.clone(),
            t => format!("{}_{t}", self.column),
        }
    }

    /// Parse `col`, `day(col)`, `month(col)` or `year(col)`.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if let Some((f, rest)) = spec.split_once('(') {
            let col = rest.strip_suffix(')').ok_or_else(|| Error::InvalidSchema {
                table: String::new(),
                reason: format!("partition spec {spec:?}: missing ')'"),
            })?;
            let transform = match f.trim().to_ascii_lowercase().as_str() {
                "day" | "days" => Transform::Day,
                "month" | "months" => Transform::Month,
                "year" | "years" => Transform::Year,
                "identity" => Transform::Identity,
                other => {
                    return Err(Error::InvalidSchema {
                        table: String::new(),
                        reason: format!("unknown partition transform {other:?}; use day, month or year"),
                    });
                }
            };
            Ok(Self {
                column: unquote(col.trim()).to_string(),
                transform,
            })
        } else {
            Ok(Self {
                column: unquote(spec).to_string(),
                transform: Transform::Identity,
            })
        }
    }
}

impl fmt::Display for PartitionField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transform {
            Transform::Identity => f.write_str(&self.column),
            t => write!(f, "{t}({})", self.column),
        }
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s)
}

/// A table's schema and partitioning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Columns in order.
    pub columns: Vec<ColumnDef>,
    /// Partition fields, outermost first.
    #[serde(default)]
    pub partition_by: Vec<PartitionField>,
}

/// The classification levels of a lake, least sensitive first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classifications {
    /// Levels, least sensitive first.
    pub levels: Vec<String>,
    /// The level of a column created without one.
    pub default: String,
}

impl Default for Classifications {
    fn default() -> Self {
        Self {
            levels: ["public", "internal", "confidential", "secret"]
                .map(String::from)
                .to_vec(),
            default: "internal".into(),
        }
    }
}

impl Classifications {
    /// Check the configuration itself.
    pub fn validate(&self) -> Result<()> {
        if self.levels.is_empty() {
            return Err(Error::InvalidName {
                kind: "classification",
                name: String::new(),
                reason: "no levels configured".into(),
            });
        }
        for l in &self.levels {
            crate::names::validate_ident("classification", l)?;
        }
        self.rank(&self.default).map(|_| ())
    }

    /// Position of a level, 0 = least sensitive.
    pub fn rank(&self, level: &str) -> Result<usize> {
        self.levels
            .iter()
            .position(|l| l == level)
            .ok_or_else(|| Error::InvalidName {
                kind: "classification",
                name: level.to_string(),
                reason: format!("not one of the lake's levels ({})", self.levels.join(", ")),
            })
    }

    /// The least sensitive level (wraps every file's footer key).
    pub fn lowest(&self) -> &str {
        &self.levels[0]
    }
}

/// Highest classification whose values may appear in paths and in the log (partition values).
const MAX_PARTITION_RANK: usize = 1;

impl TableSchema {
    /// Validate names, types, duplicates, classifications and partition fields.
    pub fn validate(&self, table: &str, classes: &Classifications) -> Result<()> {
        let bad = |reason: String| Error::InvalidSchema {
            table: table.to_string(),
            reason,
        };
        if self.columns.is_empty() {
            return Err(bad("a table needs at least one column".into()));
        }
        let mut seen = HashSet::new();
        for c in &self.columns {
            validate_column(&c.name)?;
            if !seen.insert(c.name.to_lowercase()) {
                return Err(bad(format!("duplicate column {:?}", c.name)));
            }
            for a in &c.aliases {
                if !seen.insert(a.to_lowercase()) {
                    return Err(bad(format!(
                        "column name {a:?} is used twice (current or earlier name)"
                    )));
                }
            }
            classes.rank(&c.classification)?;
            check_type(&c.data_type).map_err(|r| bad(format!("column {:?}: {r}", c.name)))?;
        }
        let mut pnames = HashSet::new();
        for p in &self.partition_by {
            let c = self
                .column(&p.column)
                .ok_or_else(|| bad(format!("partition column {:?} is not a column of the table", p.column)))?;
            if !pnames.insert(p.name()) {
                return Err(bad(format!("partition field {p} given twice")));
            }
            let rank = classes.rank(&c.classification)?;
            if rank > MAX_PARTITION_RANK.min(classes.levels.len() - 1) {
                return Err(bad(format!(
                    "partition column {:?} is classified {:?}; partition values appear in paths and in the log, so a partition column may be at most {:?}",
                    c.name,
                    c.classification,
                    classes.levels[MAX_PARTITION_RANK.min(classes.levels.len() - 1)]
                )));
            }
            match p.transform {
                Transform::Identity => match &c.data_type {
                    DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Boolean
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Date32
                    | DataType::Date64 => {}
                    t => {
                        return Err(bad(format!(
                            "cannot partition by {:?} of type {t}: use a string, integer, boolean or date column, or day/month/year of a timestamp",
                            c.name
                        )));
                    }
                },
                _ => match &c.data_type {
                    DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {}
                    t => {
                        return Err(bad(format!(
                            "{}({}) needs a date or timestamp column, not {t}",
                            p.transform, c.name
                        )));
                    }
                },
            }
        }
        Ok(())
    }

    /// A column by name (exact match first, then case-insensitive).
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
    }

    /// The name column `c` has in a file whose top-level columns are `physical`: its current
    /// name, or the newest earlier name the file has; `None` when the file predates the column.
    pub fn physical_name<'a>(c: &'a ColumnDef, physical: &[&str]) -> Option<&'a str> {
        if physical.contains(&c.name.as_str()) {
            return Some(&c.name);
        }
        c.aliases
            .iter()
            .rev()
            .map(String::as_str)
            .find(|a| physical.contains(a))
    }

    /// The Arrow schema of the table's columns as a file with top-level columns `physical`
    /// holds them: renamed columns under the name they had, columns added later left out.
    pub fn file_arrow_schema(&self, physical: &[&str]) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .filter_map(|c| Self::physical_name(c, physical).map(|n| Field::new(n, c.data_type.clone(), true)))
                .collect::<Vec<_>>(),
        ))
    }

    /// The Arrow schema of the table.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// Build a schema from an Arrow schema, classifying every column with `level`.
    pub fn from_arrow(schema: &Schema, level: &str) -> Self {
        Self {
            columns: schema
                .fields()
                .iter()
                .map(|f| ColumnDef {
                    name: f.name().clone(),
                    data_type: f.data_type().clone(),
                    nullable: f.is_nullable(),
                    classification: level.to_string(),
                    aliases: Vec::new(),
                    default: None,
                })
                .collect(),
            partition_by: vec![],
        }
    }
}

fn check_type(t: &DataType) -> std::result::Result<(), String> {
    match t {
        DataType::Null => Err("type Null cannot be stored".into()),
        DataType::Timestamp(TimeUnit::Second, _) => Ok(()),
        DataType::Union(_, _) | DataType::Dictionary(_, _) | DataType::RunEndEncoded(_, _) => {
            Err(format!("type {t} is not supported; use its value type"))
        }
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => check_type(f.data_type()),
        DataType::Struct(fs) => fs.iter().try_for_each(|f| check_type(f.data_type())),
        DataType::Map(f, _) => check_type(f.data_type()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_types_round_trip_through_json() {
        let s = TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, "public").not_null(),
                ColumnDef::new("amount", DataType::Decimal128(12, 2), "internal"),
                ColumnDef::new("d", DataType::Date32, "internal"),
                ColumnDef::new(
                    "ts",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    "internal",
                ),
                ColumnDef::new(
                    "tags",
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    "internal",
                ),
                ColumnDef::new(
                    "addr",
                    DataType::Struct(
                        vec![
                            Field::new("city", DataType::Utf8, true),
                            Field::new("zip", DataType::Int32, false),
                        ]
                        .into(),
                    ),
                    "confidential",
                ),
            ],
            partition_by: vec![PartitionField::parse("day(ts)").unwrap()],
        };
        let json = serde_json::to_string(&s).unwrap();
        let back: TableSchema = serde_json::from_str(&json).unwrap();
        assert_eq!(s, back);
        s.validate("t", &Classifications::default()).unwrap();
    }

    #[test]
    fn rejects_bad_schemas() {
        let c = Classifications::default();
        let one = |col: ColumnDef, part: &str| TableSchema {
            columns: vec![col],
            partition_by: if part.is_empty() {
                vec![]
            } else {
                vec![PartitionField::parse(part).unwrap()]
            },
        };
        assert!(
            one(ColumnDef::new("a", DataType::Utf8, "topsecret"), "")
                .validate("t", &c)
                .is_err()
        );
        assert!(
            one(ColumnDef::new("a", DataType::Utf8, "internal"), "b")
                .validate("t", &c)
                .is_err()
        );
        assert!(
            one(ColumnDef::new("a", DataType::Utf8, "secret"), "a")
                .validate("t", &c)
                .is_err()
        );
        assert!(
            one(ColumnDef::new("a", DataType::Utf8, "public"), "day(a)")
                .validate("t", &c)
                .is_err()
        );
        assert!(
            one(ColumnDef::new("a", DataType::Float64, "public"), "a")
                .validate("t", &c)
                .is_err()
        );
        assert!(PartitionField::parse("week(a)").is_err());
        let dup = TableSchema {
            columns: vec![
                ColumnDef::new("a", DataType::Utf8, "public"),
                ColumnDef::new("A", DataType::Utf8, "public"),
            ],
            partition_by: vec![],
        };
        assert!(dup.validate("t", &c).is_err());
    }
}
