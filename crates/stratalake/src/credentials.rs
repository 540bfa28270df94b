//! Credentials through the facade: passwords and API tokens of principals, and the checks a
//! server makes before it opens a session. Only hashes are stored (in the catalog, as access
//! actions); a password or token is never written, logged or shown after it is made.

use std::time::Duration;

use stratalake_crypto::Zeroizing;
use stratalake_crypto::password::{ApiToken, ScramVerifier, hash_password, verify_password};
use stratalake_table::access::{AccessAction, Operation, PasswordEntry, TokenEntry};

use crate::{Access, Error, Lake, Result};

/// A token just made ([`Access::create_token`]): the secret is shown to its owner once.
#[derive(Clone)]
pub struct NewToken {
    /// Its id (listed by [`Access::tokens`], revoked by [`Access::revoke_token`]).
    pub id: String,
    /// The whole token (`slk_<id>_<secret>`): give it to its owner now; it is stored nowhere.
    pub secret: Zeroizing<String>,
    /// When it stops working (ms since the epoch), if ever.
    pub expires_ms: Option<i64>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// An API token as listed (no secret, no hash).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// Whose it is.
    pub principal: String,
    /// What it is for.
    pub label: String,
    /// When it was made (ms since the epoch).
    pub created_ms: i64,
    /// When it stops working (ms since the epoch), if ever.
    pub expires_ms: Option<i64>,
    /// Whether it has expired (by the lake's clock).
    pub expired: bool,
}

