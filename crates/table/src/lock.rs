//! Advisory locks in a store: one small object per holder under a folder. Used where two
//! processes must not run the same kind of work at once (backup prune, the tier mover, vacuum).
//!
//! Take: write your own lock object first, then list the others; of two racing processes one
//! always sees the other. A lock whose process is gone (same host) or that is older than
//! [`STALE_LOCK_MS`] is stale and removed.

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::clock::{fmt_ms, now_ms};
use crate::store::Store;

/// Locks older than this are stale whatever their process.
pub const STALE_LOCK_MS: i64 = 6 * 3600 * 1000;

/// What a lock object holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lock {
    /// Kind of work (`backup`, `prune`, `mover`, ...).
    pub kind: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When it was taken, ms since the epoch.
    pub created_ms: i64,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

impl Lock {
    fn alive(&self, now_ms: i64) -> bool {
        if now_ms - self.created_ms > STALE_LOCK_MS {
            return false;
        }
        if self.host == host_name() && cfg!(target_os = "linux") {
            return std::path::Path::new(&format!("/proc/{}", self.pid)).exists();
        }
        true
    }

    /// `a running <kind> (process P on H, since T)`.
    pub fn describe(&self) -> String {
        format!(
            "a running {} (process {} on {}, since {})",
            self.kind,
            self.pid,
            self.host,
            fmt_ms(self.created_ms)
        )
    }
}

/// A held lock; released by [`LockGuard::release_after`] (a crashed holder's lock goes stale).
#[derive(Debug)]
pub struct LockGuard {
    store: Store,
    path: String,
}

/// The live lock that refused a [`take`].
#[derive(Debug)]
pub struct Held {
    /// The other holder.
    pub lock: Lock,
    /// Its object, relative to the store root.
    pub path: String,
}

/// Take a lock of `kind` in `dir` of `store`, unless a live lock for which `conflicts(other_kind)`
/// holds exists: then `Ok(Err(held))` names it.
pub async fn take(
    store: &Store,
    dir: &str,
    kind: &str,
    conflicts: impl Fn(&str) -> bool,
) -> Result<std::result::Result<LockGuard, Held>> {
    let now = now_ms();
    let lock = Lock {
        kind: kind.into(),
        host: host_name(),
        pid: std::process::id(),
        created_ms: now,
    };
    let path = format!("{dir}/{}.json", uuid::Uuid::new_v4());
    let body = serde_json::to_vec(&lock).map_err(|e| crate::Error::Internal(e.to_string()))?;
    store.put(&path, body.into()).await?;
    for (name, _) in store.list(dir).await? {
        if name == path {
            continue;
        }
        let Some(raw) = store.get_opt(&name).await? else {
            continue;
        };
        let Ok(other) = serde_json::from_slice::<Lock>(&raw) else {
            continue;
        };
        if !other.alive(now) {
            tracing::info!(lock = %name, "removing a stale lock");
            store.delete(&name).await?;
            continue;
        }
        if conflicts(&other.kind) {
            store.delete(&path).await?;
            return Ok(Err(Held {
                lock: other,
                path: name,
            }));
        }
    }
    Ok(Ok(LockGuard {
        store: store.clone(),
        path,
    }))
}

impl LockGuard {
    /// Release the lock after the work it guarded, returning that work's `outcome` unchanged.
    /// A lock that cannot be deleted (the store failing now) is logged and left to go stale —
    /// the next run takes a stale lock over — and never reported as the work's failure: work that
    /// committed must not be reported as failed, and work that failed keeps its own error.
    pub async fn release_after<T, E>(self, outcome: std::result::Result<T, E>) -> std::result::Result<T, E> {
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!(
                lock = %self.path,
                error = %e,
                "could not remove the lock; it is taken over once its process is gone or after {} h",
                STALE_LOCK_MS / 3_600_000
            );
        }
        outcome
    }
}
