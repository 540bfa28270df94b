//! Values between Arrow and the PostgreSQL wire: the type a column is announced as, rows in
//! PostgreSQL's text or binary format, and parameters (text or binary) read into the Arrow
//! types the statement's plan expects.
//!
//! Written here rather than taken from `arrow-pg` (datafusion-postgres): that crate reads and
//! writes NUMERIC through `rust_decimal`, which holds 28 digits, while a lake's DECIMAL columns
//! hold up to 38 (and DECIMAL256 76); here NUMERIC goes digit for digit.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use stratalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use stratalake::arrow::compute::cast;
use stratalake::arrow::datatypes::{
    DataType, Date32Type, Date64Type, DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
    DurationSecondType, Field, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Schema, SchemaRef,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type,
};
use stratalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use stratalake::datafusion::scalar::ScalarValue;

use crate::auth::error;

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

/// The PostgreSQL type a column of `t` is announced as: the one `pg_catalog.pg_attribute`
/// names for it ([`stratalake::query::pg_catalog::pg_type_oid`]), so a client that describes a
/// table and one that reads it agree.
pub(crate) fn pg_type(t: &DataType) -> Type {
    Type::from_oid(stratalake::query::pg_catalog::pg_type_oid(t)).unwrap_or(Type::TEXT)
}

/// The columns of `schema` as announced to the client, each in the format it asked for
/// (`None`: text, as in the simple query protocol).
pub(crate) fn fields(schema: &SchemaRef, format: Option<&Format>) -> Arc<Vec<FieldInfo>> {
    Arc::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let format = format.map_or(FieldFormat::Text, |fm| fm.format_for(i));
                FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format)
            })
            .collect(),
    )
}

