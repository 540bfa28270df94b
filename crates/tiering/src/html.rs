//! A self-contained HTML capacity report: usage per tier over time as an inline SVG chart (with
//! the forecast at the current growth rate), and the tables of the report. No script, no
//! external resource.
//!
//! [`line_chart`] draws every chart of the HTML reports (capacity here, data quality in the
//! facade): the data in a plot rectangle, the x axis labelled below it, the legend to its right
//! where it never covers a line. With data at fewer than two x positions there is nothing to
//! draw a line through, and it returns `None` so the caller can say so in words.

use std::fmt::Write;

use crate::capacity::CapacityReport;
use crate::units::fmt_bytes;

const DAY_MS: i64 = 86_400_000;

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
    /// Points (x, y), in order of x. x is in the chart's units (a day number, a commit's index).
    pub points: Vec<(f64, f64)>,
    /// A dashed horizontal line in the series' colour (a capacity, a target).
    pub level: Option<f64>,
    /// A dotted continuation of the line from its last point through these (a forecast).
    pub forecast: Vec<(f64, f64)>,
    /// Text written at the end of the forecast (`full 2027-02-10`).
    pub forecast_note: Option<String>,
}

/// What [`line_chart`] draws.
pub struct Chart<'a> {
    /// The lines.
    pub series: &'a [Series],
    /// Text of the x-axis tick at a whole x (a date, a version).
    pub x_label: &'a dyn Fn(f64) -> String,
    /// Text of a y-axis tick.
    pub y_label: &'a dyn Fn(f64) -> String,
    /// What the chart shows, for screen readers.
    pub aria: &'a str,
    /// A vertical dotted line at x with a caption: where the forecast starts, say.
    pub marker: Option<(f64, &'a str)>,
}

impl std::fmt::Debug for Chart<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chart")
            .field("series", &self.series)
            .field("aria", &self.aria)
            .field("marker", &self.marker)
            .finish_non_exhaustive()
    }
}

/// The rectangle the data is drawn in (SVG user units): left, top, width, height. The y-axis
/// labels are to its left, the x-axis labels below it, and the legend to its right.
pub const PLOT: (f64, f64, f64, f64) = (80.0, 20.0, 640.0, 260.0);

/// How many x-axis labels a chart shows at most.
const X_TICKS: f64 = 7.0;

/// An inline SVG line chart of `c`, y from 0 to the largest value; `None` when the lines'
/// points lie at fewer than two x positions (one day, one commit: nothing to draw a line
/// through).
pub fn line_chart(c: &Chart<'_>) -> Option<String> {
    let (left, top, pw, ph) = PLOT;
    let data_x: Vec<f64> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite())
        .collect();
    let x0 = data_x.iter().copied().fold(f64::INFINITY, f64::min);
    let data_x1 = data_x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if data_x1 <= x0 {
        return None;
    }
    let x1 = c
        .series
        .iter()
        .flat_map(|s| s.forecast.iter().map(|p| p.0))
        .chain(c.marker.map(|m| m.0))
        .fold(data_x1, f64::max);
    let max = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().chain(&s.forecast).map(|p| p.1).chain(s.level))
        .fold(0.0f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let x = |v: f64| left + pw * (v - x0) / (x1 - x0);
    let y = |v: f64| top + ph - ph * v.clamp(0.0, max) / max;
    let longest = c.series.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
    let legend_x = left + pw + 24.0;
    let (w, h) = (legend_x + 26.0 + 7.5 * longest as f64 + 10.0, top + ph + 44.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" role="img" aria-label="{}">"#,
        esc(c.aria)
    );
    let _ = write!(
        s,
        r##"<rect class="plot" x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#ccc"/>"##
    );
    // y axis: grid lines and labels
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#e4e4e4"/><text x="{2}" y="{3:.1}" font-size="11" text-anchor="end" fill="#444">{4}</text>"##,
            y(v),
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            esc(&(c.y_label)(v))
        );
    }
    // x axis: a label at every `step` whole units, at most X_TICKS of them
    let step = ((x1 - x0) / X_TICKS).ceil().max(1.0);
    s.push_str(r#"<g class="x-axis">"#);
    let mut t = x0.ceil();
    while t <= x1 + 1e-9 {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#444"/><text x="{0:.1}" y="{3}" font-size="11" text-anchor="middle" fill="#444">{4}</text>"##,
            x(t),
            top + ph,
            top + ph + 5.0,
            top + ph + 18.0,
            esc(&(c.x_label)(t))
        );
        t += step;
    }
    s.push_str("</g>");
    if let Some((mx, caption)) = c.marker {
        let _ = write!(
            s,
            r##"<line class="marker" x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1}" stroke="#888" stroke-dasharray="1 3"/><text x="{2:.1}" y="{3}" font-size="11" fill="#888">{4}</text>"##,
            x(mx),
            top + ph,
            x(mx) + 4.0,
            top + 12.0,
            esc(caption)
        );
    }
    let pts = |ps: &[(f64, f64)]| {
        ps.iter()
            .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (n, sr) in c.series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        if let Some(level) = sr.level {
            let _ = write!(
                s,
                r#"<line class="level" x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="{color}" stroke-dasharray="6 4"/>"#,
                y(level),
                left + pw
            );
        }
        if !sr.points.is_empty() {
            let _ = write!(
                s,
                r#"<polyline class="data" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                pts(&sr.points)
            );
        }
        if let (Some(last), false) = (sr.points.last(), sr.forecast.is_empty()) {
            let mut line = vec![*last];
            line.extend(&sr.forecast);
            let _ = write!(
                s,
                r#"<polyline class="forecast" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="2 4" points="{}"/>"#,
                pts(&line)
            );
            if let (Some(note), Some(end)) = (&sr.forecast_note, sr.forecast.last()) {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{color}">{}</text>"#,
                    x(end.0),
                    (y(end.1) - 6.0).max(top + 10.0),
                    esc(note)
                );
            }
        }
    }
    s.push_str(r#"<g class="legend">"#);
    for (n, sr) in c.series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let row = top + 18.0 * n as f64;
        let _ = write!(
            s,
            r#"<rect x="{legend_x}" y="{row}" width="12" height="12" fill="{color}"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            legend_x + 18.0,
            row + 10.0,
            esc(&sr.name)
        );
    }
    s.push_str("</g></svg>");
    Some(s)
}

