//! Data quality through the facade: constraints, the quality report (completeness, validity,
//! uniqueness, timeliness per table over time) and cross-table comparison.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, Int64Array, RecordBatch};
use serde::Serialize;
use stratalake_table::TableIdent;
use stratalake_table::quality::Constraint;

use crate::{Error, Result, Session};
use stratalake_table::access::Operation;

/// Quality figures of one checked commit.
#[derive(Clone, Debug, Serialize)]
pub struct QualityPoint {
    /// Version.
    pub version: u64,
    /// Commit time, ms since the epoch.
    pub timestamp_ms: i64,
    /// Operation (`APPEND`, ...).
    pub operation: String,
    /// Rows offered.
    pub rows_in: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rows that broke a rule, per rule.
    pub rejected: BTreeMap<String, u64>,
    /// Rows sent to quarantine.
    pub quarantined: u64,
    /// Duplicate rows dropped.
    pub duplicates_removed: u64,
    /// Rows already in the table replaced.
    pub replaced: u64,
    /// Share of non-null cells among the rows written.
    pub completeness: f64,
    /// Share of offered rows that broke no rule.
    pub validity: f64,
    /// Share of offered rows that were not duplicates.
    pub uniqueness: f64,
    /// Commit time minus the newest value of the freshness columns, ms.
    pub lag_ms: Option<i64>,
}

/// One table's quality.
#[derive(Clone, Debug, Serialize)]
pub struct TableQuality {
    /// `namespace.table`.
    pub table: String,
    /// Its constraints.
    pub constraints: Vec<String>,
    /// Live rows now.
    pub rows: u64,
    /// Share of non-null values per column, now.
    pub completeness: BTreeMap<String, f64>,
    /// Share of non-null values over all columns, now.
    pub completeness_overall: f64,
    /// Distinct keys / rows for each UNIQUE constraint, now (1.0 = no duplicates).
    pub uniqueness: BTreeMap<String, f64>,
    /// Newest value of each freshness column now, and how old it is (ms).
    pub timeliness: BTreeMap<String, (Option<i64>, Option<i64>)>,
    /// Over every checked commit: rows offered, rows written, rows rejected.
    pub checked_rows_in: u64,
    /// Rows written by checked commits.
    pub checked_rows_written: u64,
    /// Rows rejected or quarantined by checked commits.
    pub checked_rows_rejected: u64,
    /// Share of offered rows that broke no rule, over every checked commit.
    pub validity: Option<f64>,
    /// Checked commits, oldest first.
    pub history: Vec<QualityPoint>,
}

/// Differences between two tables matched on a key.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompareReport {
    /// Left table.
    pub left: String,
    /// Right table.
    pub right: String,
    /// Key columns.
    pub key: Vec<String>,
    /// Rows on the left.
    pub left_rows: u64,
    /// Rows on the right.
    pub right_rows: u64,
    /// Left rows with no right row of the same key.
    pub missing_in_right: u64,
    /// Right rows with no left row of the same key.
    pub missing_in_left: u64,
    /// Matched pairs with at least one differing column.
    pub differing_rows: u64,
    /// Per compared column: matched pairs whose values differ (NULL vs NULL is equal).
    pub differing: BTreeMap<String, u64>,
    /// Columns compared (in both tables, not in the key).
    pub compared_columns: Vec<String>,
    /// Up to 10 keys of each kind: `missing_in_right`, `missing_in_left`, `differing`.
    pub samples: BTreeMap<String, Vec<String>>,
}

impl CompareReport {
    /// Whether the tables hold the same rows.
    pub fn identical(&self) -> bool {
        self.missing_in_left == 0 && self.missing_in_right == 0 && self.differing_rows == 0
    }
}

fn quote(id: &str) -> String {
    format!("\"{}\"", id.replace('"', "\"\""))
}

fn int(b: &[RecordBatch], col: usize) -> u64 {
    b.first()
        .and_then(|b| b.column(col).as_any().downcast_ref::<Int64Array>().cloned())
        .filter(|a| !a.is_empty() && a.is_valid(0))
        .map_or(0, |a| a.value(0).max(0) as u64)
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 1.0 } else { n as f64 / d as f64 }
}

