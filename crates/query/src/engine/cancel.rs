//! What stops a running statement: a [`Cancel`] token, the session's timeout, and a panic
//! inside it ([`guarded`]), each turned into an error of that statement.

use std::sync::Arc;

use super::SqlSession;
use crate::{Error, Result};

/// Run a future that executes a plan, turning a panic anywhere inside it (a bug in a reader,
/// DataFusion, or our own operators) into an error of this statement instead of a crash of the
/// process. The panic's message goes to the log, not to the session: it may quote a value.
pub async fn guarded<F: std::future::Future>(f: F) -> Result<F::Output> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(v) => Ok(v),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            tracing::error!(panic = %msg, "a statement panicked; it failed, the process goes on");
            Err(Error::Table(stratalake_table::Error::Internal(
                "the statement stopped on an unexpected failure inside the engine (a panic; details in the log); a write it was making was not committed, but a statement of several commits may have made some: check the table's history".into(),
            )))
        }
    }
}

/// Stops the statement running in the sessions that hold it ([`SqlSession::with_cancel`]):
/// cheap to clone, shared by whoever may cancel (a Ctrl-C handler, a protocol's cancel request).
/// A cancelled statement fails with [`Error::Cancelled`] and is audited as such; the next
/// statement starts after [`Cancel::reset`].
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    /// Cancel the running statement (and every later one until [`Cancel::reset`]).
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Let statements run again.
    pub fn reset(&self) {
        self.inner.cancelled.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait until it is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl SqlSession {
    /// Run `fut` within this session's cancellation and timeout.
    pub(super) async fn limited<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let cancelled = async {
            match &self.cancel {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let timed_out = async {
            match self.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = fut => r,
            _ = cancelled => Err(Error::Cancelled),
            _ = timed_out => Err(Error::Timeout(self.timeout.unwrap_or_default())),
        }
    }
}
