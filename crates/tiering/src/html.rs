//! A self-contained HTML capacity report: usage per tier over time as an inline SVG chart, and
//! the tables of the report. No script, no external resource.

use std::fmt::Write;

use crate::capacity::CapacityReport;
use crate::units::fmt_bytes;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 6] = ["#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b"];

/// One line of a [`line_chart`].
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend.
    pub name: String,
    /// Points: (x label, y).
    pub points: Vec<(String, f64)>,
    /// A dashed horizontal line in the series' colour (a capacity, a target).
    pub level: Option<f64>,
}

/// An inline SVG line chart over the x labels `xs` (in order), y from 0 to the largest value.
pub fn line_chart(xs: &[String], series: &[Series], y_fmt: &dyn Fn(f64) -> String, aria: &str) -> String {
    let (w, h, pad) = (900.0f64, 320.0f64, 60.0f64);
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1).chain(s.level))
        .fold(0.0f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let x = |i: usize| {
        pad + (w - 2.0 * pad)
            * if xs.len() > 1 {
                i as f64 / (xs.len() - 1) as f64
            } else {
                0.5
            }
    };
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(aria)
    );
    let _ = write!(
        s,
        r##"<line x1="{pad}" y1="{0}" x2="{1}" y2="{0}" stroke="#444"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{0}" stroke="#444"/>"##,
        h - pad,
        w - pad
    );
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
            pad - 6.0,
            y(v) + 4.0,
            esc(&y_fmt(v))
        );
    }
    if let (Some(first), Some(last)) = (xs.first(), xs.last()) {
        let _ = write!(
            s,
            r##"<text x="{pad}" y="{}" font-size="11" fill="#444">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
            h - pad + 16.0,
            esc(first),
            w - pad,
            h - pad + 16.0,
            esc(last)
        );
    }
    for (n, sr) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let path: Vec<String> = sr
            .points
            .iter()
            .filter_map(|(label, v)| {
                xs.iter()
                    .position(|d| d == label)
                    .map(|i| format!("{:.1},{:.1}", x(i), y(*v)))
            })
            .collect();
        if !path.is_empty() {
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        if let Some(level) = sr.level {
            let _ = write!(
                s,
                r#"<line x1="{pad}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="{color}" stroke-dasharray="6 4"/>"#,
                y(level),
                w - pad
            );
        }
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            w - pad - 150.0,
            12.0 + 18.0 * n as f64,
            w - pad - 132.0,
            22.0 + 18.0 * n as f64,
            esc(&sr.name)
        );
    }
    s.push_str("</svg>");
    s
}

fn chart(r: &CapacityReport) -> String {
    let days: Vec<String> = r
        .history
        .values()
        .flat_map(|s| s.iter().map(|p| p.day.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let series: Vec<Series> = r
        .history
        .iter()
        .map(|(tier, pts)| Series {
            name: tier.clone(),
            points: pts.iter().map(|p| (p.day.clone(), p.bytes as f64)).collect(),
            level: r
                .tiers
                .iter()
                .find(|t| &t.tier == tier)
                .and_then(|t| t.capacity)
                .map(|c| c as f64),
        })
        .collect();
    line_chart(&days, &series, &|v| fmt_bytes(v as u64), "usage per tier over time")
}

/// `<!doctype html>...<body>` with the report style and a title.
pub fn page_start(title: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}\
         td:first-child{{text-align:left}}</style></head><body>",
        esc(title)
    )
}

/// Escape text for HTML.
pub fn escape(s: &str) -> String {
    esc(s)
}

/// The report as an HTML page.
pub fn render(r: &CapacityReport) -> String {
    let mut s = page_start("Stratalake capacity");
    let generated = chrono::DateTime::from_timestamp_millis(r.generated_ms)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let _ = write!(
        s,
        "<h1>Capacity</h1><p>Generated {}; growth over the last {} days. Dashed lines: tier capacities.</p>",
        esc(&generated),
        r.trend_window_days
    );
    s.push_str("<h2>Usage per tier over time</h2>");
    s.push_str(&chart(r));
    s.push_str("<h2>Tiers</h2><table><tr><th>tier</th><th>files</th><th>rows</th><th>used</th><th>capacity</th><th>fill</th><th>growth/day</th><th>full on</th></tr>");
    for t in &r.tiers {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.tier),
            t.usage.files,
            t.usage.rows,
            fmt_bytes(t.usage.bytes),
            t.capacity.map(fmt_bytes).unwrap_or_else(|| "-".into()),
            t.fill
                .map(|f| format!("{:.1}%", f * 100.0))
                .unwrap_or_else(|| "-".into()),
            t.growth_bytes_per_day
                .map(|g| if g < 0.0 {
                    format!("-{}", fmt_bytes((-g) as u64))
                } else {
                    fmt_bytes(g as u64)
                })
                .unwrap_or_else(|| "-".into()),
            esc(t.full_on.as_deref().unwrap_or("-"))
        );
    }
    s.push_str("</table>");
    let usage_table = |title: &str, rows: Vec<(String, crate::capacity::Usage)>| {
        let mut t = format!(
            "<h2>{}</h2><table><tr><th></th><th>files</th><th>rows</th><th>bytes</th></tr>",
            esc(title)
        );
        for (k, u) in rows {
            let _ = write!(
                t,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&k),
                u.files,
                u.rows,
                fmt_bytes(u.bytes)
            );
        }
        t.push_str("</table>");
        t
    };
    s.push_str(&usage_table(
        "Namespaces",
        r.namespaces.iter().map(|(k, u)| (k.clone(), *u)).collect(),
    ));
    s.push_str(&usage_table(
        "Tables",
        r.tables.iter().map(|(k, u)| (k.clone(), *u)).collect(),
    ));
    s.push_str("<h2>Classifications</h2><table><tr><th></th><th>files</th><th>bytes of its columns</th></tr>");
    for (k, u) in &r.classifications {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(k),
            u.files,
            fmt_bytes(u.bytes)
        );
    }
    s.push_str("</table>");
    if !r.quotas.is_empty() {
        s.push_str("<h2>Quotas</h2><table><tr><th></th><th>used</th><th>limit</th><th>use</th></tr>");
        for q in &r.quotas {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
                esc(&q.scope),
                fmt_bytes(q.used),
                fmt_bytes(q.limit),
                100.0 * q.used as f64 / q.limit.max(1) as f64
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}