/// Day number (days since 1970-01-01) of a `YYYY-MM-DD` label.
fn day_number(day: &str) -> Option<f64> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some((d - chrono::NaiveDate::default()).num_days() as f64)
}

/// `YYYY-MM-DD` of a day number.
fn day_text(n: f64) -> String {
    chrono::DateTime::from_timestamp_millis(n.round() as i64 * DAY_MS)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The usage chart: per tier, bytes at the end of each day, its capacity, and a forecast at
/// its growth rate from today over the trend window (up to the day it fills, if that comes
/// sooner, or later but within the window). A lake with history on fewer than two days gets a
/// sentence instead.
fn chart(r: &CapacityReport) -> String {
    let today = r.generated_ms.div_euclid(DAY_MS) as f64;
    let first = r
        .history
        .values()
        .flatten()
        .filter_map(|p| day_number(&p.day))
        .fold(f64::INFINITY, f64::min);
    let window = f64::from(r.trend_window_days.max(1));
    let mut horizon = (today - first).clamp(7.0, window.max(7.0));
    for t in &r.tiers {
        if let Some(d) = t.days_left.filter(|d| *d > 0.0 && *d <= window) {
            horizon = horizon.max(d.ceil());
        }
    }
    let series: Vec<Series> = r
        .tiers
        .iter()
        .map(|t| {
            let points: Vec<(f64, f64)> = r
                .history
                .get(&t.tier)
                .into_iter()
                .flatten()
                .filter_map(|p| Some((day_number(&p.day)?, p.bytes as f64)))
                .collect();
            let mut s = Series {
                name: t.tier.clone(),
                points,
                level: t.capacity.map(|c| c as f64),
                ..Default::default()
            };
            if let (Some(g), Some(&(lx, ly))) = (t.growth_bytes_per_day, s.points.last()) {
                let mut end = (today + horizon, ly + g * (today + horizon - lx));
                match s.level {
                    Some(c) if g > 0.0 && end.1 > c && ly < c => {
                        end = (lx + (c - ly) / g, c);
                        s.forecast_note = t.full_on.as_ref().map(|d| format!("full {d}"));
                    }
                    _ if end.1 < 0.0 => end = (lx + ly / -g, 0.0),
                    _ => {}
                }
                s.forecast = vec![end];
            }
            s
        })
        .collect();
    let forecasting = series.iter().any(|s| !s.forecast.is_empty());
    let chart = line_chart(&Chart {
        series: &series,
        x_label: &day_text,
        y_label: &|v| fmt_bytes(v as u64),
        aria: "usage per tier over time",
        marker: forecasting.then_some((today, "today")),
    });
    chart.unwrap_or_else(|| {
        let when = if first.is_finite() {
            format!(
                "usage is known for one day so far ({}). The chart and its forecast start once the lake has history on two days",
                day_text(first)
            )
        } else {
            "no data has been written yet".to_string()
        };
        format!("<p class=\"no-chart\">Not enough history yet: {when}. Today's figures are in the tables below.</p>")
    })
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
        "<h1>Capacity</h1><p>Generated {}; growth over the last {} days. Dashed lines: tier capacities; \
         dotted: the forecast at that growth rate.</p>",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{Point, TierCapacity, Usage, forecast, growth_per_day};

    const DAY0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    /// A report generated at noon of day `days - 1`, with tier `hot` growing by `per_day` bytes
    /// a day from `start` bytes over `days` days, and an empty `cold` tier.
    fn report(days: i64, start: u64, per_day: u64, capacity: Option<u64>) -> CapacityReport {
        let now = DAY0 + (days - 1) * DAY_MS + DAY_MS / 2;
        let pts: Vec<(i64, u64)> = (0..days)
            .map(|d| (DAY0 + d * DAY_MS + DAY_MS / 2, start + d as u64 * per_day))
            .collect();
        let used = pts.last().map_or(0, |p| p.1);
        let growth = growth_per_day(&pts);
        let fc = capacity.zip(growth).and_then(|(c, g)| forecast(used, c, g, now));
        let hot = TierCapacity {
            tier: "hot".into(),
            usage: Usage {
                files: 1,
                rows: 1,
                bytes: used,
            },
            capacity,
            growth_bytes_per_day: growth,
            days_left: fc.as_ref().map(|f| f.0),
            full_on: fc.map(|f| f.1),
            ..Default::default()
        };
        let cold = TierCapacity {
            tier: "cold".into(),
            ..Default::default()
        };
        let history = pts
            .iter()
            .map(|(t, b)| Point {
                day: day_text(t.div_euclid(DAY_MS) as f64),
                bytes: *b,
            })
            .collect();
        CapacityReport {
            generated_ms: now,
            trend_window_days: 30,
            tiers: vec![hot, cold],
            history: [("hot".to_string(), history), ("cold".to_string(), Vec::new())].into(),
            ..Default::default()
        }
    }

    /// The opening tags `<name ...>` in `svg`.
    fn tags<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name} ");
        svg.match_indices(&open)
            .map(|(i, _)| &svg[i..i + svg[i..].find('>').expect("closed tag")])
            .collect()
    }

    /// A numeric attribute of a tag.
    fn num(tag: &str, attr: &str) -> f64 {
        let key = format!(" {attr}=\"");
        let at = tag.find(&key).unwrap_or_else(|| panic!("no {attr} in {tag}")) + key.len();
        tag[at..at + tag[at..].find('"').unwrap()].parse().unwrap()
    }

    /// The text of every `<text>` element inside `<g class="{class}">`.
    fn texts_in(svg: &str, class: &str) -> Vec<String> {
        let open = format!("<g class=\"{class}\">");
        let start = svg.find(&open).unwrap_or_else(|| panic!("no {open}")) + open.len();
        let group = &svg[start..start + svg[start..].find("</g>").unwrap()];
        group
            .split("<text ")
            .skip(1)
            .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].to_string())
            .collect()
    }

    /// The plot rectangle as drawn: left, top, right, bottom.
    fn plot(svg: &str) -> (f64, f64, f64, f64) {
        let r = tags(svg, "rect")
            .into_iter()
            .find(|t| t.contains("class=\"plot\""))
            .unwrap();
        let (x, y) = (num(r, "x"), num(r, "y"));
        (x, y, x + num(r, "width"), y + num(r, "height"))
    }

    /// Every legend entry lies right of the plot rectangle, and every data point inside it.
    fn assert_legend_outside_the_data(svg: &str) {
        let (l, t, r, b) = plot(svg);
        let start = svg.find("<g class=\"legend\">").expect("a legend");
        let legend = &svg[start..];
        let entries: Vec<&str> = tags(legend, "rect").into_iter().chain(tags(legend, "text")).collect();
        assert!(!entries.is_empty());
        for e in entries {
            assert!(num(e, "x") > r, "legend entry {e} inside the plot (right edge {r})");
        }
        for line in tags(svg, "polyline") {
            let at = line.find("points=\"").unwrap() + 8;
            for p in line[at..at + line[at..].find('"').unwrap()].split(' ') {
                let (x, y) = p.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (l..=r).contains(&x) && (t..=b).contains(&y),
                    "point {p} outside the plot"
                );
            }
        }
    }

    #[test]
    fn a_new_lake_says_there_is_not_enough_history_instead_of_an_empty_axis() {
        for r in [report(1, 5_000, 0, Some(1 << 30)), CapacityReport::default()] {
            let html = render(&r);
            assert!(html.contains("Not enough history yet"), "{html}");
            assert!(!html.contains("<svg"), "{html}");
        }
        assert!(render(&report(1, 5_000, 0, None)).contains("known for one day so far (2026-01-01)"));
        assert!(render(&CapacityReport::default()).contains("no data has been written yet"));
    }

    #[test]
    fn the_chart_labels_dates_and_draws_the_forecast_to_the_day_a_tier_fills() {
        // 10 GB a day for ten days from 100 GB; 250 GB capacity: full six days after the last
        let r = report(10, 100_000_000_000, 10_000_000_000, Some(250_000_000_000));
        assert_eq!(r.tiers[0].full_on.as_deref(), Some("2026-01-16"));
        let html = render(&r);
        let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
        let dates = texts_in(svg, "x-axis");
        assert!(dates.len() >= 5, "{dates:?}");
        assert_eq!(dates[0], "2026-01-01");
        assert!(
            dates
                .iter()
                .all(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()),
            "{dates:?}"
        );
        // the forecast: dotted, from today's point up to the capacity line, with the date
        let fc = tags(svg, "polyline")
            .into_iter()
            .find(|t| t.contains("class=\"forecast\""))
            .expect("a forecast line");
        let level = tags(svg, "line")
            .into_iter()
            .find(|t| t.contains("class=\"level\""))
            .unwrap();
        let end = fc.rsplit(' ').next().unwrap().trim_end_matches(['"', '/']);
        let end_y: f64 = end.split_once(',').unwrap().1.parse().unwrap();
        assert!(
            (end_y - num(level, "y1")).abs() < 0.2,
            "{fc} ends at {end_y}, capacity at {level}"
        );
        assert!(svg.contains(">full 2026-01-16</text>"), "{svg}");
        assert!(svg.contains(">today</text>"), "{svg}");
        assert_legend_outside_the_data(svg);
        // without a capacity the forecast still runs, over the trend window
        let html = render(&report(10, 100, 10, None));
        assert!(html.contains("class=\"forecast\""), "{html}");
        assert!(!html.contains(">full 20"), "{html}");
    }

    #[test]
    fn the_legend_never_covers_the_lines() {
        // as in the quality report: three lines at 100% where a legend in the corner used to sit
        let series: Vec<Series> = ["validity %", "completeness %", "uniqueness % of a long key name"]
            .iter()
            .map(|n| Series {
                name: n.to_string(),
                points: (0..5).map(|i| (i as f64, 100.0 - i as f64 * 0.1)).collect(),
                ..Default::default()
            })
            .collect();
        let svg = line_chart(&Chart {
            series: &series,
            x_label: &|x| format!("v{x}"),
            y_label: &|v| format!("{v:.0}%"),
            aria: "quality per commit",
            marker: None,
        })
        .unwrap();
        assert_legend_outside_the_data(&svg);
        // and the picture is wide enough for the longest name
        let longest = tags(&svg, "text").into_iter().map(|t| num(t, "x")).fold(0.0, f64::max);
        let width = num(tags(&svg, "svg")[0], "width");
        assert!(
            width > longest + 7.0 * "uniqueness % of a long key name".len() as f64,
            "{svg}"
        );
        assert_eq!(texts_in(&svg, "x-axis"), ["v0", "v1", "v2", "v3", "v4"]);
        // one commit: no chart
        let one: Vec<Series> = series
            .iter()
            .map(|s| Series {
                points: s.points[..1].to_vec(),
                ..s.clone()
            })
            .collect();
        assert!(
            line_chart(&Chart {
                series: &one,
                ..Chart {
                    series: &series,
                    x_label: &|x| format!("v{x}"),
                    y_label: &|v| format!("{v:.0}%"),
                    aria: "",
                    marker: None,
                }
            })
            .is_none()
        );
    }
}
