//! Reading CSV and TSV input: options, delimiter detection, and the conversion of each field
//! from its text to the table's type with errors that name the line and the column.
//!
//! Fields are read as text and converted per column, so that every type follows the same rules:
//! decimals round half away from zero to the column's scale (as SQL casts do; arrow-csv's own
//! decimal parser truncates) and a value that does not fit the precision is an error; dates and
//! timestamps may follow a given chrono format; an error never quotes the value (a column may
//! be confidential and errors reach logs and the audit log), only where it is.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Date32Array, Date64Array, StringArray, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use serde::Serialize;

/// How CSV (and TSV) files are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CsvOptions {
    /// Field separator; `None`: `\t` for TSV, else detected from the first line among `,`,
    /// `;`, tab and `|` (the one found most often outside quotes; `,` if none is).
    pub delimiter: Option<u8>,
    /// Quote character (default `"`).
    pub quote: u8,
    /// Escape character inside quoted fields (default none: a doubled quote is a quote).
    pub escape: Option<u8>,
    /// Whether the first line names the columns (default). Without a header, the fields are
    /// the table's columns in order.
    pub header: bool,
    /// A field equal to this text is NULL. Default: an empty field is NULL. With a null text
    /// set, an empty field of a text column is the empty string.
    pub null: Option<String>,
    /// chrono format of DATE fields (e.g. `%d.%m.%Y`); default ISO 8601 (`2025-11-25`).
    pub date_format: Option<String>,
    /// chrono format of TIMESTAMP fields (e.g. `%d.%m.%Y %H:%M`); with `%z` the offset is read,
    /// else the time is in the column's time zone (UTC when it has none). Default RFC 3339 /
    /// ISO 8601.
    pub timestamp_format: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            quote: b'"',
            escape: None,
            header: true,
            null: None,
            date_format: None,
            timestamp_format: None,
        }
    }
}

/// Delimiters tried by detection, most usual first.
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Pick the delimiter of `first_line`: the candidate found most often outside quotes (ties go
/// to the more usual one), `,` when none is there.
pub fn detect_delimiter(first_line: &[u8], quote: u8) -> u8 {
    let mut counts = [0usize; CANDIDATES.len()];
    let mut quoted = false;
    for b in first_line {
        if *b == quote {
            quoted = !quoted;
        } else if !quoted && let Some(i) = CANDIDATES.iter().position(|c| c == b) {
            counts[i] += 1;
        }
    }
    let mut best = 0;
    for i in 1..CANDIDATES.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    if counts[best] == 0 { b',' } else { CANDIDATES[best] }
}

/// How a delimiter is shown in messages.
pub fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "tab".into(),
        b' ' => "space".into(),
        d => format!("{:?}", d as char),
    }
}

/// Parse a delimiter or quote given on the command line: one character, or `tab`, `\t`,
/// `space`.
pub fn parse_char(what: &str, s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        "space" => Ok(b' '),
        s if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!("{what} {s:?}: give one ASCII character (or `tab`, `space`)")),
    }
}

/// Convert one column of text fields to `to`. `Err((row, reason))` names the first field that
/// does not convert (the reason never quotes the value).
pub fn convert(strings: &StringArray, to: &DataType, opts: &CsvOptions) -> Result<ArrayRef, (usize, String)> {
    if matches!(to, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return cast_with_options(strings, to, &strict()).map_err(|e| (0, e.to_string()));
    }
    // Only text columns can hold an empty string; elsewhere an empty field is NULL.
    let strings = if opts.null.is_some() {
        let v: StringArray = strings.iter().map(|s| s.filter(|s| !s.trim().is_empty())).collect();
        std::borrow::Cow::Owned(v)
    } else {
        std::borrow::Cow::Borrowed(strings)
    };
    let strings = strings.as_ref();
    match (to, &opts.date_format, &opts.timestamp_format) {
        (DataType::Date32 | DataType::Date64, Some(fmt), _) => dates(strings, to, fmt),
        (DataType::Timestamp(unit, tz), _, Some(fmt)) => timestamps(strings, *unit, tz.as_deref(), to, fmt),
        _ => match cast_with_options(strings, to, &strict()) {
            Ok(a) => Ok(a),
            Err(_) => Err(locate(strings, to)),
        },
    }
}