impl Session {
    /// Constraints of `table`. Needs SELECT on it.
    pub async fn constraints(&self, table: &str) -> Result<Vec<Constraint>> {
        let id = TableIdent::parse(table, crate::DEFAULT_NAMESPACE)?;
        self.subject().await?.check(&Operation::ReadRows(&id))?;
        Ok(self
            .table_unchecked(table)
            .await?
            .snapshot()
            .await?
            .metadata
            .constraints)
    }

    /// Quality of `table` (or of every table): figures now, computed with SQL over the live rows,
    /// and the figures each checked commit recorded. Lake or table administrators only (it reads
    /// every column).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (id INT, name VARCHAR); \
    ///           ALTER TABLE t ADD CONSTRAINT one_id UNIQUE (id) ON DUPLICATE KEEP FIRST; \
    ///           INSERT INTO t VALUES (1, 'a'), (2, NULL), (1, 'c')").await?;
    /// let q = &lake.quality_report(Some("t")).await?[0];
    /// assert_eq!((q.rows, q.completeness["name"]), (2, 0.5));
    /// assert_eq!(q.history[0].duplicates_removed, 1);
    /// # Ok(()) }
    /// ```
    pub async fn quality_report(&self, table: Option<&str>) -> Result<Vec<TableQuality>> {
        let idents: Vec<TableIdent> = match table {
            Some(t) => vec![TableIdent::parse(t, crate::DEFAULT_NAMESPACE)?],
            None => {
                let state = self.lake.catalog.state().await?;
                state
                    .namespaces
                    .iter()
                    .flat_map(|(ns, ts)| ts.keys().map(move |t| TableIdent::new(ns, t)))
                    .collect()
            }
        };
        let subject = self.subject().await?;
        for i in &idents {
            subject.check(&Operation::AdministerTable(i))?;
        }
        let mut out = Vec::new();
        for ident in idents {
            out.push(self.table_quality(&ident).await?);
        }
        Ok(out)
    }

