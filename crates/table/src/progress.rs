//! Progress of long operations: one event type for every operation that reports as it goes
//! (ingest, optimize, verify, the tier mover, backup, restore, backup verify).

/// How far a long operation has come. Counts only grow within one phase; a total of 0 means
/// "not known yet" (a progress bar shows a spinner then).
///
/// ```
/// use stratalake_table::progress::Progress;
/// let p = Progress { operation: "backup", phase: "copying", files_done: 3, files_total: 4, ..Default::default() };
/// assert_eq!(p.fraction(), Some(0.75));
/// assert_eq!(p.to_string(), "backup: copying 3/4 files");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The operation: `ingest`, `optimize`, `verify`, `tier run`, `backup`, `restore`,
    /// `backup verify`.
    pub operation: &'static str,
    /// What it is doing now (`reading`, `copying`, `checking`, ...).
    pub phase: &'static str,
    /// Files (or objects) done.
    pub files_done: u64,
    /// Files (or objects) in all; 0 when not known.
    pub files_total: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in all; 0 when not known.
    pub bytes_total: u64,
    /// Rows done, for operations that count rows (ingest).
    pub rows_done: u64,
}

impl Progress {
    /// The share done, by bytes when their total is known, else by files.
    pub fn fraction(&self) -> Option<f64> {
        if self.bytes_total > 0 {
            Some((self.bytes_done as f64 / self.bytes_total as f64).min(1.0))
        } else if self.files_total > 0 {
            Some((self.files_done as f64 / self.files_total as f64).min(1.0))
        } else {
            None
        }
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.operation, self.phase)?;
        if self.files_total > 0 {
            write!(f, " {}/{} files", self.files_done, self.files_total)?;
        }
        if self.bytes_total > 0 {
            write!(f, " {}/{} bytes", self.bytes_done, self.bytes_total)?;
        }
        if self.rows_done > 0 {
            write!(f, " {} rows", self.rows_done)?;
        }
        Ok(())
    }
}

/// Where an operation reports its [`Progress`]: called from the operation's tasks, possibly
/// from several threads at once, and quickly (no blocking work inside).
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// A [`ProgressFn`] that ignores every event.
pub fn ignore(_: Progress) {}
