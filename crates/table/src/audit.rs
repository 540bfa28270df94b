//! The audit log: an append-only, hash-chained record of every statement and access change.
//!
//! Record `n` is `_audit/<n as 20 digits>.json` on the metadata tier, created with
//! create-if-absent (one writer wins each number, as in table logs). Each record carries the
//! SHA-256 of the previous record and its own hash over its content, so an edited, removed or
//! reordered record breaks the chain, which [`AuditLog::verify`] reports.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::store::Store;
use crate::write::now_ms;
use crate::{Error, Result};

const DIR: &str = "_audit";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a statement ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran.
    Ok,
    /// A permission check refused it.
    Denied,
    /// It failed for another reason.
    Error,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        })
    }
}

/// What is recorded about one statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The principal.
    pub principal: String,
    /// `sql`, `ingest`, `access`, ...
    pub kind: String,
    /// The statement or command (SQL text; never key material).
    pub statement: String,
    /// Tables it touched.
    pub tables: Vec<String>,
    /// Policies applied to what it read (row filters, masks, classification masks, hidden
    /// columns), e.g. `row filter own_region on default.permits`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Rows returned or written, when known.
    pub rows: Option<u64>,
    /// Outcome.
    pub outcome: Outcome,
    /// The error, for `denied` and `error`.
    pub error: Option<String>,
}

/// A stored audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Time, ms since the epoch.
    pub time_ms: i64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// Random, so that two identical events recorded at the same time by two processes are
    /// two records (a writer recognises its own record by its hash). Absent in records written
    /// before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// SHA-256 (hex) of the previous record, zeros for the first.
    pub prev_hash: String,
    /// SHA-256 (hex) of this record's content (everything above).
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Record {
    fn content_hash(&self) -> String {
        let mut r = self.clone();
        r.hash = String::new();
        let json = serde_json::to_vec(&r).expect("record serializes");
        hex(&Sha256::digest(&json))
    }
}

fn path(seq: u64) -> String {
    format!("{DIR}/{seq:020}.json")
}

/// Appends records; shared by every session of a lake in this process.
#[derive(Debug)]
pub struct AuditLog {
    store: Store,
    policy: crate::logstore::CommitPolicy,
    /// Next sequence number and the hash it chains to, once known.
    head: Mutex<Option<(u64, String)>>,
}

impl AuditLog {
    /// The audit log of the lake whose metadata tier is `store`; lost races are retried for as
    /// long as `policy` says.
    pub fn new(store: Store, policy: crate::logstore::CommitPolicy) -> Arc<Self> {
        Arc::new(Self {
            store,
            policy,
            head: Mutex::new(None),
        })
    }

    async fn find_head(&self) -> Result<(u64, String)> {
        let mut last: Option<u64> = None;
        for (rel, _) in self.store.list(DIR).await? {
            let name = rel.rsplit('/').next().unwrap_or(&rel);
            if let Some(v) = crate::log::parse_commit_name(name) {
                last = Some(last.map_or(v, |l| l.max(v)));
            }
        }
        match last {
            None => Ok((0, GENESIS.to_string())),
            Some(n) => {
                let r = self.read(n).await?;
                Ok((n + 1, r.hash))
            }
        }
    }

    async fn read(&self, seq: u64) -> Result<Record> {
        let p = path(seq);
        let data = self.store.get(&p).await?;
        serde_json::from_slice(&data).map_err(|e| Error::CorruptLog {
            path: p,
            reason: format!("not an audit record: {e}"),
        })
    }

