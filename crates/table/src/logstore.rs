//! The log store: the one writer of numbered log objects. Table commits, catalog commits and
//! audit records are all written by a [`LogStore`], whose documentation states the contract;
//! the writers differ only in their [`LogEntry`] (what an entry holds, what a lost race means to
//! it). Restored commits (`log::try_write`) and first versions (`Table::create_log`) are single
//! attempts through [`LogStore::create_at`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::store::Store;
use crate::{Error, Result};

/// How writers of a lake retry lost races, and how long a write may keep staged files
/// before committing them.
#[derive(Clone, Debug)]
pub struct CommitPolicy {
    /// Writers keep retrying lost races (commits that do not conflict) for this long, then give
    /// up with a conflict. Bounded by time, not attempts: under heavy contention a writer is
    /// slow, never starved by a count.
    pub retry_for: Duration,
    /// The longest a write may take from finishing its first data file to its commit. Vacuum
    /// never deletes an unreferenced object younger than this, whatever retention it is given,
    /// and a commit whose oldest staged file is older than this minus [`CLOCK_SKEW`] is refused
    /// (nothing committed) instead of risking files that a vacuum already deleted.
    pub staging_grace: Duration,
    /// The wait after the first lost race is random in `0..=backoff_base` (full jitter); each
    /// further lost race doubles the window, up to [`CommitPolicy::backoff_cap`].
    pub backoff_base: Duration,
    /// The largest window a wait after a lost race is drawn from (see [`Retry`] for why the
    /// default is 2 ms).
    pub backoff_cap: Duration,
}

/// Clock difference between writers, vacuum and the store that [`CommitPolicy::staging_grace`]
/// allows for.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The smallest staging grace a lake may configure.
pub const MIN_STAGING_GRACE: Duration = Duration::from_secs(15 * 60);

impl Default for CommitPolicy {
    fn default() -> Self {
        Self {
            retry_for: Duration::from_secs(120),
            staging_grace: Duration::from_secs(6 * 3600),
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(2),
        }
    }
}

impl CommitPolicy {
    /// The staging grace in milliseconds.
    pub fn staging_grace_ms(&self) -> i64 {
        self.staging_grace.as_millis() as i64
    }

    /// The age (ms) past which a commit refuses its staged files.
    pub fn staging_limit_ms(&self) -> i64 {
        self.staging_grace.saturating_sub(CLOCK_SKEW).as_millis() as i64
    }
}

/// The one retry policy of lost races, for every log: jittered exponential backoff with a cap,
/// for at most [`CommitPolicy::retry_for`] (the lake's `commit_retry`). After the `n`th lost race
/// the writer waits a random time in `0..=min(backoff_cap, backoff_base × 2^(n-1))`, never past
/// the deadline, then tries again; once the deadline has passed it gives up ([`Retry::gave_up`]).
///
/// The cap is small on purpose (2 ms by default, with a 1 ms base). A writer that lost a race
/// goes straight to the head of the log (it reads the entries it lost to), so there is no herd to
/// spread out; the jitter only breaks lockstep. A cap of 256 ms was measured to starve: 16
/// writers on one local folder had a worst append of 4.4 s with it and 0.6 s with 2 ms, and
/// served 85 against 113 commits/s (`docs/benchmarks.md`, "Commits under contention").
#[derive(Debug)]
pub struct Retry {
    started: Instant,
    limit: Duration,
    base: Duration,
    cap: Duration,
    attempts: u32,
}

impl Retry {
    /// Start counting now.
    pub fn new(policy: &CommitPolicy) -> Self {
        Self {
            started: Instant::now(),
            limit: policy.retry_for,
            base: policy.backoff_base,
            cap: policy.backoff_cap,
            attempts: 0,
        }
    }

    /// Lost races so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the first attempt.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Count a lost race and wait before the next attempt. `false` (without waiting) once the
    /// time is up.
    pub async fn wait(&mut self) -> bool {
        self.attempts += 1;
        let Some(left) = self.limit.checked_sub(self.started.elapsed()).filter(|l| !l.is_zero()) else {
            return false;
        };
        let window = self.window().as_micros() as u64;
        let pause = Duration::from_micros(random_u64() % (window + 1));
        tokio::time::sleep(pause.min(left)).await;
        true
    }