    async fn table_quality(&self, ident: &TableIdent) -> Result<TableQuality> {
        let t = self.lake.catalog.table(ident).await?;
        let snap = t.snapshot().await?;
        let cols: Vec<String> = snap.metadata.schema.columns.iter().map(|c| c.name.clone()).collect();
        let name = format!("{}.{}", quote(&ident.namespace), quote(&ident.name));
        // Now: one scan for row and non-null counts.
        let mut select = vec!["count(*)".to_string()];
        select.extend(cols.iter().map(|c| format!("count({})", quote(c))));
        let b = self.sql(&format!("SELECT {} FROM {name}", select.join(", "))).await?;
        let rows = int(&b, 0);
        let mut completeness = BTreeMap::new();
        let mut filled = 0;
        for (i, c) in cols.iter().enumerate() {
            let n = int(&b, i + 1);
            filled += n;
            completeness.insert(c.clone(), ratio(n, rows));
        }
        let mut uniqueness = BTreeMap::new();
        let mut timeliness = BTreeMap::new();
        let now = self.lake.now_ms();
        for c in &snap.metadata.constraints {
            match c {
                Constraint::Unique {
                    name: rule, columns, ..
                } => {
                    let keys: Vec<String> = columns.iter().map(|c| quote(c)).collect();
                    let b = self
                        .sql(&format!(
                            "SELECT count(*) FROM (SELECT {k} FROM {name} GROUP BY {k})",
                            k = keys.join(", ")
                        ))
                        .await?;
                    uniqueness.insert(rule.clone(), ratio(int(&b, 0), rows));
                }
                Constraint::Freshness { column, .. } => {
                    let b = self
                        .sql(&format!(
                            "SELECT CAST(to_unixtime(max({c})) * 1000 AS BIGINT) FROM {name}",
                            c = quote(column)
                        ))
                        .await?;
                    let newest = b
                        .first()
                        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().cloned())
                        .filter(|a| !a.is_empty() && a.is_valid(0))
                        .map(|a| a.value(0));
                    timeliness.insert(column.clone(), (newest, newest.map(|n| now - n)));
                }
                _ => {}
            }
        }
        // Over time: the figures checked commits recorded.
        let mut history = Vec::new();
        for v in 0..=snap.version {
            let c = t.read_commit(v).await?;
            let Some(q) = c.info.quality else { continue };
            let rejected: u64 = q.rejected.values().sum();
            let cells = q.rows_written * cols.len() as u64;
            let nulls: u64 = q.nulls.values().sum();
            let lag = q.newest_ms.values().max().map(|n| c.info.timestamp_ms - n);
            history.push(QualityPoint {
                version: v,
                timestamp_ms: c.info.timestamp_ms,
                operation: c.info.operation.clone(),
                rows_in: q.rows_in,
                rows_written: q.rows_written,
                completeness: ratio(cells.saturating_sub(nulls), cells),
                validity: ratio(q.rows_in - rejected.min(q.rows_in), q.rows_in),
                uniqueness: ratio(q.rows_in - q.duplicates_removed.min(q.rows_in), q.rows_in),
                lag_ms: lag,
                rejected: q.rejected,
                quarantined: q.quarantined,
                duplicates_removed: q.duplicates_removed,
                replaced: q.replaced,
            });
        }
        let checked_rows_in: u64 = history.iter().map(|p| p.rows_in).sum();
        let checked_rows_rejected: u64 = history.iter().map(|p| p.rejected.values().sum::<u64>()).sum();
        Ok(TableQuality {
            table: ident.to_string(),
            constraints: snap
                .metadata
                .constraints
                .iter()
                .map(|c| format!("{}: {}", c.name(), c.describe()))
                .collect(),
            rows,
            completeness_overall: ratio(filled, rows * cols.len() as u64),
            completeness,
            uniqueness,
            timeliness,
            checked_rows_in,
            checked_rows_written: history.iter().map(|p| p.rows_written).sum(),
            checked_rows_rejected,
            validity: (!history.is_empty()).then(|| ratio(checked_rows_in - checked_rows_rejected, checked_rows_in)),
            history,
        })
    }

    /// Compare two tables matched on `key` columns, as this handle's principal (its row filters
    /// and masks apply): rows missing on either side, and per column how many matched rows
    /// differ, with sample keys.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE a (id INT, v VARCHAR); CREATE TABLE b (id INT, v VARCHAR); \
    ///           INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z'); \
    ///           INSERT INTO b VALUES (1, 'x'), (2, 'Y'), (4, 'w')").await?;
    /// let r = lake.quality_compare("a", "b", &["id".to_string()]).await?;
    /// assert_eq!((r.missing_in_right, r.missing_in_left, r.differing["v"]), (1, 1, 1));
    /// # Ok(()) }
    /// ```
    pub async fn quality_compare(&self, left: &str, right: &str, key: &[String]) -> Result<CompareReport> {
        if key.is_empty() {
            return Err(Error::Config {
                path: "--key".into(),
                reason: "give at least one key column".into(),
            });
        }
        let (li, ri) = (
            TableIdent::parse(left, crate::DEFAULT_NAMESPACE)?,
            TableIdent::parse(right, crate::DEFAULT_NAMESPACE)?,
        );
        // the comparison reads both as this principal; their columns are named only to one who
        // may read them
        let subject = self.subject().await?;
        for i in [&li, &ri] {
            subject.check(&Operation::ReadRows(i))?;
        }
        let (ls, rs) = (
            self.table_unchecked(&li.to_string()).await?.snapshot().await?,
            self.table_unchecked(&ri.to_string()).await?.snapshot().await?,
        );
        let lcols: Vec<String> = ls.metadata.schema.columns.iter().map(|c| c.name.clone()).collect();
        let rcols: Vec<String> = rs.metadata.schema.columns.iter().map(|c| c.name.clone()).collect();
        for k in key {
            for (t, cols) in [(&li, &lcols), (&ri, &rcols)] {
                if !cols.contains(k) {
                    return Err(Error::Config {
                        path: "--key".into(),
                        reason: format!("table {t} has no column {k:?}"),
                    });
                }
            }
        }
        let compared: Vec<String> = lcols
            .iter()
            .filter(|c| rcols.contains(c) && !key.contains(c))
            .cloned()
            .collect();
        let tname = |i: &TableIdent| format!("{}.{}", quote(&i.namespace), quote(&i.name));
        let on: Vec<String> = key.iter().map(|k| format!("l.{0} = r.{0}", quote(k))).collect();
        let mut fields = vec![
            "l.__sl_l IS NOT NULL AS in_l".to_string(),
            "r.__sl_r IS NOT NULL AS in_r".to_string(),
        ];
        let key_text: Vec<String> = key
            .iter()
            .map(|k| format!("CAST(coalesce(l.{0}, r.{0}) AS VARCHAR)", quote(k)))
            .collect();
        fields.push(format!("concat_ws(', ', {}) AS k", key_text.join(", ")));
        for (i, c) in compared.iter().enumerate() {
            fields.push(format!("l.{0} IS DISTINCT FROM r.{0} AS d{i}", quote(c)));
        }
        let joined = format!(
            "SELECT {} FROM (SELECT *, 1 AS __sl_l FROM {}) l FULL OUTER JOIN (SELECT *, 1 AS __sl_r FROM {}) r ON {}",
            fields.join(", "),
            tname(&li),
            tname(&ri),
            on.join(" AND ")
        );
        let any_diff = if compared.is_empty() {
            "false".to_string()
        } else {
            (0..compared.len())
                .map(|i| format!("d{i}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let mut agg = vec![
            "sum(CASE WHEN in_l THEN 1 ELSE 0 END)".to_string(),
            "sum(CASE WHEN in_r THEN 1 ELSE 0 END)".to_string(),
            "sum(CASE WHEN in_l AND NOT in_r THEN 1 ELSE 0 END)".to_string(),
            "sum(CASE WHEN in_r AND NOT in_l THEN 1 ELSE 0 END)".to_string(),
            format!("sum(CASE WHEN in_l AND in_r AND ({any_diff}) THEN 1 ELSE 0 END)"),
        ];
        for i in 0..compared.len() {
            agg.push(format!("sum(CASE WHEN in_l AND in_r AND d{i} THEN 1 ELSE 0 END)"));
        }
        let b = self
            .sql(&format!(
                "SELECT {} FROM ({joined}) j",
                agg.iter()
                    .enumerate()
                    .map(|(i, a)| format!("CAST({a} AS BIGINT) AS c{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .await?;
        let mut r = CompareReport {
            left: li.to_string(),
            right: ri.to_string(),
            key: key.to_vec(),
            left_rows: int(&b, 0),
            right_rows: int(&b, 1),
            missing_in_right: int(&b, 2),
            missing_in_left: int(&b, 3),
            differing_rows: int(&b, 4),
            compared_columns: compared.clone(),
            ..Default::default()
        };
        for (i, c) in compared.iter().enumerate() {
            r.differing.insert(c.clone(), int(&b, 5 + i));
        }
        for (label, cond) in [
            ("missing_in_right", "in_l AND NOT in_r".to_string()),
            ("missing_in_left", "in_r AND NOT in_l".to_string()),
            ("differing", format!("in_l AND in_r AND ({any_diff})")),
        ] {
            let b = self
                .sql(&format!("SELECT k FROM ({joined}) j WHERE {cond} ORDER BY k LIMIT 10"))
                .await?;
            let mut keys = Vec::new();
            for batch in &b {
                let a = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
                let a = a.as_any().downcast_ref::<arrow::array::StringArray>().expect("utf8");
                keys.extend((0..a.len()).map(|i| a.value(i).to_string()));
            }
            r.samples.insert(label.to_string(), keys);
        }
        Ok(r)
    }
}

/// The quality report as an HTML page: per table, validity, completeness and uniqueness of each
/// checked commit as a chart, and the figures now.
pub fn quality_html(report: &[TableQuality]) -> String {
    use stratalake_tiering::html::{Chart, Series, escape, line_chart, page_start};
    let mut s = page_start("Stratalake data quality");
    s.push_str("<h1>Data quality</h1>");
    for t in report {
        let _ = write!(s, "<h2>{}</h2>", escape(&t.table));
        if t.constraints.is_empty() {
            s.push_str("<p>No constraints.</p>");
        } else {
            s.push_str("<ul>");
            for c in &t.constraints {
                let _ = write!(s, "<li><code>{}</code></li>", escape(c));
            }
            s.push_str("</ul>");
        }
        let _ = write!(
            s,
            "<p>{} rows; completeness {:.1}%; validity of checked writes {}.</p>",
            t.rows,
            100.0 * t.completeness_overall,
            t.validity
                .map(|v| format!("{:.1}%", 100.0 * v))
                .unwrap_or_else(|| "-".into())
        );
        if !t.history.is_empty() {
            // x: the checked commit's index, labelled with its version
            let pct = |f: fn(&QualityPoint) -> f64| {
                t.history
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i as f64, 100.0 * f(p)))
                    .collect()
            };
            let series = [
                Series {
                    name: "validity %".into(),
                    points: pct(|p| p.validity),
                    ..Default::default()
                },
                Series {
                    name: "completeness %".into(),
                    points: pct(|p| p.completeness),
                    ..Default::default()
                },
                Series {
                    name: "uniqueness %".into(),
                    points: pct(|p| p.uniqueness),
                    ..Default::default()
                },
            ];
            let version = |x: f64| {
                t.history
                    .get(x.round().max(0.0) as usize)
                    .map(|p| format!("v{}", p.version))
                    .unwrap_or_default()
            };
            let chart = line_chart(&Chart {
                series: &series,
                x_label: &version,
                y_label: &|v| format!("{v:.0}%"),
                aria: "quality per commit",
                marker: None,
            });
            s.push_str(&chart.unwrap_or_else(|| {
                "<p class=\"no-chart\">Not enough history yet for a chart: one checked commit so far.</p>".into()
            }));
            s.push_str("<table><tr><th>version</th><th>rows in</th><th>written</th><th>rejected</th><th>quarantined</th><th>duplicates</th><th>replaced</th></tr>");
            for p in &t.history {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    p.version,
                    p.rows_in,
                    p.rows_written,
                    p.rejected.values().sum::<u64>(),
                    p.quarantined,
                    p.duplicates_removed,
                    p.replaced
                );
            }
            s.push_str("</table>");
        }
        s.push_str("<table><tr><th>column</th><th>completeness</th></tr>");
        for (c, v) in &t.completeness {
            let _ = write!(s, "<tr><td>{}</td><td>{:.1}%</td></tr>", escape(c), 100.0 * v);
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(version: u64, validity: f64) -> QualityPoint {
        QualityPoint {
            version,
            timestamp_ms: 0,
            operation: "APPEND".into(),
            rows_in: 10,
            rows_written: 10,
            rejected: BTreeMap::new(),
            quarantined: 0,
            duplicates_removed: 0,
            replaced: 0,
            completeness: 1.0,
            validity,
            uniqueness: 1.0,
            lag_ms: None,
        }
    }

    fn table(history: Vec<QualityPoint>) -> TableQuality {
        TableQuality {
            table: "default.people".into(),
            constraints: Vec::new(),
            rows: 10,
            completeness: BTreeMap::new(),
            completeness_overall: 1.0,
            uniqueness: BTreeMap::new(),
            timeliness: BTreeMap::new(),
            checked_rows_in: 10,
            checked_rows_written: 10,
            checked_rows_rejected: 0,
            validity: Some(1.0),
            history,
        }
    }

    /// `name="number"` of an SVG tag.
    fn num(tag: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        let at = tag.find(&key).unwrap() + key.len();
        tag[at..at + tag[at..].find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn the_quality_chart_keeps_its_legend_right_of_the_lines() {
        // three lines near 100%, where a legend in the plot's top corner hid them
        let page = quality_html(&[table(vec![point(1, 1.0), point(2, 0.9), point(4, 1.0)])]);
        let plot = &page[page.find("<rect class=\"plot\"").unwrap()..];
        let right = num(plot, "x") + num(plot, "width");
        let legend = &page[page.find("<g class=\"legend\">").unwrap()..page.find("</svg>").unwrap()];
        for name in ["validity %", "completeness %", "uniqueness %"] {
            let at = legend.find(&format!(">{name}</text>")).unwrap();
            let tag = &legend[legend[..at].rfind("<text").unwrap()..at];
            assert!(
                num(tag, "x") > right,
                "{name}: {tag} inside the plot (right edge {right})"
            );
        }
        for tag in legend.split("<rect").skip(1) {
            assert!(num(tag, "x") > right, "{tag}");
        }
        assert!(page.contains(">v1</text>") && page.contains(">v4</text>"), "{page}");
        // one checked commit: said in words
        let page = quality_html(&[table(vec![point(1, 1.0)])]);
        assert!(
            page.contains("Not enough history yet") && !page.contains("<svg"),
            "{page}"
        );
    }
}
