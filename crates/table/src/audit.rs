//! The audit log: an append-only, hash-chained record of every statement and access change.
//!
//! Record `n` is `_audit/<n as 20 digits>.json` on the metadata tier, created with
//! create-if-absent (one writer wins each number, as in table logs). Each record carries the
//! SHA-256 of the previous record and its own hash over its content, so an edited, removed or
//! reordered record breaks the chain, which [`AuditLog::verify`] reports.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::clock::now_ms;
use crate::logstore::{Attempt, LogEntry, LogStore};
use crate::store::Store;
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

impl Record {
    fn content_hash(&self) -> String {
        let mut r = self.clone();
        r.hash = String::new();
        let json = serde_json::to_vec(&r).expect("record serializes");
        stratalake_crypto::hex::encode(Sha256::digest(&json))
    }
}

fn path(seq: u64) -> String {
    crate::log::commit_path(DIR, seq)
}

/// One event as a [`LogEntry`]: a fresh record (time, nonce, hash) for every attempt, chained to
/// the head of the log, and after a lost race chained after the winner's record.
struct AuditEntry<'a> {
    audit: &'a AuditLog,
    /// Next sequence number and the hash it chains to, once known (the log's cached head).
    head: &'a mut Option<(u64, String)>,
    event: Event,
    /// The record of the last attempt.
    record: Option<Record>,
}

#[async_trait::async_trait]
impl LogEntry for AuditEntry<'_> {
    type Output = Record;

    fn log(&self) -> String {
        DIR.into()
    }

    async fn attempt(&mut self) -> Result<Attempt> {
        let (seq, prev) = match self.head.clone() {
            Some(h) => h,
            // an audit log whose head cannot be read cannot be written either
            None => self.audit.find_head().await.map_err(unavailable)?,
        };
        let mut r = Record {
            seq,
            time_ms: now_ms(),
            event: self.event.clone(),
            nonce: format!("{:016x}", crate::logstore::random_u64()),
            prev_hash: prev,
            hash: String::new(),
        };
        r.hash = r.content_hash();
        let body = serde_json::to_vec(&r).map_err(|e| Error::Internal(e.to_string()))?;
        self.record = Some(r);
        Ok(Attempt {
            number: seq,
            body: body.into(),
        })
    }

    fn is_ours(&self, found: &[u8]) -> Option<bool> {
        let ours = self.record.as_ref()?;
        serde_json::from_slice::<Record>(found)
            .ok()
            .map(|t| t.hash == ours.hash)
    }

    async fn landed(&mut self, seq: u64) -> Result<Record> {
        let r = self.record.take().expect("an attempt precedes its landing");
        *self.head = Some((seq + 1, r.hash.clone()));
        Ok(r)
    }

    /// Another writer took this number: chain after its record.
    async fn lost(&mut self, seq: u64, theirs: Bytes) -> Result<()> {
        let theirs: Record = serde_json::from_slice(&theirs).map_err(|e| Error::CorruptLog {
            path: path(seq),
            reason: format!("not an audit record: {e}"),
        })?;
        *self.head = Some((seq + 1, theirs.hash));
        Ok(())
    }

    /// A store that cannot take the record makes the audit log unavailable.
    fn create_failed(&self, e: Error) -> Error {
        unavailable(e)
    }
}

/// A store error reading or writing the audit log: the log is unavailable (so a statement that
/// committed before its record could be written says so, instead of "nothing committed").
fn unavailable(e: Error) -> Error {
    match e {
        Error::StoreFull { .. } | Error::StoreNotWritable { .. } | Error::Store { .. } => {
            Error::AuditUnavailable { source: Box::new(e) }
        }
        e => e,
    }
}

/// Appends records; shared by every session of a lake in this process.
#[derive(Debug)]
pub struct AuditLog {
    /// The only writer of records.
    log: LogStore,
    /// Next sequence number and the hash it chains to, once known.
    head: Mutex<Option<(u64, String)>>,
}

impl AuditLog {
    /// The audit log of the lake whose metadata tier is `store`; lost races are retried for as
    /// long as `policy` says.
    pub fn new(store: Store, policy: crate::logstore::CommitPolicy) -> Arc<Self> {
        Arc::new(Self {
            log: LogStore::new(store, DIR, policy),
            head: Mutex::new(None),
        })
    }

