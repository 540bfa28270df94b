//! The one way numbered log objects are created: table commits, catalog commits and audit
//! records all go through [`create`], and every writer that lost a race waits with [`Retry`].
//!
//! Contract of [`create`] (what a caller can rely on):
//! * **Atomic create**: the object at `path` is created whole or not at all, and at most one
//!   writer ever creates it (the store's create-if-absent; a store without it is refused with
//!   [`Error::UnsafeStore`]).
//! * **Ours or theirs**: [`Created::Ours`] means the object now holds our body: either our create
//!   succeeded, or an earlier attempt of ours landed although its answer was lost (object_store
//!   clients retry requests; the caller recognises its own body, by a token or a hash, through
//!   `is_ours`). [`Created::Theirs`] means another writer holds the name: ours can never land there.
//! * **Ambiguous errors**: when the create fails and a read-back finds nothing, the outcome is
//!   known only on stores that answer synchronously (a local folder, memory): there the error is
//!   returned as is and nothing was written. On a remote store the request may still have been
//!   applied, and the error is [`Error::CommitUnknown`].

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

/// Waiting between attempts after lost races: a random 0–2 ms, for at most
/// [`CommitPolicy::retry_for`]. A writer that lost a race goes straight to the head of the log
/// (it reads the commits it lost to), so there is no herd to spread out; the jitter only breaks
/// lockstep. Longer, growing backoff was measured to starve: 16 writers on one local folder had
/// a worst append of 4.4 s with a window growing to 256 ms and 0.5 s with this one, and served
/// twice the commits per second (`benches/commits.rs`).
#[derive(Debug)]
pub struct Retry {
    started: Instant,
    limit: Duration,
    attempts: u32,
}

impl Retry {
    /// Start counting now.
    pub fn new(policy: &CommitPolicy) -> Self {
        Self {
            started: Instant::now(),
            limit: policy.retry_for,
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

    /// Wait before the next attempt. `false` (without waiting) once the time is up.
    pub async fn wait(&mut self) -> bool {
        self.attempts += 1;
        if self.started.elapsed() >= self.limit {
            return false;
        }
        let ms = random_u64() % 3;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        true
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
