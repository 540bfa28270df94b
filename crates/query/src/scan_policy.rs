//! What a scan of one table gives one principal, decided before anything is read: which columns
//! are masked (column masks, classification policies, shredded levels), which rows (row
//! filters), what is refused (denied or shredded columns the query touches), and what the
//! statement's audit record notes. A pure function of the subject, the table's columns and the
//! query's columns, so every rule is unit-tested here; the provider only carries it out.

use std::collections::{BTreeMap, HashMap, HashSet};

use stratalake_table::access::{Mask, Subject};
use stratalake_table::schema::{Classifications, ColumnDef};
use stratalake_table::{Access, TableIdent};

/// The table as the scan sees it.
pub(crate) struct ScanTable<'a> {
    pub ident: &'a TableIdent,
    /// The columns of the snapshot read.
    pub columns: &'a [ColumnDef],
    /// For an earlier version: each of its columns' definition today (by its old name); empty
    /// when reading the current version.
    pub lineage: &'a HashMap<String, ColumnDef>,
    /// Whether this is the current version (time travel is read-only).
    pub current: bool,
    pub classifications: &'a Classifications,
}

/// Which rows a scan returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rows {
    /// Every row: no row filter applies.
    All,
    /// None: the table has row filters and none grants this subject rows.
    Nothing,
    /// The rows matching any of these predicates (SQL over the table's columns).
    Matching(Vec<String>),
}

/// What the scan applies ([`resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ScanPolicy {
    /// Masks by column name (a column mask, else its level's classification policy; NULL for a
    /// shredded level under a NULL or REDACT mask).
    pub masks: BTreeMap<String, Mask>,
    pub rows: Rows,
}

/// The classifications governing a column: its own and, for an earlier version, today's.
fn levels_of<'a>(t: &'a ScanTable<'_>, c: &'a ColumnDef) -> impl Iterator<Item = &'a String> {
    std::iter::once(&c.classification).chain(t.lineage.get(&c.name).map(|n| &n.classification))
}