/// The columns as announced for a description: a column without a type (`SELECT $1`) is text.
pub(crate) fn announced(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Null => Arc::new(Field::new(f.name(), DataType::Utf8, true)),
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// `batch` with the columns flagged in `as_text` as text (what [`announced`] said they are).
pub(crate) fn texts(batch: &RecordBatch, as_text: &[bool]) -> PgWireResult<RecordBatch> {
    let fail = |e: String| error("ERROR", "XX000", format!("cannot send the result as text: {e}"));
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (i, (f, c)) in batch.schema().fields().iter().zip(batch.columns()).enumerate() {
        if as_text.get(i).copied().unwrap_or(false) {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(cast(c, &DataType::Utf8).map_err(|e| fail(e.to_string()))?);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| fail(e.to_string()))
}

/// Every row of `batch` in the formats of `fields`.
pub(crate) fn encode(fields: &[FieldInfo], batch: &RecordBatch) -> PgWireResult<Vec<DataRow>> {
    if batch.num_columns() > i16::MAX as usize {
        return Err(error(
            "ERROR",
            "54011",
            format!(
                "a result of {} columns is more than PostgreSQL's limit of {}",
                batch.num_columns(),
                i16::MAX
            ),
        ));
    }
    // dictionary-encoded columns go as their values
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Dictionary(_, v) => cast(c, v),
            _ => Ok(c.clone()),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| error("ERROR", "XX000", format!("cannot send the result: {e}")))?;
    let options = FormatOptions::new()
        .with_null("")
        .with_date_format(Some("%Y-%m-%d"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
    let formatters = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error("ERROR", "XX000", format!("cannot send the result: {e}")))?;
    // logical nulls: a NullArray has no validity buffer, yet holds only nulls
    let nulls: Vec<_> = columns.iter().map(|c| c.logical_nulls()).collect();
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut buf = BytesMut::new();
    for row in 0..batch.num_rows() {
        for (((col, f), field), nulls) in columns.iter().zip(&formatters).zip(fields).zip(&nulls) {
            if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                buf.put_i32(-1);
                continue;
            }
            let at = buf.len();
            buf.put_i32(0);
            if field.format() == FieldFormat::Binary {
                binary(col.as_ref(), row, &f.value(row).to_string(), &mut buf)?;
            } else if let Some(t) = interval_text(col.as_ref(), row) {
                buf.put_slice(t.as_bytes());
            } else {
                buf.put_slice(text(col.data_type(), f.value(row).to_string()).as_bytes());
            }
            let len = (buf.len() - at - 4) as i32;
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        rows.push(DataRow::new(buf.split(), columns.len() as i16));
    }
    Ok(rows)
}

/// Arrow's text of a value in PostgreSQL's spelling where the two differ.
fn text(t: &DataType, s: String) -> String {
    match t {
        DataType::Boolean => if s == "true" { "t" } else { "f" }.into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            format!("\\x{s}")
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => match s.as_str() {
            "inf" => "Infinity".into(),
            "-inf" => "-Infinity".into(),
            _ => s,
        },
        _ => s,
    }
}

/// The value at `row` of `col` in PostgreSQL's binary format of [`pg_type`]; `shown` is its text
/// (what NUMERIC and the types sent as text are written from).
fn binary(col: &dyn Array, row: usize, shown: &str, out: &mut BytesMut) -> PgWireResult<()> {
    match col.data_type() {
        DataType::Boolean => out.put_u8(col.as_boolean().value(row) as u8),
        DataType::Int8 => out.put_i16(col.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => out.put_i16(col.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => out.put_i16(col.as_primitive::<UInt8Type>().value(row).into()),
        DataType::Int32 => out.put_i32(col.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => out.put_i32(col.as_primitive::<UInt16Type>().value(row).into()),
        DataType::Int64 => out.put_i64(col.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => out.put_i64(col.as_primitive::<UInt32Type>().value(row).into()),
        DataType::Float16 => out.put_f32(col.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => out.put_f32(col.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => out.put_f64(col.as_primitive::<Float64Type>().value(row)),
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => out.put_slice(
            &numeric_binary(shown)
                .ok_or_else(|| error("ERROR", "XX000", format!("cannot send {} as NUMERIC", col.data_type())))?,
        ),
        DataType::Utf8 => out.put_slice(col.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => out.put_slice(col.as_string::<i64>().value(row).as_bytes()),
        DataType::Utf8View => out.put_slice(col.as_string_view().value(row).as_bytes()),
        DataType::Binary => out.put_slice(col.as_binary::<i32>().value(row)),
        DataType::LargeBinary => out.put_slice(col.as_binary::<i64>().value(row)),
        DataType::BinaryView => out.put_slice(col.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => out.put_slice(col.as_fixed_size_binary().value(row)),
        DataType::Date32 => out.put_i32(days(col.as_primitive::<Date32Type>().value(row).into())?),
        DataType::Date64 => out.put_i32(days(
            col.as_primitive::<Date64Type>().value(row).div_euclid(86_400_000),
        )?),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => col
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .checked_mul(1_000_000),
                TimeUnit::Millisecond => col
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .checked_mul(1_000),
                TimeUnit::Microsecond => Some(col.as_primitive::<TimestampMicrosecondType>().value(row)),
                TimeUnit::Nanosecond => Some(
                    col.as_primitive::<TimestampNanosecondType>()
                        .value(row)
                        .div_euclid(1_000),
                ),
            };
            let v = v
                .and_then(|v| v.checked_sub(PG_EPOCH_MICROS))
                .ok_or_else(|| error("ERROR", "22008", "timestamp out of range for PostgreSQL"))?;
            out.put_i64(v);
        }
        DataType::Time32(TimeUnit::Second) => {
            out.put_i64(i64::from(col.as_primitive::<Time32SecondType>().value(row)) * 1_000_000)
        }
        DataType::Time32(_) => out.put_i64(i64::from(col.as_primitive::<Time32MillisecondType>().value(row)) * 1_000),
        DataType::Time64(TimeUnit::Nanosecond) => {
            out.put_i64(col.as_primitive::<Time64NanosecondType>().value(row) / 1_000)
        }
        DataType::Time64(_) => out.put_i64(col.as_primitive::<Time64MicrosecondType>().value(row)),
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) = interval_parts(col, row)
                .ok_or_else(|| error("ERROR", "22008", "interval out of range for PostgreSQL"))?;
            out.put_i64(micros);
            out.put_i32(days);
            out.put_i32(months);
        }
        _ => out.put_slice(shown.as_bytes()),
    }
    Ok(())
}

/// An interval or duration value as PostgreSQL holds it: months, days, microseconds.
fn interval_parts(col: &dyn Array, row: usize) -> Option<(i32, i32, i64)> {
    Some(match col.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => (col.as_primitive::<IntervalYearMonthType>().value(row), 0, 0),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = col.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, i64::from(v.milliseconds) * 1_000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = col.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds / 1_000)
        }
        DataType::Duration(unit) => {
            let micros = match unit {
                TimeUnit::Second => col
                    .as_primitive::<DurationSecondType>()
                    .value(row)
                    .checked_mul(1_000_000)?,
                TimeUnit::Millisecond => col
                    .as_primitive::<DurationMillisecondType>()
                    .value(row)
                    .checked_mul(1_000)?,
                TimeUnit::Microsecond => col.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => col.as_primitive::<DurationNanosecondType>().value(row) / 1_000,
            };
            (0, 0, micros)
        }
        _ => return None,
    })
}

/// An interval or duration in PostgreSQL's text (`1 year 2 mons 3 days 04:05:06.5`), which
/// drivers parse; `None` for other types.
fn interval_text(col: &dyn Array, row: usize) -> Option<String> {
    if !matches!(col.data_type(), DataType::Interval(_) | DataType::Duration(_)) {
        return None;
    }
    let Some((months, days, micros)) = interval_parts(col, row) else {
        return Some("interval out of range".into());
    };
    Some(interval_words(months, days, micros))
}

fn interval_words(months: i32, days: i32, micros: i64) -> String {
    let plural = |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    if years != 0 {
        parts.push(plural(years.into(), "year", "years"));
    }
    if months != 0 {
        parts.push(plural(months.into(), "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days.into(), "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        let (h, rest) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (sec, frac) = (rest / 1_000_000, rest % 1_000_000);
        let mut t = format!("{sign}{h:02}:{min:02}:{sec:02}");
        if frac != 0 {
            t.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

fn days(since_1970: i64) -> PgWireResult<i32> {
    i32::try_from(since_1970 - PG_EPOCH_DAYS).map_err(|_| error("ERROR", "22008", "date out of range for PostgreSQL"))
}

/// A decimal written in digits (`-123.4500`, `18446744073709551615`) in PostgreSQL's binary
/// NUMERIC format: digit groups of base 10 000 around the decimal point, the weight of the first
/// group, the sign and the number of decimal places shown.
fn numeric_binary(text: &str) -> Option<Vec<u8>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dscale = u16::try_from(frac.len()).ok()?;
    let int = int.trim_start_matches('0');
    let group = |s: &[u8]| s.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0'));
    let mut groups: Vec<i16> = Vec::new();
    let lead = int.len() % 4;
    if lead > 0 {
        groups.push(group(&int.as_bytes()[..lead]));
    }
    groups.extend(int.as_bytes()[lead..].chunks(4).map(group));
    let mut weight = groups.len() as i32 - 1;
    for chunk in frac.as_bytes().chunks(4) {
        let mut g = group(chunk);
        for _ in chunk.len()..4 {
            g *= 10;
        }
        groups.push(g);
    }
    // no leading or trailing zero groups
    let first = groups.iter().position(|g| *g != 0);
    let (groups, negative) = match first {
        None => (Vec::new(), false),
        Some(i) => {
            weight -= i as i32;
            let last = groups.iter().rposition(|g| *g != 0).unwrap_or(i);
            (groups[i..=last].to_vec(), negative)
        }
    };
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&i16::try_from(groups.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&i16::try_from(weight).ok()?.to_be_bytes());
    out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

/// A binary NUMERIC in digits (`-123.4500`); `None` for NaN, infinities or malformed bytes.
fn numeric_text(b: &[u8]) -> Option<String> {
    let word = |i: usize| b.get(i..i + 2).map(|w| i16::from_be_bytes([w[0], w[1]]));
    let (n, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    if n < 0 || dscale < 0 || b.len() != 8 + 2 * n as usize || !matches!(sign, 0 | 0x4000) {
        return None;
    }
    // no more digits than a DECIMAL256 holds (76) on either side of the point: a few bytes
    // must not become a huge string
    if n > 40 || !(-20..=20).contains(&weight) || dscale > 76 {
        return None;
    }
    let groups: Vec<i16> = (0..n as usize).map(|i| word(8 + 2 * i)).collect::<Option<_>>()?;
    if groups.iter().any(|g| !(0..10_000).contains(g)) {
        return None;
    }
    let mut int = String::new();
    for k in 0..=i32::from(weight).max(-1) {
        let g = groups.get(k as usize).copied().unwrap_or(0);
        if int.is_empty() {
            if g != 0 {
                int = g.to_string();
            }
        } else {
            int.push_str(&format!("{g:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut k = i32::from(weight) + 1;
    while frac.len() < dscale as usize {
        let g = if k < 0 {
            0
        } else {
            groups.get(k as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{g:04}"));
        k += 1;
    }
    frac.truncate(dscale as usize);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

/// Reads the parameters a client bound to a statement.
pub(crate) struct Params<'a> {
    /// The bytes of each parameter (`None`: NULL).
    pub values: &'a [Option<bytes::Bytes>],
    /// The type the client declared for each (at Parse), if any.
    pub declared: &'a [Option<Type>],
    /// The format of each (Bind's format codes).
    pub format: &'a Format,
    /// The type the statement's plan expects for each (`None`: left open).
    pub wanted: &'a [Option<DataType>],
}

impl Params<'_> {
    /// Every parameter as a value of the type the plan expects. An error names the parameter
    /// (`$2`) and what was wrong, never its value.
    pub fn read(&self) -> PgWireResult<Vec<ScalarValue>> {
        if self.values.len() != self.wanted.len() {
            return Err(error(
                "ERROR",
                "08P01",
                format!(
                    "bind message supplies {} parameters, but the statement requires {}",
                    self.values.len(),
                    self.wanted.len()
                ),
            ));
        }
        (0..self.values.len()).map(|i| self.one(i)).collect()
    }

    fn one(&self, i: usize) -> PgWireResult<ScalarValue> {
        let n = i + 1;
        let wanted = self.wanted[i].as_ref();
        let declared = self.declared.get(i).cloned().flatten();
        let Some(bytes) = &self.values[i] else {
            return Ok(match wanted {
                Some(t) => ScalarValue::try_from(t).unwrap_or(ScalarValue::Null),
                None => ScalarValue::Null,
            });
        };
        let value = if self.format.is_binary(i) {
            let t = declared
                .or_else(|| wanted.map(pg_type))
                .ok_or_else(|| error("ERROR", "42P18", format!("parameter ${n} is sent in binary but has no type: declare its type at Parse, or send it as text")))?;
            from_binary(n, &t, bytes)?
        } else {
            let s = std::str::from_utf8(bytes)
                .map_err(|_| error("ERROR", "22021", format!("parameter ${n} is not valid UTF-8")))?;
            match wanted {
                // bytea's text form: \x and hex digits
                Some(DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => {
                    ScalarValue::Binary(Some(bytea_text(s).ok_or_else(|| {
                        error(
                            "ERROR",
                            "22P02",
                            format!("parameter ${n}: bytea text must be \\x followed by hex digits"),
                        )
                    })?))
                }
                _ => ScalarValue::Utf8(Some(s.to_string())),
            }
        };
        match wanted {
            Some(t) if &value.data_type() != t => cast_param(n, value, t),
            _ => Ok(value),
        }
    }
}

/// A value cast to the type its parameter must have; a cast that would change the value (lose
/// decimal places, a fraction, precision, the time of a timestamp) fails.
fn cast_param(n: usize, value: ScalarValue, to: &DataType) -> PgWireResult<ScalarValue> {
    let scale = match to {
        DataType::Decimal32(_, s)
        | DataType::Decimal64(_, s)
        | DataType::Decimal128(_, s)
        | DataType::Decimal256(_, s) => Some(*s),
        _ => None,
    };
    if let (ScalarValue::Utf8(Some(s)), Some(scale)) = (&value, scale) {
        let places = s
            .trim()
            .split_once('.')
            .map_or(0, |(_, f)| f.trim_end_matches('0').len());
        if places > scale.max(0) as usize {
            return Err(error(
                "ERROR",
                "22003",
                format!(
                    "parameter ${n} has {places} decimal places, more than the {to} it is compared with or stored in holds"
                ),
            ));
        }
    }
    let from = value.data_type();
    let cast = value.cast_to(to).map_err(|_| {
        error(
            "ERROR",
            "22P02",
            format!("parameter ${n}: a {} value cannot be read as {to}", pg_name(&from)),
        )
    })?;
    // a typed parameter must come back unchanged (text was checked above; its spelling does
    // not survive a round trip: `1.5` comes back `1.50`)
    if from != DataType::Utf8 && !value.is_null() && cast.cast_to(&from).ok().as_ref() != Some(&value) {
        return Err(error(
            "ERROR",
            "22003",
            format!("parameter ${n}: its {} value would change as {to}", pg_name(&from)),
        ));
    }
    Ok(cast)
}

fn pg_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "text".into(),
        t => t.to_string(),
    }
}

fn bytea_text(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A parameter in PostgreSQL's binary format of `t`.
fn from_binary(n: usize, t: &Type, b: &[u8]) -> PgWireResult<ScalarValue> {
    let size = |len: usize| -> PgWireResult<()> {
        if b.len() == len {
            Ok(())
        } else {
            Err(error(
                "ERROR",
                "22P03",
                format!("parameter ${n}: a binary {} is {len} bytes, not {}", t.name(), b.len()),
            ))
        }
    };
    let arr = |len: usize| -> PgWireResult<&[u8]> { size(len).map(|()| &b[..len]) };
    Ok(match *t {
        Type::BOOL => {
            size(1)?;
            ScalarValue::Boolean(Some(b[0] != 0))
        }
        Type::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(arr(2)?.try_into().expect("2")))),
        Type::INT4 => ScalarValue::Int32(Some(i32::from_be_bytes(arr(4)?.try_into().expect("4")))),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(arr(8)?.try_into().expect("8")))),
        Type::OID => ScalarValue::Int64(Some(u32::from_be_bytes(arr(4)?.try_into().expect("4")).into())),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(arr(4)?.try_into().expect("4")))),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(arr(8)?.try_into().expect("8")))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => ScalarValue::Utf8(Some(
            String::from_utf8(b.to_vec())
                .map_err(|_| error("ERROR", "22021", format!("parameter ${n} is not valid UTF-8")))?,
        )),
        Type::BYTEA => ScalarValue::Binary(Some(b.to_vec())),
        Type::DATE => {
            let d = i32::from_be_bytes(arr(4)?.try_into().expect("4"));
            let d = i32::try_from(i64::from(d) + PG_EPOCH_DAYS)
                .map_err(|_| error("ERROR", "22008", format!("parameter ${n}: date out of range")))?;
            ScalarValue::Date32(Some(d))
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let v = i64::from_be_bytes(arr(8)?.try_into().expect("8"))
                .checked_add(PG_EPOCH_MICROS)
                .ok_or_else(|| error("ERROR", "22008", format!("parameter ${n}: timestamp out of range")))?;
            let tz = (*t == Type::TIMESTAMPTZ).then(|| Arc::from("+00:00"));
            ScalarValue::TimestampMicrosecond(Some(v), tz)
        }
        Type::NUMERIC => {
            let s = numeric_text(b)
                .ok_or_else(|| error("ERROR", "22P03", format!("parameter ${n}: not a finite binary NUMERIC")))?;
            ScalarValue::Utf8(Some(s))
        }
        _ => {
            return Err(error(
                "ERROR",
                "0A000",
                format!(
                    "parameter ${n}: the binary format of type {} is not supported; send it as text",
                    t.name()
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_spellings_of_values() {
        assert_eq!(text(&DataType::Boolean, "true".into()), "t");
        assert_eq!(text(&DataType::Boolean, "false".into()), "f");
        assert_eq!(text(&DataType::Binary, "00ff".into()), "\\x00ff");
        assert_eq!(text(&DataType::Float64, "inf".into()), "Infinity");
        assert_eq!(text(&DataType::Utf8, "inf".into()), "inf");
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)), Type::NUMERIC);
    }

    #[test]
    fn numerics_go_digit_for_digit_both_ways() {
        for s in [
            "0",
            "0.00",
            "1",
            "-1",
            "10000",
            "123.4500",
            "-0.0001",
            "0.00012",
            "99999999999999999999999999999999999999",
            "-12345678901234567890123456789.123456789",
            "18446744073709551615",
            "100000000.000000001",
        ] {
            let b = numeric_binary(s).unwrap_or_else(|| panic!("{s}"));
            let back = numeric_text(&b).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(back, s, "{s}");
        }
        // PostgreSQL's own bytes for 123.45: 2 groups, weight 0, positive, scale 2, 123 4500
        assert_eq!(
            numeric_binary("123.45").unwrap(),
            vec![0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94]
        );
        for bad in ["", "-", "1e5", "1.2.3", "abc", "NaN"] {
            assert!(numeric_binary(bad).is_none(), "{bad}");
        }
        // NaN, a digit out of range, a wrong length
        assert!(numeric_text(&[0, 0, 0, 0, 0xc0, 0, 0, 0]).is_none());
        assert!(numeric_text(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_none());
        assert!(numeric_text(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_none());
    }

    fn read(
        values: Vec<Option<&[u8]>>,
        declared: Vec<Option<Type>>,
        binary: bool,
        wanted: Vec<Option<DataType>>,
    ) -> PgWireResult<Vec<ScalarValue>> {
        let values: Vec<Option<bytes::Bytes>> = values
            .into_iter()
            .map(|v| v.map(bytes::Bytes::copy_from_slice))
            .collect();
        let format = if binary {
            Format::UnifiedBinary
        } else {
            Format::UnifiedText
        };
        Params {
            values: &values,
            declared: &declared,
            format: &format,
            wanted: &wanted,
        }
        .read()
    }

    fn code(e: pgwire::error::PgWireError) -> String {
        match e {
            pgwire::error::PgWireError::UserError(i) => format!("{} {}", i.code, i.message),
            e => e.to_string(),
        }
    }

    #[test]
    fn parameters_are_read_into_the_types_the_plan_wants() {
        let v = read(
            vec![Some(b"42"), Some(b"12.50"), None, Some(b"\\x00ff"), Some(b"2024-02-29")],
            vec![None; 5],
            false,
            vec![
                Some(DataType::Int64),
                Some(DataType::Decimal128(10, 2)),
                Some(DataType::Utf8),
                Some(DataType::Binary),
                Some(DataType::Date32),
            ],
        )
        .unwrap();
        assert_eq!(v[0], ScalarValue::Int64(Some(42)));
        assert_eq!(v[1], ScalarValue::Decimal128(Some(1250), 10, 2));
        assert_eq!(v[2], ScalarValue::Utf8(None));
        assert_eq!(v[3], ScalarValue::Binary(Some(vec![0, 255])));
        assert_eq!(v[4], ScalarValue::Date32(Some(19782)));

        let v = read(
            vec![Some(&7i16.to_be_bytes()), Some(&numeric_binary("-3.25").unwrap())],
            vec![Some(Type::INT2), Some(Type::NUMERIC)],
            true,
            vec![Some(DataType::Int64), Some(DataType::Decimal128(10, 2))],
        )
        .unwrap();
        assert_eq!(
            v,
            vec![ScalarValue::Int64(Some(7)), ScalarValue::Decimal128(Some(-325), 10, 2)]
        );
    }

    #[test]
    fn bad_parameters_are_named_and_never_quoted() {
        let e = code(
            read(
                vec![Some(b"12.345")],
                vec![None],
                false,
                vec![Some(DataType::Decimal128(10, 2))],
            )
            .unwrap_err(),
        );
        assert!(e.starts_with("22003 parameter $1 has 3 decimal places"), "{e}");
        let e = code(
            read(
                vec![Some(b"secret-ish")],
                vec![None],
                false,
                vec![Some(DataType::Int64)],
            )
            .unwrap_err(),
        );
        assert!(e.starts_with("22P02 parameter $1"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = code(
            read(
                vec![Some(&[1, 2, 3])],
                vec![Some(Type::INT4)],
                true,
                vec![Some(DataType::Int32)],
            )
            .unwrap_err(),
        );
        assert!(
            e.starts_with("22P03 parameter $1: a binary int4 is 4 bytes, not 3"),
            "{e}"
        );
        let e = code(read(vec![Some(&[0xff, 0xfe])], vec![None], false, vec![None]).unwrap_err());
        assert!(e.starts_with("22021"), "{e}");
        let e = code(read(vec![Some(b"1"), Some(b"2")], vec![], false, vec![None]).unwrap_err());
        assert!(
            e.starts_with("08P01 bind message supplies 2 parameters, but the statement requires 1"),
            "{e}"
        );
        let e = code(read(vec![Some(&[0; 16])], vec![Some(Type::UUID)], true, vec![None]).unwrap_err());
        assert!(e.starts_with("0A000"), "{e}");
        let e = code(read(vec![Some(&[0; 4])], vec![None], true, vec![None]).unwrap_err());
        assert!(e.starts_with("42P18"), "{e}");
    }
}