    /// The longest wait after the lost races counted so far: `base × 2^(n-1)`, at most the cap.
    fn window(&self) -> Duration {
        let doublings = self.attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The error of a writer that gave up.
    pub fn gave_up(&self, log: &str, version: u64) -> Error {
        Error::Conflict {
            table: log.to_string(),
            version,
            reason: format!(
                "gave up after {} lost races in {:.1} s of contention",
                self.attempts,
                self.started.elapsed().as_secs_f64()
            ),
        }
    }
}

pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Whether the log object at `path` holds a commit (table or catalog) whose `info.token` is
/// `token`; `None` when it does not decode.
pub(crate) fn carries_token(path: &str, found: &[u8], token: &str) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Tokened {
        info: Token,
    }
    #[derive(serde::Deserialize)]
    struct Token {
        token: String,
    }
    crate::logfile::decode::<Tokened>(path, found)
        .ok()
        .map(|c| c.info.token == token)
}

/// What [`create`] found.
#[derive(Debug)]
pub enum Created {
    /// The object holds our body.
    Ours,
    /// Another writer created it first; its bytes.
    Theirs(Bytes),
}

/// Create the log object `path` (relative to the store root) holding `body`, if no one else has
/// (see the module documentation for the contract). `is_ours` tells our own body from another
/// writer's in what the store holds: `Some(true)` ours, `Some(false)` theirs, `None` when it
/// cannot tell (the object does not decode); whose it is then stays unknown
/// ([`Error::CommitUnknown`]), never taken for someone else's.
pub async fn create(
    store: &Store,
    path: &str,
    body: Bytes,
    is_ours: impl Fn(&[u8]) -> Option<bool>,
) -> Result<Created> {
    let unknown = |source: Error| Error::CommitUnknown {
        path: store.path(path).to_string(),
        source: Box::new(source),
    };
    let undecodable = || Error::CorruptLog {
        path: path.to_string(),
        reason: "read back after its create, it does not decode: whether it is ours is unknown".into(),
    };
    let classify = |b: Bytes| match is_ours(&b) {
        Some(true) => Ok(Created::Ours),
        Some(false) => Ok(Created::Theirs(b)),
        None => Err(unknown(undecodable())),
    };
    match store.put_create(path, body).await {
        Ok(true) => Ok(Created::Ours),
        Ok(false) => match store.get_opt(path).await {
            Ok(Some(b)) => classify(b),
            // It existed a moment ago and cannot be read now: whose it is stays unknown.
            Ok(None) => Err(unknown(Error::CorruptLog {
                path: path.to_string(),
                reason: "existed when created and was gone when read back".into(),
            })),
            Err(e) => Err(unknown(e)),
        },
        // refused before anything could be written: no bucket, no credentials, unsafe store
        Err(e @ (Error::UnsafeStore { .. } | Error::StoreConfig { .. })) => Err(e),
        Err(e) => {
            // The store may have applied the create before failing: look before reporting.
            match store.get_opt(path).await {
                Ok(Some(b)) => classify(b),
                Ok(None) if store.is_synchronous() || e.is_definite_refusal() => Err(e),
                Ok(None) | Err(_) => Err(unknown(e)),
            }
        }
    }
}

/// A numbered log on a store: entry `n` of the log in `dir` is the object `<dir>/<n as 20
/// digits>.json`, created once and never changed. Table logs, the catalog log and the audit log
/// are each one; nothing else writes such objects.
///
/// Contract (what the store must give, and what every writer can rely on):
/// * **Atomic create-if-absent**: an entry is created whole or not at all, and at most one writer
///   ever creates a number (object_store's `PutMode::Create`: `If-None-Match: *` on S3, a
///   hard link on a local folder, a lock in memory). A store without it is refused with
///   [`Error::UnsafeStore`]. Entries are therefore totally ordered by their numbers.
/// * **Lost race**: when another writer holds the number, ours can never land there. The writer
///   is handed the winner's bytes ([`LogEntry::lost`]): it decides whether the winner
///   invalidates its entry (a table commit's conflict rules, [`crate::conflict`]) and otherwise
///   tries again at a later number, after the wait of [`Retry`].
/// * **Ambiguous errors**: a create that fails may still have been applied. The store reads the
///   number back: what it finds there is ours or theirs, as above. When nothing is there, the
///   outcome is known only on stores that answer synchronously (a local folder, memory) or
///   after an outright refusal (no space, no permission, not authenticated): then the error is
///   returned as is and nothing was written. On a remote store the request may still be
///   applied later, and the error is [`Error::CommitUnknown`], the one error after which an
///   entry may have landed.
/// * **Idempotency by a commit token**: every logical entry carries a token its writer
///   recognises ([`LogEntry::is_ours`]): `info.token` of table and catalog commits (a fresh
///   UUID per logical commit, kept across attempts), the hash of an audit record, the bytes of a
///   restored commit. So an attempt whose answer was lost (object_store clients retry requests)
///   and that is found at its number by the read-back or a lost race counts once, never twice,
///   and is never taken for someone else's. An entry found that does not decode leaves whose it
///   is unknown ([`Error::CommitUnknown`]).
/// * **Bytes**: the store writes the bytes it is given and never changes them; framing
///   (`log::encode`) is the writer's.
#[derive(Clone, Debug)]
pub struct LogStore {
    store: Store,
    dir: String,
    policy: CommitPolicy,
}

