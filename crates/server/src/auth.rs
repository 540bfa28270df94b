//! The login of one connection: TLS required (unless allowed otherwise), then SCRAM-SHA-256
//! against the principal's stored verifier ([`stratalake::Lake::scram_verifier`]); an unknown
//! user runs the same exchange against a mock verifier and fails the same way. On success the
//! connection's [`Conn`] (the principal's session) goes into the connection's extensions.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, METADATA_USER, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use stratalake::crypto::password::{ScramError, ScramServer};
use stratalake::crypto::{ct_eq, random_bytes};
use stratalake::query::Cancel;
use tokio::sync::Mutex;

use crate::Shared;

/// The version reported to clients (psql chooses its catalog queries by it).
pub(crate) const SERVER_VERSION: &str = "16.0 (Stratalake)";

/// An authenticated connection: its principal's session and SQL engine.
pub(crate) struct Conn {
    pub principal: String,
    pub sql: stratalake::SqlSession,
    pub peer: SocketAddr,
    /// What the audit records of this connection's statements end with: `[pgwire ADDRESS tls]`.
    pub note: String,
    /// Stops this connection's running statement (a cancel request, the statement timeout).
    pub cancel: Cancel,
    /// This connection's `SET` parameters (`settings.rs`).
    pub settings: crate::settings::Settings,
    _key: CancelKey,
}

impl Conn {
    /// The SQL session a statement of this connection runs in: its principal's, resolving
    /// unqualified names in the connection's `search_path`.
    pub(crate) fn sql(&self) -> stratalake::SqlSession {
        self.sql
            .clone()
            .with_default_namespace(self.settings.get("search_path"))
    }

    /// The server's limits.
    pub(crate) fn limits(&self) -> &crate::Limits {
        &self._key.shared.limits
    }

    /// The server's statement timeout.
    pub(crate) fn statement_timeout(&self) -> Option<std::time::Duration> {
        self._key.shared.limits.statement_timeout
    }

    /// A place among the principal's running statements, or the error to answer (53400 over
    /// the limit, 57P01 while the server stops).
    pub(crate) fn start_statement(&self) -> Result<crate::Running, Box<ErrorInfo>> {
        self._key
            .shared
            .start_statement(&self.principal)
            .map_err(|(code, message)| Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)))
    }
}

/// This connection's entry in the server's cancel keys, removed when the connection goes.
struct CancelKey {
    shared: Arc<Shared>,
    pid: i32,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.shared.cancels.lock() {
            keys.remove(&self.pid);
        }
    }
}

impl CancelKey {
    /// A fresh random pid (unique among the running connections) and secret for `cancel`.
    fn register(shared: &Arc<Shared>, cancel: &Cancel) -> Option<(Self, i32, [u8; 4])> {
        let mut keys = shared.cancels.lock().ok()?;
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            random_bytes(&mut bytes).ok()?;
            // positive, as PostgreSQL's process ids
            let pid = i32::from_be_bytes([bytes[0] & 0x7f, bytes[1], bytes[2], bytes[3]]).max(1);
            let secret = [bytes[4], bytes[5], bytes[6], bytes[7]];
            if let std::collections::hash_map::Entry::Vacant(v) = keys.entry(pid) {
                v.insert((secret, cancel.clone()));
                return Some((
                    Self {
                        shared: shared.clone(),
                        pid,
                    },
                    pid,
                    secret,
                ));
            }
        }
        None
    }
}

/// Cancel requests (a separate connection carrying a pid and the secret sent at login): the
/// running statement of that connection stops with 57014. A wrong secret does nothing, as in
/// PostgreSQL, and the requester learns nothing either way.
pub(crate) struct Cancels {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        // protocol 3.0 clients send four bytes, which pgwire may decode either way
        let secret = match &request.secret_key {
            SecretKey::I32(k) => k.to_be_bytes().to_vec(),
            SecretKey::Bytes(b) => b.to_vec(),
        };
        let found = self
            .shared
            .cancels
            .lock()
            .ok()
            .and_then(|keys| keys.get(&request.pid).cloned());
        match found {
            Some((expected, cancel)) if ct_eq(&expected, &secret) => {
                tracing::info!(pid = request.pid, "cancel request: cancelling the running statement");
                cancel.cancel();
            }
            _ => tracing::info!("cancel request that matches no connection: ignored"),
        }
    }
}