fn strict() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

/// The first field whose cast fails, and why.
fn locate(strings: &StringArray, to: &DataType) -> (usize, String) {
    let lenient = cast_with_options(strings, to, &CastOptions::default()).ok();
    let row = (0..strings.len())
        .find(|i| strings.is_valid(*i) && lenient.as_ref().is_none_or(|a| a.is_null(*i)))
        .unwrap_or(0);
    let value = if strings.is_valid(row) {
        strings.value(row).trim()
    } else {
        ""
    };
    (row, why(value, to))
}

/// Why `value` is not a `to`, without quoting it.
fn why(value: &str, to: &DataType) -> String {
    match to {
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => {
            let t = value.trim_start_matches(['+', '-']);
            let (int, frac) = t.split_once('.').unwrap_or((t, ""));
            let number = !t.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && !(int.is_empty() && frac.is_empty());
            if !number {
                format!("the value is not a number (expected DECIMAL({p}, {s}))")
            } else {
                let digits = int.trim_start_matches('0').len();
                format!(
                    "the value has {digits} digit(s) before the decimal point, more than DECIMAL({p}, {s}) holds ({}); nothing was rounded away silently",
                    (*p as i32 - *s as i32).max(0)
                )
            }
        }
        DataType::Boolean => "the value is not a boolean (true/false, t/f, yes/no, 1/0)".into(),
        DataType::Date32 | DataType::Date64 => "the value is not a date (YYYY-MM-DD, or give --date-format)".into(),
        DataType::Timestamp(..) => {
            "the value is not a timestamp (RFC 3339 / ISO 8601, or give --timestamp-format)".into()
        }
        t if t.is_integer() => format!("the value is not a whole number that fits {t}"),
        t if t.is_floating() => format!("the value is not a number ({t})"),
        t => format!("the value cannot be read as {t}"),
    }
}

fn dates(strings: &StringArray, to: &DataType, fmt: &str) -> Result<ArrayRef, (usize, String)> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    let mut days = Vec::with_capacity(strings.len());
    for (i, s) in strings.iter().enumerate() {
        days.push(match s {
            None => None,
            Some(s) => Some(
                NaiveDate::parse_from_str(s.trim(), fmt)
                    .map_err(|_| (i, format!("the value is not a date in the format {fmt:?}")))?
                    .signed_duration_since(epoch)
                    .num_days(),
            ),
        });
    }
    Ok(match to {
        DataType::Date32 => Arc::new(Date32Array::from_iter(days.into_iter().map(|d| d.map(|d| d as i32)))),
        _ => Arc::new(Date64Array::from_iter(
            days.into_iter().map(|d| d.map(|d| d * 86_400_000)),
        )),
    })
}

fn timestamps(
    strings: &StringArray,
    unit: TimeUnit,
    tz: Option<&str>,
    to: &DataType,
    fmt: &str,
) -> Result<ArrayRef, (usize, String)> {
    let zone: Option<arrow::array::timezone::Tz> = match tz {
        Some(t) => Some(
            t.parse()
                .map_err(|_| (0, format!("the column's time zone {t:?} is unknown")))?,
        ),
        None => None,
    };
    let with_offset = fmt.contains("%z") || fmt.contains("%:z") || fmt.contains("%#z");
    let mut out = Vec::with_capacity(strings.len());
    for (i, s) in strings.iter().enumerate() {
        let Some(s) = s else {
            out.push(None);
            continue;
        };
        let bad = || (i, format!("the value is not a timestamp in the format {fmt:?}"));
        let utc = if with_offset {
            DateTime::parse_from_str(s.trim(), fmt).map_err(|_| bad())?.to_utc()
        } else {
            let naive = NaiveDateTime::parse_from_str(s.trim(), fmt).map_err(|_| bad())?;
            match &zone {
                Some(z) => z
                    .from_local_datetime(&naive)
                    .earliest()
                    .ok_or_else(|| (i, "the local time does not exist in the column's time zone".to_string()))?
                    .to_utc(),
                None => naive.and_utc(),
            }
        };
        let v = match unit {
            TimeUnit::Second => Some(utc.timestamp()),
            TimeUnit::Millisecond => Some(utc.timestamp_millis()),
            TimeUnit::Microsecond => Some(utc.timestamp_micros()),
            TimeUnit::Nanosecond => utc.timestamp_nanos_opt(),
        };
        out.push(Some(v.ok_or_else(|| (i, "the timestamp is out of range".to_string()))?));
    }
    let arr = arrow::array::Int64Array::from(out);
    cast_with_options(&arr, to, &strict()).map_err(|e| (0, e.to_string()))
}