impl Access<'_> {
    /// Set `principal`'s password: its argon2id hash and its SCRAM-SHA-256 verifier replace the
    /// old ones in one catalog commit. Lake administrators only (a principal changes its own with
    /// [`Access::change_own_password`], which asks for the current one); audited, never the
    /// password. Open sessions keep going; the next login needs the new password.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// let admin = lake.session("admin");
    /// admin.access().bootstrap_admin().await?;
    /// admin.access().create_principal("ana", "user", &[]).await?;
    /// admin.access().set_password("ana", "a long passphrase").await?;
    /// assert_eq!(lake.authenticate_password("ana", "a long passphrase").await?, "ana");
    /// let e = lake.authenticate_password("ana", "wrong").await.unwrap_err();
    /// assert_eq!(e.kind(), stratalake::ErrorKind::Unauthenticated);
    /// // the same answer for someone who does not exist
    /// assert_eq!(lake.authenticate_password("bob", "x").await.unwrap_err().to_string(),
    ///            "authentication failed for \"bob\"");
    /// # Ok(()) }
    /// ```
    pub async fn set_password(&self, principal: &str, password: &str) -> Result<()> {
        self.credential_change(
            Operation::AdministerLake,
            format!("SET PASSWORD FOR {principal}"),
            self.password_action(principal, password),
        )
        .await
    }

    /// Change this session's own password, proving the current one first (a session left open
    /// must not be enough to take the account over). A wrong current password fails as a login
    /// does ([`Error::AuthenticationFailed`]) and is audited as denied.
    pub async fn change_own_password(&self, current: &str, new: &str) -> Result<()> {
        let me = self.session.principal.clone();
        let r = self.session.lake.authenticate_password(&me, current).await.map(|_| ());
        if r.is_err() {
            self.session
                .record("access", format!("CHANGE PASSWORD OF {me}"), vec![], None, &r)
                .await?;
            return r;
        }
        self.credential_change(
            Operation::ManageCredentials(&me),
            format!("CHANGE PASSWORD OF {me}"),
            self.password_action(&me, new),
        )
        .await
    }

    /// The catalog action setting `principal`'s password (hashed off the async workers).
    async fn password_action(&self, principal: &str, password: &str) -> Result<AccessAction> {
        let password = Zeroizing::new(password.to_string());
        let set_ms = self.session.lake.now_ms();
        let entry = tokio::task::spawn_blocking(move || -> Result<PasswordEntry> {
            Ok(PasswordEntry {
                argon2: hash_password(&password)?,
                scram: ScramVerifier::new(&password)?.to_string(),
                set_ms,
            })
        })
        .await
        .map_err(|e| Error::Table(stratalake_table::Error::Internal(format!("password hashing: {e}"))))??;
        Ok(AccessAction::SetPassword {
            principal: principal.to_string(),
            password: Some(entry),
        })
    }

    /// Remove `principal`'s password: it can no longer log in with one (tokens still work).
    /// The principal itself or a lake administrator.
    pub async fn clear_password(&self, principal: &str) -> Result<()> {
        self.credential_change(
            Operation::ManageCredentials(principal),
            format!("CLEAR PASSWORD FOR {principal}"),
            async {
                Ok(AccessAction::SetPassword {
                    principal: principal.to_string(),
                    password: None,
                })
            },
        )
        .await
    }

    /// Make an API token for `principal`, valid for `valid_for` (`None`: until revoked). The
    /// returned secret is the only copy: only its SHA-256 is stored. Lake administrators only (a
    /// token is a credential that outlives a session: whoever holds a session must not be able
    /// to mint one); audited (the token's id, never the secret).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// let admin = lake.session("admin");
    /// admin.access().bootstrap_admin().await?;
    /// admin.access().create_principal("etl", "service", &[]).await?;
    /// let day = std::time::Duration::from_secs(86_400);
    /// let t = admin.access().create_token("etl", "nightly load", Some(day)).await?;
    /// assert_eq!(lake.authenticate_token(&t.secret).await?, "etl");
    /// assert_eq!(admin.access().tokens(Some("etl")).await?[0].label, "nightly load");
    /// admin.access().revoke_token("etl", &t.id).await?;
    /// assert!(lake.authenticate_token(&t.secret).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn create_token(&self, principal: &str, label: &str, valid_for: Option<Duration>) -> Result<NewToken> {
        if label.len() > 200 || label.chars().any(char::is_control) {
            return Err(Error::Table(stratalake_table::Error::InvalidName {
                kind: "token label",
                name: label.chars().take(40).collect(),
                reason: "at most 200 bytes, no control characters".into(),
            }));
        }
        let now = self.session.lake.now_ms();
        let expires_ms = valid_for.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        let token = ApiToken::generate()?;
        let statement = format!(
            "CREATE TOKEN {} FOR {principal}{}",
            token.id,
            valid_for.map_or(String::new(), |d| format!(" VALID FOR {}s", d.as_secs()))
        );
        let action = AccessAction::CreateToken {
            principal: principal.to_string(),
            id: token.id.clone(),
            token: TokenEntry {
                hash: token.hash.clone(),
                label: label.to_string(),
                created_ms: now,
                expires_ms,
            },
        };
        self.credential_change(Operation::AdministerLake, statement, async { Ok(action) })
            .await?;
        Ok(NewToken {
            id: token.id,
            secret: token.secret,
            expires_ms,
        })
    }

    /// The API tokens of `principal` (`None`: of every principal, lake administrators only),
    /// without secrets or hashes.
    pub async fn tokens(&self, principal: Option<&str>) -> Result<Vec<TokenInfo>> {
        let subject = self.session.subject().await?;
        match principal {
            Some(p) => subject.check(&Operation::ManageCredentials(p))?,
            None => subject.check(&Operation::AdministerLake)?,
        }
        let state = self.session.lake.catalog.state().await?.access;
        if let Some(p) = principal {
            state.principal_entry(p)?;
        }
        let now = self.session.lake.now_ms();
        Ok(state
            .principals
            .iter()
            .filter(|(n, _)| principal.is_none_or(|p| p == n.as_str()))
            .flat_map(|(n, e)| {
                e.credentials.tokens.iter().map(move |(id, t)| TokenInfo {
                    id: id.clone(),
                    principal: n.clone(),
                    label: t.label.clone(),
                    created_ms: t.created_ms,
                    expires_ms: t.expires_ms,
                    expired: !t.valid_at(now),
                })
            })
            .collect())
    }

    /// Revoke `principal`'s token `id`: it stops working at once, for new logins and for the
    /// next statement of sessions it opened. The principal itself or a lake administrator;
    /// audited.
    pub async fn revoke_token(&self, principal: &str, id: &str) -> Result<()> {
        self.credential_change(
            Operation::ManageCredentials(principal),
            format!("REVOKE TOKEN {id} FOR {principal}"),
            async {
                Ok(AccessAction::RevokeToken {
                    principal: principal.to_string(),
                    id: id.to_string(),
                })
            },
        )
        .await
    }

    /// Check `operation`, then (only if allowed) make the action and commit it; audited either
    /// way.
    async fn credential_change(
        &self,
        operation: Operation<'_>,
        statement: String,
        action: impl std::future::Future<Output = Result<AccessAction>>,
    ) -> Result<()> {
        let r = async {
            self.session.subject().await?.check(&operation)?;
            let action = action.await?;
            Ok(self
                .session
                .lake
                .catalog
                .change_access(vec![action], &self.session.principal)
                .await?)
        }
        .await;
        self.session.record("access", statement, vec![], None, &r).await?;
        r
    }
}

