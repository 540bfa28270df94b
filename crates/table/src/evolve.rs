//! Schema evolution: add, rename, widen and drop columns, each a metadata-only commit. Data
//! files are not rewritten; readers map each file's columns to the current schema (a renamed
//! column keeps its earlier names as aliases, so old files are read under the name they hold).
//! A column keeps its classification (and so its keys) through a rename.
//!
//! Names are never reused: a column cannot take a name the table used before (current, earlier
//! or dropped), or old files would be read as the wrong column.

use std::collections::BTreeMap;

use arrow::datatypes::DataType;

use crate::quality::Constraint;
use crate::schema::ColumnDef;
use crate::table::Table;
use crate::{Error, Result};

/// A change to a table's columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaChange {
    /// Add a column (nullable, or with a default that rows of older files read as).
    AddColumn(ColumnDef),
    /// Rename a column.
    RenameColumn {
        /// Current name.
        from: String,
        /// New name.
        to: String,
    },
    /// Widen a column's type (int8 → int16 → int32 → int64, the unsigned ones likewise,
    /// float16/float32 → float64, int up to 32 bits → float64, utf8 → large utf8, binary →
    /// large binary, decimal to more digits at the same scale).
    WidenColumn {
        /// Column.
        column: String,
        /// New type.
        to: DataType,
    },
    /// Drop a column (its values stay in old files until they are rewritten).
    DropColumn {
        /// Column.
        column: String,
    },
}

impl SchemaChange {
    /// `ADD COLUMN`, `RENAME COLUMN`, `ALTER COLUMN TYPE` or `DROP COLUMN`, for history.
    pub fn operation(&self) -> &'static str {
        match self {
            SchemaChange::AddColumn(_) => "ADD COLUMN",
            SchemaChange::RenameColumn { .. } => "RENAME COLUMN",
            SchemaChange::WidenColumn { .. } => "ALTER COLUMN TYPE",
            SchemaChange::DropColumn { .. } => "DROP COLUMN",
        }
    }
}

/// Whether `from` values always fit `to` exactly.
pub fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let rank_i = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    let rank_u = |t: &DataType| match t {
        UInt8 => Some(1),
        UInt16 => Some(2),
        UInt32 => Some(3),
        UInt64 => Some(4),
        _ => None,
    };
    match (from, to) {
        (a, b) if a == b => false,
        (a, b) if rank_i(a).is_some() && rank_i(b).is_some() => rank_i(a) < rank_i(b),
        (a, b) if rank_u(a).is_some() && rank_u(b).is_some() => rank_u(a) < rank_u(b),
        (UInt8 | UInt16, b) if rank_i(b).is_some() => rank_u(from).unwrap_or(0) < rank_i(b).unwrap_or(0),
        (Float16 | Float32, Float64) | (Float16, Float32) => true,
        (Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32, Float64) => true,
        (Utf8, LargeUtf8) | (Binary, LargeBinary) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 == s2 && p2 > p1,
        _ => false,
    }
}