    /// Append an event. Concurrent writers (other processes) are ordered by create-if-absent;
    /// a record whose create was answered with an error is read back and recognised by its
    /// hash, so a lost answer never writes the same event twice.
    pub async fn append(&self, event: Event) -> Result<Record> {
        use crate::logstore::{Created, Retry, create};
        let mut head = self.head.lock().await;
        let retry = Retry::new(&self.policy);
        loop {
            let (seq, prev) = match head.clone() {
                Some(h) => h,
                None => self.find_head().await?,
            };
            let mut r = Record {
                seq,
                time_ms: now_ms(),
                event: event.clone(),
                nonce: format!("{:016x}", crate::logstore::random_u64()),
                prev_hash: prev,
                hash: String::new(),
            };
            r.hash = r.content_hash();
            let body = serde_json::to_vec(&r).map_err(|e| Error::Internal(e.to_string()))?;
            let ours = |b: &[u8]| serde_json::from_slice::<Record>(b).ok().map(|t| t.hash == r.hash);
            let created = create(&self.store, &path(seq), body.into(), ours)
                .await
                .map_err(|e| match e {
                    Error::StoreFull { .. } | Error::StoreNotWritable { .. } | Error::Store { .. } => {
                        Error::AuditUnavailable { source: Box::new(e) }
                    }
                    e => e,
                })?;
            match created {
                Created::Ours => {
                    *head = Some((seq + 1, r.hash.clone()));
                    return Ok(r);
                }
                Created::Theirs(b) => {
                    // another writer took this number: chain after its record
                    let theirs: Record = serde_json::from_slice(&b).map_err(|e| Error::CorruptLog {
                        path: path(seq),
                        reason: format!("not an audit record: {e}"),
                    })?;
                    *head = Some((seq + 1, theirs.hash));
                }
            }
            if retry.elapsed() >= self.policy.retry_for {
                return Err(Error::Conflict {
                    table: "_audit".into(),
                    version: seq,
                    reason: "too much contention on the audit log".into(),
                });
            }
        }
    }

    /// Record one operation. `failure` is its error text and whether it was a permission
    /// refusal (`denied`) rather than another error; tables are sorted and deduplicated.
    pub async fn record(
        &self,
        principal: &str,
        kind: &str,
        statement: &str,
        tables: Vec<String>,
        rows: Option<u64>,
        failure: Option<(String, bool)>,
    ) -> Result<Record> {
        self.record_with_policies(principal, kind, statement, tables, Vec::new(), rows, failure)
            .await
    }

    /// [`AuditLog::record`], with the policies applied (sorted and deduplicated).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_with_policies(
        &self,
        principal: &str,
        kind: &str,
        statement: &str,
        mut tables: Vec<String>,
        mut policies: Vec<String>,
        rows: Option<u64>,
        failure: Option<(String, bool)>,
    ) -> Result<Record> {
        tables.sort();
        tables.dedup();
        policies.sort();
        policies.dedup();
        let (outcome, error) = match failure {
            None => (Outcome::Ok, None),
            Some((e, true)) => (Outcome::Denied, Some(e)),
            Some((e, false)) => (Outcome::Error, Some(e)),
        };
        let event = Event {
            principal: principal.to_string(),
            kind: kind.to_string(),
            statement: statement.trim().to_string(),
            tables,
            policies,
            rows,
            outcome,
            error,
        };
        self.append(event).await
    }

    /// Every record, oldest first.
    pub async fn records(&self) -> Result<Vec<Record>> {
        let mut seqs = Vec::new();
        for (rel, _) in self.store.list(DIR).await? {
            let name = rel.rsplit('/').next().unwrap_or(&rel);
            if let Some(v) = crate::log::parse_commit_name(name) {
                seqs.push(v);
            }
        }
        seqs.sort_unstable();
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            out.push(self.read(s).await?);
        }
        Ok(out)
    }

    /// Check the chain: numbers without gaps from 0, every hash right, every record chained to
    /// the one before. Returns one line per problem (empty when intact).
    pub async fn verify(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut seqs = Vec::new();
        for (rel, _) in self.store.list(DIR).await? {
            let name = rel.rsplit('/').next().unwrap_or(&rel);
            match crate::log::parse_commit_name(name) {
                Some(v) => seqs.push(v),
                None => problems.push(format!("{rel}: not an audit record name")),
            }
        }
        seqs.sort_unstable();
        let mut prev = GENESIS.to_string();
        let mut expected = 0u64;
        for s in seqs {
            if s != expected {
                problems.push(format!(
                    "records {expected}..{} are missing (removed?)",
                    s.saturating_sub(1)
                ));
            }
            match self.read(s).await {
                Ok(r) => {
                    if r.seq != s {
                        problems.push(format!("{}: claims number {}", path(s), r.seq));
                    }
                    if r.hash != r.content_hash() {
                        problems.push(format!("{}: content does not match its hash (edited)", path(s)));
                    }
                    if s == expected && r.prev_hash != prev {
                        problems.push(format!("{}: not chained to the record before it", path(s)));
                    }
                    prev = r.hash;
                }
                Err(e) => problems.push(e.to_string()),
            }
            expected = s + 1;
        }
        Ok(problems)
    }
}