impl Lake {
    /// Check a login with a password (Flight SQL Basic, HTTP): the principal's name, or
    /// [`Error::AuthenticationFailed`] — the same error, after the same work, whether the user
    /// does not exist, has no password, or gave the wrong one. Does not open a session and
    /// writes no audit record: the server records the attempt with what it knows of the client.
    pub async fn authenticate_password(&self, user: &str, password: &str) -> Result<String> {
        let failed = || Error::AuthenticationFailed { user: user.to_string() };
        let state = self.catalog.state().await?.access;
        let stored = state
            .principals
            .get(user)
            .and_then(|p| p.credentials.password.as_ref())
            .map(|p| p.argon2.clone());
        // At most one argon2 check per core at a time: a flood of logins waits here instead of
        // taking every worker and all memory (each check uses 19 MiB for a moment).
        let _permit = self
            .mock
            .checks
            .acquire()
            .await
            .map_err(|_| Error::Table(stratalake_table::Error::Internal("password checks stopped".into())))?;
        let mock = self.mock.clone();
        let password = Zeroizing::new(password.to_string());
        let known = stored.is_some();
        let ok = tokio::task::spawn_blocking(move || -> Result<bool> {
            // An unknown user costs the same argon2 work as a known one.
            let hash = match stored {
                Some(h) => h,
                None => mock.argon2()?,
            };
            Ok(verify_password(&hash, &password))
        })
        .await
        .map_err(|e| Error::Table(stratalake_table::Error::Internal(format!("password check: {e}"))))??;
        if ok && known {
            Ok(user.to_string())
        } else {
            Err(failed())
        }
    }

    /// Check a bearer API token: its owner's name, or [`Error::AuthenticationFailed`] for a
    /// malformed, unknown, expired or revoked token (one error for all).
    pub async fn authenticate_token(&self, token: &str) -> Result<String> {
        let Some(id) = ApiToken::id_of(token) else {
            return Err(Error::AuthenticationFailed { user: "token".into() });
        };
        let failed = || Error::AuthenticationFailed {
            user: format!("token {id}"),
        };
        let state = self.catalog.state().await?.access;
        match state.token_owner(id) {
            Some((owner, t)) if ApiToken::matches(token, &t.hash) && t.valid_at(self.now_ms()) => Ok(owner.to_string()),
            _ => Err(failed()),
        }
    }

    /// The SCRAM-SHA-256 verifier to run a PostgreSQL login of `user` against: the user's own, or
    /// for a user that does not exist, has no password or whose stored verifier is unusable a
    /// mock one that no password matches. The mock's salt is derived from a secret kept in the
    /// lake (made on first use), so it is the same for a user across restarts and servers, as a
    /// real user's is: the exchange does not tell who has an account.
    pub async fn scram_verifier(&self, user: &str) -> Result<ScramVerifier> {
        // the secret first, whoever asks: a failure to read it must not depend on the user
        let secret = self.mock.secret(self.catalog.context().tiers.metadata()).await?;
        let state = self.catalog.state().await?.access;
        let stored = state
            .principals
            .get(user)
            .and_then(|p| p.credentials.password.as_ref())
            .and_then(|p| match ScramVerifier::parse(&p.scram) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "the stored SCRAM verifier of a principal is unusable: its logins fail");
                    None
                }
            });
        Ok(stored.unwrap_or_else(|| ScramVerifier::mock(&secret[..], user)))
    }

    /// Get what logins need ready (the lake's mock-verifier secret), so that a server that
    /// cannot read or write it fails at start rather than at a login.
    pub async fn prepare_logins(&self) -> Result<()> {
        self.mock.secret(self.catalog.context().tiers.metadata()).await?;
        Ok(())
    }

    /// Record a failed login in the audit log (kind `login`, outcome denied) under the name the
    /// client claimed: `statement` says how it came (protocol, address, TLS). Never give it a
    /// password or token.
    pub async fn record_login_failure(&self, claimed_user: &str, statement: &str) -> Result<()> {
        self.record_login(claimed_user, statement, Some(("authentication failed".into(), true)))
            .await
    }

    /// Record a successful login in the audit log (kind `login`, outcome ok), so that a session
    /// that runs no statement is on record too.
    pub async fn record_login_success(&self, principal: &str, statement: &str) -> Result<()> {
        self.record_login(principal, statement, None).await
    }

    async fn record_login(&self, user: &str, statement: &str, outcome: Option<(String, bool)>) -> Result<()> {
        let name: String = user
            .chars()
            .take(64)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        self.catalog
            .audit()
            .record(&name, "login", statement, Vec::new(), None, outcome)
            .await?;
        Ok(())
    }

    /// Whether `principal` may still act as itself right now (it exists in the catalog): a
    /// server calls this before each statement of an authenticated connection, so that dropping
    /// a principal ends its sessions at their next statement.
    pub async fn principal_exists(&self, principal: &str) -> Result<bool> {
        Ok(self.catalog.state().await?.access.principals.contains_key(principal))
    }

    /// Whether the token with this id still works (exists, not expired): for sessions opened with
    /// a token, checked before each statement.
    pub async fn token_valid(&self, id: &str) -> Result<bool> {
        let state = self.catalog.state().await?.access;
        Ok(state.token_owner(id).is_some_and(|(_, t)| t.valid_at(self.now_ms())))
    }
}