/// One attempt at an entry: the number to create and the bytes it holds.
#[derive(Debug)]
pub struct Attempt {
    /// The entry's number (a table's version, an audit record's sequence number).
    pub number: u64,
    /// The object's bytes.
    pub body: Bytes,
}

/// A logical entry that a writer wants in a [`LogStore`], tried at later numbers after lost
/// races by [`LogStore::commit`]. Implementers give these guarantees:
/// * [`LogEntry::attempt`] builds the entry for the number it believes is next, with the same
///   token on every attempt (or a token it still recognises); an error refuses the entry and
///   nothing is written.
/// * [`LogEntry::is_ours`] tells its own entry from another writer's by the token alone:
///   `Some(true)` ours, `Some(false)` theirs, `None` when the bytes do not decode.
/// * [`LogEntry::lost`] is given every race it lost, with the winner's bytes; it returns an
///   error when the winner invalidates the entry (a conflict), and otherwise leaves the next
///   [`LogEntry::attempt`] to go after the winner (and, if it reads them, every later entry).
#[async_trait::async_trait]
pub trait LogEntry: Send {
    /// What a landed entry gives its writer.
    type Output: Send;

    /// The log, as errors name it (`default.permits`, `_catalog`, `_audit`).
    fn log(&self) -> String;

    /// The next attempt. Called before every attempt; checks that must hold when the entry
    /// lands (quotas, staging grace) belong here.
    async fn attempt(&mut self) -> Result<Attempt>;

    /// Whether `found`, the bytes at the number of the last attempt, are this entry.
    fn is_ours(&self, found: &[u8]) -> Option<bool>;

    /// The entry landed at `number`.
    async fn landed(&mut self, number: u64) -> Result<Self::Output>;

    /// Another writer holds `number`, with `theirs`: `Err` ends the write (nothing written).
    async fn lost(&mut self, number: u64, theirs: Bytes) -> Result<()>;

    /// The error to report for a create that failed with `e` (default: `e`).
    fn create_failed(&self, e: Error) -> Error {
        e
    }
}

impl LogStore {
    /// The log in `dir` (relative to the store root), whose writers retry as `policy` says.
    pub fn new(store: Store, dir: impl Into<String>, policy: CommitPolicy) -> Self {
        Self {
            store,
            dir: dir.into(),
            policy,
        }
    }