/// Resolve the policy of a scan of `table` by `subject` reading with `access`, whose query
/// touches `touched` (columns asked for or in its conditions); `hidden` are the columns the
/// subject is not cleared for. Fails with `PermissionDenied` for a touched DENY column and
/// with `Shredded` for a touched column of a destroyed level without a NULL or REDACT mask.
/// What applies is noted in `applied` (for the audit record: names and kinds, never
/// predicates or values) before any refusal, so a refused probe is recorded with its policy.
pub(crate) fn resolve(
    subject: &Subject,
    access: &Access,
    table: &ScanTable<'_>,
    hidden: &HashSet<String>,
    touched: &[String],
    applied: &mut Vec<String>,
) -> stratalake_table::Result<ScanPolicy> {
    let ident = table.ident.to_string();
    let table_masks = subject.masks.get(&ident).cloned().unwrap_or_default();
    // masks are set on today's column names; an earlier version's column gets the mask of the
    // column it is today
    let mut masks: BTreeMap<String, Mask> = if table.lineage.is_empty() {
        table_masks
    } else {
        table
            .columns
            .iter()
            .filter_map(|c| {
                let now = table.lineage.get(&c.name).map_or(&c.name, |n| &n.name);
                table_masks.get(now).map(|m| (c.name.clone(), m.clone()))
            })
            .collect()
    };
    // classification policies: columns above the clearance shown through their level's mask
    for c in table.columns {
        // (a column dropped since reads NULL: no policy of today covers it)
        if !hidden.contains(&c.name)
            || masks.contains_key(&c.name)
            || (!table.current && !table.lineage.contains_key(&c.name))
        {
            continue;
        }
        // the strictest level that hides it decides (today's, for an earlier version)
        let level = levels_of(table, c)
            .filter(|l| !access.allows(l))
            .max_by_key(|l| table.classifications.rank(l).unwrap_or(usize::MAX));
        if let Some(m) = level.and_then(|l| subject.level_masks.get(l)) {
            masks.insert(c.name.clone(), m.clone());
        }
    }
    let asked: HashSet<&String> = touched.iter().collect();
    match subject.row_filter_names.get(&ident) {
        Some(names) if names.is_empty() => applied.push(format!("no row filter grants rows of {ident}")),
        Some(names) => applied.extend(names.iter().map(|n| format!("row filter {n} on {ident}"))),
        None => {}
    }
    let rows = match subject.row_filters.get(&ident) {
        None => Rows::All,
        Some(preds) if preds.is_empty() => Rows::Nothing,
        Some(preds) => Rows::Matching(preds.clone()),
    };
    for (c, m) in &masks {
        if asked.contains(c) {
            applied.push(format!("mask {} on {ident}.{c}", m.kind()));
        }
    }
    let mut cleared_away: Vec<&String> = hidden
        .iter()
        .filter(|c| asked.contains(c) && !masks.contains_key(*c))
        .collect();
    cleared_away.sort();
    applied.extend(cleared_away.into_iter().map(|c| format!("clearance hides {ident}.{c}")));
    // Denied columns: a query may not touch them at all.
    if let Some(c) = touched.iter().find(|c| masks.get(*c) == Some(&Mask::Deny)) {
        return Err(stratalake_table::Error::PermissionDenied {
            principal: subject.principal.clone(),
            reason: format!("may not read column {c:?} of {ident} (denied)"),
        });
    }
    // Shredded levels: no key opens their columns any more, and no mask can compute from their
    // values. A NULL or REDACT mask shows them as NULL; otherwise touching one is an error
    // naming it (never a silent NULL).
    for c in table.columns {
        let Some(level) = levels_of(table, c).find(|l| subject.shredded.contains(*l)) else {
            continue;
        };
        if !asked.contains(&c.name) {
            continue;
        }
        match masks.get(&c.name) {
            Some(Mask::Null | Mask::Redact) => {
                masks.insert(c.name.clone(), Mask::Null);
            }
            _ => {
                return Err(stratalake_table::Error::Shredded {
                    table: ident,
                    column: c.name.clone(),
                    level: level.clone(),
                });
            }
        }
    }
    Ok(ScanPolicy { masks, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;
    use std::collections::BTreeSet;

    fn columns() -> Vec<ColumnDef> {
        vec![
            ColumnDef::new("id", DataType::Int64, "public"),
            ColumnDef::new("fee", DataType::Int64, "internal"),
            ColumnDef::new("owner", DataType::Utf8, "confidential"),
        ]
    }

    /// Ana, cleared for public only, no masks, no filters.
    fn ana() -> Subject {
        let mut s = Subject::superuser("ana", &Classifications::default());
        s.superuser = false;
        s.cleared = BTreeSet::from(["public".to_string()]);
        s
    }

    fn run(
        s: &Subject,
        lineage: &HashMap<String, ColumnDef>,
        current: bool,
        touched: &[&str],
    ) -> stratalake_table::Result<(ScanPolicy, Vec<String>)> {
        let ident = TableIdent::new("gov", "permits");
        let cols = columns();
        let classes = Classifications::default();
        let table = ScanTable {
            ident: &ident,
            columns: &cols,
            lineage,
            current,
            classifications: &classes,
        };
        let access = Access::Levels(s.cleared.clone());
        let hidden: HashSet<String> = cols
            .iter()
            .filter(|c| !access.allows(&c.classification))
            .map(|c| c.name.clone())
            .collect();
        let touched: Vec<String> = touched.iter().map(|c| c.to_string()).collect();
        let mut applied = Vec::new();
        resolve(s, &access, &table, &hidden, &touched, &mut applied).map(|p| (p, applied))
    }

    #[test]
    fn uncleared_columns_are_hidden_unless_their_level_has_a_policy() {
        let (p, applied) = run(&ana(), &HashMap::new(), true, &["id", "fee", "owner"]).unwrap();
        assert!(p.masks.is_empty());
        assert_eq!(p.rows, Rows::All);
        assert_eq!(
            applied,
            ["clearance hides gov.permits.fee", "clearance hides gov.permits.owner"]
        );
        let mut s = ana();
        s.level_masks.insert("confidential".into(), Mask::Redact);
        let (p, applied) = run(&s, &HashMap::new(), true, &["owner"]).unwrap();
        assert_eq!(p.masks, BTreeMap::from([("owner".to_string(), Mask::Redact)]));
        assert_eq!(applied, ["mask redact on gov.permits.owner"]);
    }

    #[test]
    fn a_column_mask_wins_over_the_level_policy_and_only_touched_columns_are_noted() {
        let mut s = ana();
        s.level_masks.insert("confidential".into(), Mask::Redact);
        s.masks.insert(
            "gov.permits".into(),
            BTreeMap::from([("owner".to_string(), Mask::Hash)]),
        );
        let (p, applied) = run(&s, &HashMap::new(), true, &["id"]).unwrap();
        assert_eq!(p.masks.get("owner"), Some(&Mask::Hash));
        assert!(applied.is_empty(), "{:?}", applied);
    }

    #[test]
    fn row_filters_grant_matching_rows_or_none() {
        let mut s = ana();
        s.row_filters
            .insert("gov.permits".into(), vec!["region = 'north'".into()]);
        s.row_filter_names
            .insert("gov.permits".into(), vec!["own_region".into()]);
        let (p, applied) = run(&s, &HashMap::new(), true, &["id"]).unwrap();
        assert_eq!(p.rows, Rows::Matching(vec!["region = 'north'".into()]));
        assert_eq!(applied, ["row filter own_region on gov.permits"]);
        s.row_filters.insert("gov.permits".into(), vec![]);
        s.row_filter_names.insert("gov.permits".into(), vec![]);
        let (p, applied) = run(&s, &HashMap::new(), true, &["id"]).unwrap();
        assert_eq!(p.rows, Rows::Nothing);
        assert_eq!(applied, ["no row filter grants rows of gov.permits"]);
    }

    #[test]
    fn touching_a_denied_column_is_refused_naming_it() {
        let mut s = ana();
        s.masks
            .insert("gov.permits".into(), BTreeMap::from([("fee".to_string(), Mask::Deny)]));
        assert!(run(&s, &HashMap::new(), true, &["id"]).is_ok());
        let e = run(&s, &HashMap::new(), true, &["id", "fee"]).unwrap_err().to_string();
        assert!(e.contains("may not read column \"fee\" of gov.permits (denied)"), "{e}");
        // the refused probe is recorded with the policy that refused it
        let ident = TableIdent::new("gov", "permits");
        let (cols, classes) = (columns(), Classifications::default());
        let table = ScanTable {
            ident: &ident,
            columns: &cols,
            lineage: &HashMap::new(),
            current: true,
            classifications: &classes,
        };
        let mut applied = Vec::new();
        let access = Access::Levels(s.cleared.clone());
        let hidden = HashSet::from(["fee".to_string(), "owner".to_string()]);
        assert!(resolve(&s, &access, &table, &hidden, &["fee".to_string()], &mut applied).is_err());
        assert_eq!(applied, ["mask deny on gov.permits.fee"]);
    }

    #[test]
    fn shredded_columns_read_as_null_only_under_a_null_or_redact_mask() {
        let mut s = ana();
        s.cleared.insert("confidential".into());
        s.shredded.insert("confidential".into());
        assert!(run(&s, &HashMap::new(), true, &["id"]).is_ok());
        let e = run(&s, &HashMap::new(), true, &["owner"]).unwrap_err();
        assert!(
            matches!(e, stratalake_table::Error::Shredded { ref column, .. } if column == "owner"),
            "{e}"
        );
        s.masks.insert(
            "gov.permits".into(),
            BTreeMap::from([("owner".to_string(), Mask::Redact)]),
        );
        let (p, _) = run(&s, &HashMap::new(), true, &["owner"]).unwrap();
        assert_eq!(p.masks.get("owner"), Some(&Mask::Null));
    }

    #[test]
    fn an_earlier_version_follows_renames_and_todays_classification() {
        // version 1 called the column `holder` and classified it internal; today it is
        // `owner`, confidential, masked PARTIAL for ana
        let mut s = ana();
        s.cleared.insert("internal".into());
        s.masks.insert(
            "gov.permits".into(),
            BTreeMap::from([("owner".to_string(), Mask::Partial { keep_last: 1 })]),
        );
        let mut old = columns();
        old[2] = ColumnDef::new("holder", DataType::Utf8, "internal");
        let lineage: HashMap<String, ColumnDef> = old
            .iter()
            .map(|c| {
                let now = if c.name == "holder" {
                    columns()[2].clone()
                } else {
                    c.clone()
                };
                (c.name.clone(), now)
            })
            .collect();
        let ident = TableIdent::new("gov", "permits");
        let classes = Classifications::default();
        let table = ScanTable {
            ident: &ident,
            columns: &old,
            lineage: &lineage,
            current: false,
            classifications: &classes,
        };
        let access = Access::Levels(s.cleared.clone());
        let mut applied = Vec::new();
        let p = resolve(
            &s,
            &access,
            &table,
            &HashSet::from(["holder".to_string()]),
            &["holder".to_string()],
            &mut applied,
        )
        .unwrap();
        assert_eq!(p.masks.get("holder"), Some(&Mask::Partial { keep_last: 1 }));
        assert_eq!(applied, ["mask partial on gov.permits.holder"]);
    }
}