/// Where the secret for mock SCRAM verifiers is kept, in the metadata tier.
pub(crate) const MOCK_SECRET_OBJECT: &str = "_credentials/mock-verifier-secret";

/// What logins of users that do not exist are checked against: a secret kept in the lake for
/// mock SCRAM verifiers (read or made on first use), the argon2id hash of a random password
/// (made on first use), and the permits that bound concurrent argon2 checks.
pub(crate) struct MockCredentials {
    secret: tokio::sync::OnceCell<Zeroizing<[u8; 32]>>,
    argon2: std::sync::OnceLock<String>,
    pub(crate) checks: tokio::sync::Semaphore,
}

impl MockCredentials {
    pub(crate) fn new() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            secret: tokio::sync::OnceCell::new(),
            argon2: std::sync::OnceLock::new(),
            checks: tokio::sync::Semaphore::new(cores),
        })
    }

    /// The lake's mock-verifier secret: read, or made with create-if-absent (whoever loses the
    /// race reads the winner's).
    async fn secret(&self, store: &stratalake_table::Store) -> Result<&Zeroizing<[u8; 32]>> {
        self.secret
            .get_or_try_init(|| async {
                let parse = |b: &[u8]| -> Result<Zeroizing<[u8; 32]>> {
                    let mut out = Zeroizing::new([0u8; 32]);
                    let text = std::str::from_utf8(b).unwrap_or("").trim();
                    match stratalake_crypto::hex::decode_to_slice(text, &mut out[..]) {
                        Ok(()) => Ok(out),
                        Err(_) => Err(Error::Table(stratalake_table::Error::CorruptLog {
                            path: MOCK_SECRET_OBJECT.into(),
                            reason: "not 64 hex digits".into(),
                        })),
                    }
                };
                if let Some(b) = store.get_opt(MOCK_SECRET_OBJECT).await? {
                    return parse(&b);
                }
                let mut fresh = Zeroizing::new([0u8; 32]);
                stratalake_crypto::random_bytes(&mut fresh[..])?;
                let text = Zeroizing::new(stratalake_crypto::hex::encode(&fresh[..]));
                if store
                    .put_create(MOCK_SECRET_OBJECT, bytes::Bytes::from(text.as_bytes().to_vec()))
                    .await?
                {
                    Ok(fresh)
                } else {
                    parse(&store.get(MOCK_SECRET_OBJECT).await?)
                }
            })
            .await
    }

    fn argon2(&self) -> Result<String> {
        if let Some(h) = self.argon2.get() {
            return Ok(h.clone());
        }
        let mut pw = Zeroizing::new([0u8; 24]);
        stratalake_crypto::random_bytes(&mut pw[..])?;
        let h = hash_password(&stratalake_crypto::hex::encode(&pw[..]))?;
        Ok(self.argon2.get_or_init(|| h).clone())
    }
}

impl std::fmt::Debug for MockCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockCredentials(<redacted>)")
    }
}