fn word_in(text: &str, word: &str) -> bool {
    let lower = text.to_lowercase();
    let w = word.to_lowercase();
    lower.match_indices(&w).any(|(i, _)| {
        let before = lower[..i].chars().last();
        let after = lower[i + w.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// Apply `change` to `table` as `principal`, in one metadata commit. Returns the new version.
pub async fn evolve(table: &Table, change: SchemaChange, principal: &str) -> Result<u64> {
    let name = table.ident().to_string();
    let bad = |reason: String| Error::InvalidSchema {
        table: name.clone(),
        reason,
    };
    let mut params = BTreeMap::new();
    let op = change.operation();
    let ch = change.clone();
    let retired_check = |m: &crate::action::Metadata, n: &str| -> Result<()> {
        let used = m
            .schema
            .columns
            .iter()
            .flat_map(|c| std::iter::once(&c.name).chain(c.aliases.iter()))
            .chain(m.retired_columns.iter())
            .any(|x| x.eq_ignore_ascii_case(n));
        if used {
            return Err(bad(format!(
                "the name {n:?} is or was used by a column of this table; old files would be read as the wrong column: choose another name"
            )));
        }
        Ok(())
    };
    match &change {
        SchemaChange::AddColumn(c) => {
            params.insert("column".into(), c.name.clone());
        }
        SchemaChange::RenameColumn { from, to } => {
            params.insert("column".into(), from.clone());
            params.insert("to".into(), to.clone());
        }
        SchemaChange::WidenColumn { column, to } => {
            params.insert("column".into(), column.clone());
            params.insert("type".into(), to.to_string());
        }
        SchemaChange::DropColumn { column } => {
            params.insert("column".into(), column.clone());
        }
    }
    table
        .update_metadata(op, params, principal, move |m| {
            let find = |m: &crate::action::Metadata, c: &str| -> Result<usize> {
                m.schema
                    .columns
                    .iter()
                    .position(|x| x.name.eq_ignore_ascii_case(c))
                    .ok_or_else(|| bad(format!("no column {c:?}")))
            };
            let partition = |m: &crate::action::Metadata, c: &str| m.schema.partition_by.iter().any(|p| p.column.eq_ignore_ascii_case(c));
            let constrained = |m: &crate::action::Metadata, c: &str| -> Option<String> {
                m.constraints
                    .iter()
                    .find(|k| match k {
                        Constraint::Check { predicate, .. } => word_in(predicate, c),
                        other => other.columns().iter().any(|x| x.eq_ignore_ascii_case(c)),
                    })
                    .map(|k| k.name().to_string())
            };
            match ch {
                SchemaChange::AddColumn(mut c) => {
                    retired_check(m, &c.name)?;
                    if !c.nullable && c.default.is_none() {
                        return Err(bad(format!(
                            "column {:?} is NOT NULL but has no DEFAULT: rows already in the table would have no value",
                            c.name
                        )));
                    }
                    if let Some(d) = &c.default {
                        let one: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::StringArray::from(vec![d.as_str()]));
                        let v = arrow::compute::cast(&one, &c.data_type)
                            .map_err(|e| bad(format!("DEFAULT {d:?} is not a {}: {e}", c.data_type)))?;
                        if arrow::array::Array::is_null(&v, 0) {
                            return Err(bad(format!("DEFAULT {d:?} is not a {}", c.data_type)));
                        }
                    }
                    c.aliases.clear();
                    m.schema.columns.push(c);
                }
                SchemaChange::RenameColumn { from, to } => {
                    let i = find(m, &from)?;
                    let old = m.schema.columns[i].name.clone();
                    if partition(m, &old) {
                        return Err(bad(format!("{old:?} is a partition column and cannot be renamed")));
                    }
                    retired_check(m, &to)?;
                    crate::names::validate_column(&to)?;
                    if let Some(k) = m.constraints.iter().find(|k| matches!(k, Constraint::Check { predicate, .. } if word_in(predicate, &old))) {
                        return Err(bad(format!(
                            "CHECK constraint {:?} mentions {old:?}: drop it, rename, and add it again",
                            k.name()
                        )));
                    }
                    for k in &mut m.constraints {
                        match k {
                            Constraint::NotNull { column, .. }
                            | Constraint::AllowedValues { column, .. }
                            | Constraint::Range { column, .. }
                            | Constraint::Pattern { column, .. }
                            | Constraint::Freshness { column, .. }
                                if *column == old =>
                            {
                                *column = to.clone()
                            }
                            Constraint::Unique { columns, .. } => {
                                for c in columns.iter_mut().filter(|c| **c == old) {
                                    *c = to.clone();
                                }
                            }
                            _ => {}
                        }
                    }
                    let c = &mut m.schema.columns[i];
                    c.aliases.push(old);
                    c.name = to;
                }
                SchemaChange::WidenColumn { column, to } => {
                    let i = find(m, &column)?;
                    let c = &m.schema.columns[i];
                    if partition(m, &c.name) {
                        return Err(bad(format!("{:?} is a partition column; its type cannot change", c.name)));
                    }
                    if !widens(&c.data_type, &to) {
                        return Err(bad(format!(
                            "cannot change {:?} from {} to {}: only widening changes that keep every value are allowed (e.g. Int32 to Int64, Float32 to Float64)",
                            c.name, c.data_type, to
                        )));
                    }
                    if let Some(k) = constrained(m, &c.name) {
                        return Err(bad(format!("constraint {k:?} uses {:?}: drop it first", c.name)));
                    }
                    m.schema.columns[i].data_type = to;
                }
                SchemaChange::DropColumn { column } => {
                    let i = find(m, &column)?;
                    let c = m.schema.columns[i].clone();
                    if partition(m, &c.name) {
                        return Err(bad(format!("{:?} is a partition column and cannot be dropped", c.name)));
                    }
                    if m.schema.columns.len() == 1 {
                        return Err(bad("cannot drop the only column".into()));
                    }
                    if let Some(k) = constrained(m, &c.name) {
                        return Err(bad(format!("constraint {k:?} uses {:?}: drop it first", c.name)));
                    }
                    m.schema.columns.remove(i);
                    m.retired_columns.push(c.name.clone());
                    m.retired_columns.extend(c.aliases);
                }
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_rules() {
        use DataType::*;
        assert!(widens(&Int32, &Int64));
        assert!(widens(&Int8, &Int32));
        assert!(!widens(&Int64, &Int32));
        assert!(widens(&Float32, &Float64));
        assert!(widens(&Int32, &Float64));
        assert!(!widens(&Int64, &Float64));
        assert!(widens(&UInt16, &Int32));
        assert!(!widens(&UInt32, &Int32));
        assert!(widens(&Decimal128(10, 2), &Decimal128(12, 2)));
        assert!(!widens(&Decimal128(10, 2), &Decimal128(12, 3)));
        assert!(!widens(&Utf8, &Int64));
        assert!(word_in("amount > 0 AND fee < 3", "fee"));
        assert!(!word_in("fees > 0", "fee"));
    }
}