enum State {
    /// Waiting for the startup packet.
    Start,
    /// AuthenticationSASL sent, waiting for the client-first message.
    AwaitFirst { user: String },
    /// Server-first sent, waiting for the client-final message.
    AwaitFinal { user: String, scram: Box<ScramServer> },
    /// Logged in, or refused.
    Done,
}

/// The login handler of one connection.
pub(crate) struct Login {
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// Set once the client has proved who it is (lifts the connection's pre-login byte cap).
    logged_in: Arc<AtomicBool>,
    /// This connection's place among its address's pending logins, given back at the login.
    pending: std::sync::Mutex<Option<crate::door::Pending>>,
}

impl Login {
    pub fn new(shared: Arc<Shared>, logged_in: Arc<AtomicBool>, pending: crate::door::Pending) -> Self {
        Self {
            shared,
            state: Mutex::new(State::Start),
            logged_in,
            pending: std::sync::Mutex::new(Some(pending)),
        }
    }
}

pub(crate) fn error(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        code.to_string(),
        message.into(),
    )))
}

fn failed(user: &str) -> PgWireError {
    error(
        "FATAL",
        "28P01",
        format!("password authentication failed for user \"{}\"", printable(user)),
    )
}

/// A client-chosen name as it may appear in a message or a log line.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut state = self.state.lock().await;
        let peer = client.socket_addr();
        match (std::mem::replace(&mut *state, State::Done), message) {
            (State::Start, PgWireFrontendMessage::Startup(startup)) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.shared.tls_required && !client.is_secure() {
                    tracing::info!(%peer, "login refused: no TLS");
                    return Err(error(
                        "FATAL",
                        "28000",
                        "this server requires TLS: connect with sslmode=require (or verify-full)",
                    ));
                }
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                if user.is_empty() {
                    return Err(error("FATAL", "28000", "no user name in the startup packet"));
                }
                if let Some(left) = self.shared.door.locked_out(&self.shared.limits, peer) {
                    tracing::info!(%peer, "login refused: too many failed logins from this address");
                    return Err(error(
                        "FATAL",
                        "28000",
                        format!(
                            "too many failed logins from this address: try again in {} s",
                            left.as_secs().max(1)
                        ),
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(vec![
                        "SCRAM-SHA-256".to_string(),
                    ])))
                    .await?;
                *state = State::AwaitFirst { user };
            }
            (State::AwaitFirst { user }, PgWireFrontendMessage::PasswordMessageFamily(msg)) => {
                let first = msg.into_sasl_initial_response()?;
                if first.auth_method != "SCRAM-SHA-256" {
                    return Err(error("FATAL", "28000", "only SCRAM-SHA-256 is offered"));
                }
                let data = first
                    .data
                    .ok_or_else(|| error("FATAL", "08P01", "empty SASL initial response"))?;
                let verifier = self.shared.lake.scram_verifier(&user).await.map_err(|e| {
                    tracing::warn!(error = %e, "login: the verifier could not be read");
                    error("FATAL", "XX000", "the server cannot check logins now")
                })?;
                let (scram, server_first) = ScramServer::start(&verifier, &data).map_err(scram_error)?;
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(
                        Bytes::from(server_first),
                    )))
                    .await?;
                *state = State::AwaitFinal {
                    user,
                    scram: Box::new(scram),
                };
            }
            (State::AwaitFinal { user, scram }, PgWireFrontendMessage::PasswordMessageFamily(msg)) => {
                let fin = msg.into_sasl_response()?;
                // an address locked out while this login was under way gets no answer to its proof
                if self.shared.door.locked_out(&self.shared.limits, peer).is_some() {
                    return Err(error("FATAL", "28000", "too many failed logins from this address"));
                }
                let server_final = match scram.finish(&fin.data) {
                    Ok(f) => f,
                    Err(e) => {
                        self.audit_failure(&user, peer, client.is_secure(), &e.to_string())
                            .await;
                        if matches!(e, ScramError::WrongProof) {
                            let limits = &self.shared.limits;
                            if self.shared.door.failed(limits, peer) {
                                let note = format!(
                                    "LOGIN {} [pgwire {peer}] -- {} failed logins from {}: its logins are refused for {} s",
                                    printable(&user),
                                    limits.max_failed_logins,
                                    crate::door::Source::of(peer),
                                    limits.failed_login_window.as_secs()
                                );
                                tracing::warn!(%peer, "too many failed logins: the address is locked out");
                                if let Err(e) = self.shared.lake.record_login_failure(&user, &note).await {
                                    tracing::warn!(error = %e, "login: the lockout could not be audited");
                                }
                            }
                            tokio::time::sleep(limits.failed_login_delay).await;
                        }
                        return Err(match e {
                            ScramError::WrongProof => failed(&user),
                            other => scram_error(other),
                        });
                    }
                };
                client
                    .feed(PgWireBackendMessage::Authentication(Authentication::SASLFinal(
                        Bytes::from(server_final),
                    )))
                    .await?;
                let tls = if client.is_secure() { "tls" } else { "plaintext" };
                let cancel = Cancel::default();
                let (key, pid, secret) = CancelKey::register(&self.shared, &cancel)
                    .ok_or_else(|| error("FATAL", "XX000", "the server cannot start a session now"))?;
                client.set_pid_and_secret_key(pid, SecretKey::I32(i32::from_be_bytes(secret)));
                let session = self.shared.lake.session(&user);
                let note = format!("[pgwire {peer} {tls}]");
                let sql = session
                    .sql_session()
                    .with_audit_as("sql", &note)
                    .with_cancel(cancel.clone())
                    .with_timeout(self.shared.limits.statement_timeout);
                tracing::info!(%peer, principal = %printable(&user), tls, "login");
                let login = format!("LOGIN {} {note}", printable(&user));
                if let Err(e) = self.shared.lake.record_login_success(&user, &login).await {
                    // as for any statement: what cannot be audited does not happen
                    tracing::warn!(error = %e, "login: the audit record could not be written");
                    return Err(error(
                        "FATAL",
                        "58030",
                        "the server cannot record the login in the audit log",
                    ));
                }
                let settings = crate::settings::Settings::default();
                // the application name a client gave at startup, as `SET application_name` takes it
                if let Some(name) = client.metadata().get("application_name")
                    && let Some(Ok(set)) =
                        crate::settings::parse(&format!("SET application_name = '{}'", name.replace('\'', "''")))
                {
                    settings.apply(&set);
                }
                client.session_extensions().insert(Conn {
                    principal: user,
                    sql,
                    peer,
                    note,
                    cancel,
                    settings,
                    _key: key,
                });
                self.logged_in.store(true, Ordering::Release);
                if let Ok(mut p) = self.pending.lock() {
                    p.take();
                }
                let mut params = DefaultServerParameterProvider::default();
                params.server_version = SERVER_VERSION.to_string();
                params.is_superuser = false;
                finish_authentication(client, &params).await?;
            }
            (_, other) => {
                tracing::info!(%peer, message = ?std::mem::discriminant(&other), "login: unexpected message");
                return Err(error("FATAL", "08P01", "unexpected message during login"));
            }
        }
        Ok(())
    }
}

impl Login {
    /// Record a failed login (never the password: SCRAM does not send it).
    async fn audit_failure(&self, user: &str, peer: SocketAddr, tls: bool, reason: &str) {
        tracing::info!(%peer, user = %printable(user), reason, "login failed");
        let statement = format!(
            "LOGIN {} [pgwire {peer} {}]",
            printable(user),
            if tls { "tls" } else { "plaintext" }
        );
        if let Err(e) = self.shared.lake.record_login_failure(user, &statement).await {
            tracing::warn!(error = %e, "login: the failed attempt could not be audited");
        }
    }
}

fn scram_error(e: ScramError) -> PgWireError {
    match e {
        ScramError::ChannelBinding => error("FATAL", "28000", e.to_string()),
        other => error("FATAL", "08P01", other.to_string()),
    }
}