    async fn find_head(&self) -> Result<(u64, String)> {
        let mut last: Option<u64> = None;
        for (rel, _) in self.log.store().list(DIR).await? {
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
        let data = self.log.store().get(&p).await?;
        serde_json::from_slice(&data).map_err(|e| Error::CorruptLog {
            path: p,
            reason: format!("not an audit record: {e}"),
        })
    }

    /// Append an event. Concurrent writers (other processes) are ordered by create-if-absent;
    /// a record whose create was answered with an error is read back and recognised by its
    /// hash, so a lost answer never writes the same event twice.
    pub async fn append(&self, event: Event) -> Result<Record> {
        let mut head = self.head.lock().await;
        let mut entry = AuditEntry {
            audit: self,
            head: &mut head,
            event,
            record: None,
        };
        self.log.commit(&mut entry).await
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
        for (rel, _) in self.log.store().list(DIR).await? {
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
        for (rel, _) in self.log.store().list(DIR).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two records as the previous release wrote them (its `Record`, `content_hash` and
    /// hand-written hex, run verbatim; the hashes checked with Python's `hashlib`): the second
    /// without a nonce, as records written before nonces existed. Audit logs are kept for years,
    /// so these must keep verifying and chaining, byte for byte.
    const STORED: [&str; 2] = [
        r#"{"seq":0,"time_ms":1767225600000,"principal":"ana","kind":"sql","statement":"SELECT email FROM default.people","tables":["default.people"],"policies":["mask hash on default.people.email"],"rows":2,"outcome":"ok","error":null,"nonce":"00c0ffee12345678","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"50cee5437cb5035bd98f8704910ef69f254b879ad2d0b1277a4c2972a60b8cd8"}"#,
        r#"{"seq":1,"time_ms":1767225601234,"principal":"bo","kind":"access","statement":"GRANT SELECT ON default.people TO \"zoë\"","tables":[],"rows":null,"outcome":"denied","error":"permission denied: bo is not an administrator","prev_hash":"50cee5437cb5035bd98f8704910ef69f254b879ad2d0b1277a4c2972a60b8cd8","hash":"b7e4d4375c167a60b21d9dc553afe3393549d269620b159c90ea942d0b110da0"}"#,
    ];

    #[test]
    fn content_hash_is_pinned() {
        let r = Record {
            seq: 0,
            time_ms: 1_767_225_600_000,
            event: Event {
                principal: "ana".into(),
                kind: "sql".into(),
                statement: "SELECT email FROM default.people".into(),
                tables: vec!["default.people".into()],
                policies: vec!["mask hash on default.people.email".into()],
                rows: Some(2),
                outcome: Outcome::Ok,
                error: None,
            },
            nonce: "00c0ffee12345678".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        assert_eq!(
            r.content_hash(),
            "50cee5437cb5035bd98f8704910ef69f254b879ad2d0b1277a4c2972a60b8cd8"
        );
        for stored in STORED {
            let r: Record = serde_json::from_str(stored).unwrap();
            assert_eq!(r.content_hash(), r.hash, "{stored}");
            assert_eq!(serde_json::to_string(&r).unwrap(), stored, "written as before");
        }
    }

    #[tokio::test]
    async fn a_chain_written_by_the_previous_release_verifies_and_grows() {
        let mut suffix = [0u8; 8];
        stratalake_crypto::random_bytes(&mut suffix).unwrap();
        let url = format!("memory://audit-pinned-{}", stratalake_crypto::hex::encode(suffix));
        let store = Store::open(&url, &Default::default()).unwrap();
        for (seq, body) in STORED.iter().enumerate() {
            store
                .put(&path(seq as u64), body.as_bytes().to_vec().into())
                .await
                .unwrap();
        }
        let log = AuditLog::new(store.clone(), Default::default());
        assert_eq!(log.verify().await.unwrap(), Vec::<String>::new());
        let next = log
            .record("ana", "sql", "SELECT 1", vec![], Some(1), None)
            .await
            .unwrap();
        assert_eq!(next.seq, 2);
        assert_eq!(
            next.prev_hash,
            "b7e4d4375c167a60b21d9dc553afe3393549d269620b159c90ea942d0b110da0"
        );
        assert_eq!(log.verify().await.unwrap(), Vec::<String>::new());
        // an edited old record is found
        let edited = STORED[0].replace(r#""rows":2"#, r#""rows":3"#);
        store.put(&path(0), edited.into_bytes().into()).await.unwrap();
        let problems = log.verify().await.unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("does not match its hash"), "{problems:?}");
    }
}