/// A column of `n` NULLs of type `to` (a column the file does not have).
pub fn nulls(to: &DataType, n: usize) -> ArrayRef {
    new_null_array(to, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, TimestampMillisecondArray};

    fn texts(v: &[Option<&str>]) -> StringArray {
        StringArray::from(v.to_vec())
    }

    #[test]
    fn decimals_round_half_away_from_zero_and_overflow_is_an_error() {
        let a = convert(
            &texts(&[
                Some("1.509"),
                Some("1.999"),
                Some("-1.505"),
                Some("1.504"),
                Some("7"),
                None,
            ]),
            &DataType::Decimal128(10, 2),
            &CsvOptions::default(),
        )
        .unwrap();
        let a = a.as_any().downcast_ref::<Decimal128Array>().unwrap();
        let v: Vec<Option<i128>> = a.iter().collect();
        assert_eq!(v, vec![Some(151), Some(200), Some(-151), Some(150), Some(700), None]);
        let (row, why) = convert(
            &texts(&[Some("1"), Some("123456789.5")]),
            &DataType::Decimal128(10, 2),
            &CsvOptions::default(),
        )
        .unwrap_err();
        assert_eq!(row, 1);
        assert!(
            why.contains("9 digit(s) before the decimal point") && why.contains("(8)"),
            "{why}"
        );
        let (row, why) = convert(
            &texts(&[Some("x1")]),
            &DataType::Decimal128(10, 2),
            &CsvOptions::default(),
        )
        .unwrap_err();
        assert_eq!(row, 0);
        assert!(why.contains("not a number") && !why.contains("x1"), "{why}");
    }

    #[test]
    fn formats_nulls_and_delimiters() {
        let opts = CsvOptions {
            date_format: Some("%d.%m.%Y".into()),
            timestamp_format: Some("%d.%m.%Y %H:%M".into()),
            null: Some("NA".into()),
            ..Default::default()
        };
        let d = convert(&texts(&[Some("25.11.2025"), None, Some(" ")]), &DataType::Date32, &opts).unwrap();
        assert_eq!(d.as_any().downcast_ref::<Date32Array>().unwrap().value(0), 20417);
        assert!(d.is_null(1) && d.is_null(2));
        let t = convert(
            &texts(&[Some("25.11.2025 10:30")]),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            &opts,
        )
        .unwrap();
        let t = t.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!(t.value(0), 1_764_066_600_000);
        let (row, why) = convert(&texts(&[Some("2025-11-25")]), &DataType::Date32, &opts).unwrap_err();
        assert_eq!((row, why.contains("%d.%m.%Y")), (0, true));
        // with a null text, an empty field of a text column is the empty string
        let s = convert(&texts(&[Some("")]), &DataType::Utf8, &opts).unwrap();
        assert!(s.is_valid(0));
        assert_eq!(detect_delimiter(b"a;b;c\n", b'"'), b';');
        assert_eq!(detect_delimiter(b"a\tb,c\td\n", b'"'), b'\t');
        assert_eq!(detect_delimiter(b"\"a;b\",c\n", b'"'), b',');
        assert_eq!(detect_delimiter(b"single\n", b'"'), b',');
        assert_eq!(parse_char("--delimiter", "tab").unwrap(), b'\t');
        assert!(parse_char("--delimiter", ";;").is_err());
    }
}