    /// The path of entry `number`, relative to the store root.
    pub fn path(&self, number: u64) -> String {
        crate::logfile::commit_path(&self.dir, number)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One attempt at entry `number` holding `body` (see [`create`]); no retry.
    pub async fn create_at(
        &self,
        number: u64,
        body: Bytes,
        is_ours: impl Fn(&[u8]) -> Option<bool>,
    ) -> Result<Created> {
        create(&self.store, &self.path(number), body, is_ours).await
    }

    /// Write `entry`: attempt, and after every lost race that does not end it, wait
    /// ([`Retry`]) and attempt again, until it lands or [`CommitPolicy::retry_for`] has passed
    /// (then [`Error::Conflict`], nothing written).
    pub async fn commit<E: LogEntry>(&self, entry: &mut E) -> Result<E::Output> {
        let mut retry = Retry::new(&self.policy);
        loop {
            let Attempt { number, body } = entry.attempt().await?;
            let created = self
                .create_at(number, body, |b| entry.is_ours(b))
                .await
                .map_err(|e| entry.create_failed(e))?;
            match created {
                Created::Ours => return entry.landed(number).await,
                Created::Theirs(theirs) => entry.lost(number, theirs).await?,
            }
            tracing::debug!(log = %entry.log(), number, attempt = retry.attempts(), "lost the race for a log entry; retrying");
            if !retry.wait().await {
                return Err(retry.gave_up(&entry.log(), number));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retry_for: Duration) -> CommitPolicy {
        CommitPolicy {
            retry_for,
            ..CommitPolicy::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = CommitPolicy {
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(5),
            ..CommitPolicy::default()
        };
        let mut r = Retry::new(&p);
        let mut windows = Vec::new();
        for n in 1..=5 {
            r.attempts = n;
            windows.push(r.window().as_millis());
        }
        assert_eq!(windows, [1, 2, 4, 5, 5]);
        r.attempts = u32::MAX;
        assert_eq!(r.window(), Duration::from_millis(5));
    }

    #[test]
    fn default_backoff_stays_at_the_measured_two_ms() {
        let mut r = Retry::new(&CommitPolicy::default());
        r.attempts = 1;
        assert_eq!(r.window(), Duration::from_millis(1));
        r.attempts = 10;
        assert_eq!(r.window(), Duration::from_millis(2));
    }

    #[tokio::test]
    async fn gives_up_once_the_time_is_up() {
        let mut r = Retry::new(&policy(Duration::ZERO));
        assert!(!r.wait().await);
        let e = r.gave_up("_catalog", 3);
        assert!(matches!(e, Error::Conflict { version: 3, .. }), "{e}");
        assert!(e.to_string().contains("gave up after 1 lost races"), "{e}");
        let mut r = Retry::new(&policy(Duration::from_secs(60)));
        assert!(r.wait().await);
        assert_eq!(r.attempts(), 1);
    }

    /// An entry that counts its attempts and takes the number after every winner.
    struct Counter {
        next: u64,
        token: &'static str,
        lost: Vec<u64>,
        refuse_after_loss: bool,
    }

    #[async_trait::async_trait]
    impl LogEntry for Counter {
        type Output = u64;
        fn log(&self) -> String {
            "test".into()
        }
        async fn attempt(&mut self) -> Result<Attempt> {
            Ok(Attempt {
                number: self.next,
                body: Bytes::from(self.token),
            })
        }
        fn is_ours(&self, found: &[u8]) -> Option<bool> {
            Some(found == self.token.as_bytes())
        }
        async fn landed(&mut self, number: u64) -> Result<u64> {
            Ok(number)
        }
        async fn lost(&mut self, number: u64, _theirs: Bytes) -> Result<()> {
            self.lost.push(number);
            if self.refuse_after_loss {
                return Err(Error::Internal("conflict".into()));
            }
            self.next = number + 1;
            Ok(())
        }
    }

    fn counter(token: &'static str, refuse_after_loss: bool) -> Counter {
        Counter {
            next: 0,
            token,
            lost: Vec::new(),
            refuse_after_loss,
        }
    }

    fn memory_log(name: &str) -> LogStore {
        let store = Store::open(
            &format!("memory://logstore-{name}-{}", random_u64()),
            &Default::default(),
        )
        .unwrap();
        LogStore::new(store, "_log", CommitPolicy::default())
    }

    #[tokio::test]
    async fn lost_races_go_after_the_winner() {
        let log = memory_log("race");
        for (n, t) in ["a", "b"].into_iter().enumerate() {
            log.create_at(n as u64, Bytes::from(t), |_| None).await.unwrap();
        }
        let mut c = counter("c", false);
        assert_eq!(log.commit(&mut c).await.unwrap(), 2);
        assert_eq!(c.lost, [0, 1]);
        assert_eq!(log.store.get(&log.path(2)).await.unwrap(), Bytes::from("c"));
    }

    #[tokio::test]
    async fn our_own_entry_counts_once() {
        let log = memory_log("ours");
        log.create_at(0, Bytes::from("c"), |_| None).await.unwrap();
        let mut c = counter("c", false);
        assert_eq!(log.commit(&mut c).await.unwrap(), 0);
        assert!(c.lost.is_empty());
        assert!(log.store.get_opt(&log.path(1)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_refused_loss_writes_nothing() {
        let log = memory_log("refused");
        log.create_at(0, Bytes::from("a"), |_| None).await.unwrap();
        let mut c = counter("c", true);
        assert!(matches!(log.commit(&mut c).await, Err(Error::Internal(_))));
        assert!(log.store.get_opt(&log.path(1)).await.unwrap().is_none());
    }
}
