//! The repository: its layout, its key, sealed objects and locks.
//!
//! ```text
//! config.json                 format, repository id, key slots (the repository key wrapped
//!                             under lake master keys; never the plaintext key)
//! data/<2 hex>/<sha256>       data files, byte for byte (they are Parquet ciphertext already)
//! meta/<2 hex>/<id>           sealed table-log commits (AES-256-GCM, id = keyed hash)
//! snapshots/<backup id>       sealed manifests: a backup exists once its manifest does
//! locks/<id>.json             running backups and prunes
//! ```

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stratalake_crypto::{DataKey, KeyContext, KeyId, WrappedKey, random_bytes, unwrap_key, wrap_key};
use stratalake_table::lock::LockGuard;
use stratalake_table::{Keyring, Store};

use crate::{Error, Result};

const FORMAT: &str = "stratalake-backup/v1";
const CONFIG: &str = "config.json";
const SEAL_MAGIC: &[u8; 4] = b"SLB1";
const NONCE_LEN: usize = 12;

/// The repository's `config.json`.
#[derive(Serialize, Deserialize)]
struct RepoConfig {
    format: String,
    repo_id: String,
    created_ms: i64,
    /// The repository key, wrapped under one or more lake master keys.
    keyslots: Vec<WrappedKey>,
}

/// An open backup repository.
pub struct Repository {
    pub(crate) store: Store,
    pub(crate) id: String,
    key: DataKey,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("url", &self.store.url())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn slot_context(repo_id: &str) -> KeyContext {
    KeyContext {
        table_id: repo_id.to_string(),
        file: CONFIG.into(),
        role: "repository".into(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a data object with this sha256 lives.
pub(crate) fn data_path(sha256: &str) -> String {
    format!("data/{}/{sha256}", &sha256[..2.min(sha256.len())])
}

/// Where a sealed metadata object lives.
pub(crate) fn meta_path(id: &str) -> String {
    format!("meta/{}/{id}", &id[..2.min(id.len())])
}

/// Where a backup's manifest lives.
pub(crate) fn snapshot_path(id: &str) -> String {
    format!("snapshots/{id}")
}

impl Repository {
    /// Create a repository at `store`, with a fresh repository key wrapped under the current
    /// master key of the lake's lowest classification (the key every data file's footer needs,
    /// which therefore is never shredded). Fails if the store already holds a repository.
    pub async fn init(store: Store, keyring: &Keyring) -> Result<Self> {
        if store.get_opt(CONFIG).await?.is_some() {
            return Err(Error::Repository {
                repo: store.url().to_string(),
                reason: "already holds a backup repository".into(),
            });
        }
        if !store.list("").await?.is_empty() {
            return Err(Error::Repository {
                repo: store.url().to_string(),
                reason: "is not empty: a backup repository needs a store (or prefix) of its own".into(),
            });
        }
        let repo_id = uuid::Uuid::new_v4().to_string();
        let key = DataKey::generate()?;
        let level = keyring.classifications().lowest().to_string();
        let (kid, master) = keyring.provider().current(&level).await?;
        let slot = wrap_key(&master, &kid, &key, &slot_context(&repo_id))?;
        let config = RepoConfig {
            format: FORMAT.into(),
            repo_id: repo_id.clone(),
            created_ms: stratalake_table::write::now_ms(),
            keyslots: vec![slot],
        };
        let body = serde_json::to_vec_pretty(&config).map_err(|e| Error::Repository {
            repo: store.url().to_string(),
            reason: e.to_string(),
        })?;
        if !store.put_create(CONFIG, body.into()).await? {
            return Err(Error::Repository {
                repo: store.url().to_string(),
                reason: "another process created a repository here at the same time".into(),
            });
        }
        tracing::info!(repo = store.url(), "backup repository created");
        Ok(Self {
            store,
            id: repo_id,
            key,
        })
    }

    /// Open the repository at `store` with the lake's master keys. When the lake's current key
    /// of the lowest classification has no slot yet (after a key rotation), one is added, so the
    /// repository stays openable once older key versions are retired.
    pub async fn open(store: Store, keyring: &Keyring) -> Result<Self> {
        let url = store.url().to_string();
        let raw = store.get_opt(CONFIG).await?.ok_or_else(|| Error::Repository {
            repo: url.clone(),
            reason: "no backup repository here: create one with `stratalake backup init`".into(),
        })?;
        let mut config: RepoConfig = serde_json::from_slice(&raw).map_err(|e| Error::Repository {
            repo: url.clone(),
            reason: format!("config.json is not a repository configuration ({e})"),
        })?;
        if config.format != FORMAT {
            return Err(Error::Repository {
                repo: url,
                reason: format!("format {:?} is not {FORMAT:?}", config.format),
            });
        }
        let ctx = slot_context(&config.repo_id);
        let mut key = None;
        let mut tried = Vec::new();
        for slot in &config.keyslots {
            match keyring.provider().get(&slot.key).await {
                Ok(master) => match unwrap_key(&master, slot, &ctx) {
                    Ok(k) => {
                        key = Some(k);
                        break;
                    }
                    Err(_) => tried.push(format!("{} (a different key of that name)", slot.key)),
                },
                Err(e) => tried.push(format!("{} ({e})", slot.key)),
            }
        }
        let key = key.ok_or_else(|| Error::KeyUnavailable {
            repo: url.clone(),
            needed: tried.join(", "),
        })?;
        let level = keyring.classifications().lowest().to_string();
        if let Ok((kid, master)) = keyring.provider().current(&level).await
            && !config.keyslots.iter().any(|s| s.key == kid)
        {
            config.keyslots.push(wrap_key(&master, &kid, &key, &ctx)?);
            if let Ok(body) = serde_json::to_vec_pretty(&config) {
                store.put(CONFIG, body.into()).await?;
                tracing::info!(repo = %url, key = %kid, "added a key slot for the current master key");
            }
        }
        Ok(Self {
            store,
            id: config.repo_id,
            key,
        })
    }

    /// The repository's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The repository's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Key versions the repository's key slots are wrapped under.
    pub async fn key_slots(&self) -> Result<Vec<KeyId>> {
        let raw = self.store.get(CONFIG).await?;
        let config: RepoConfig = serde_json::from_slice(&raw).map_err(|e| Error::Repository {
            repo: self.store.url().to_string(),
            reason: e.to_string(),
        })?;
        Ok(config.keyslots.into_iter().map(|s| s.key).collect())
    }

    /// A keyed identifier of `plain` (does not reveal the content to whoever lists the repository,
    /// and is equal for equal content, which makes metadata objects deduplicate).
    pub(crate) fn meta_id(&self, plain: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(b"stratalake-backup/meta-id\n");
        h.update(self.key.expose());
        h.update(plain);
        hex(&h.finalize())
    }

    /// Encrypt and authenticate `plain`, bound to `name` (the object's own path).
    pub(crate) fn seal(&self, name: &str, plain: &[u8]) -> Result<Bytes> {
        let cipher = Aes256Gcm::new_from_slice(self.key.expose()).map_err(|_| Error::Damaged {
            object: name.into(),
            reason: "repository key has the wrong length".into(),
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let aad = format!("{FORMAT}\n{}\n{name}", self.id);
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Damaged {
                object: name.into(),
                reason: "encryption failed".into(),
            })?;
        let mut out = Vec::with_capacity(4 + NONCE_LEN + ct.len());
        out.extend_from_slice(SEAL_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out.into())
    }

    /// Open an object sealed by [`Repository::seal`] under the same `name`.
    pub(crate) fn open_sealed(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let damaged = |reason: &str| Error::Damaged {
            object: name.into(),
            reason: reason.into(),
        };
        if sealed.len() < 4 + NONCE_LEN + 16 || &sealed[..4] != SEAL_MAGIC {
            return Err(damaged("not a sealed repository object (truncated or replaced)"));
        }
        let nonce: [u8; NONCE_LEN] = sealed[4..4 + NONCE_LEN].try_into().expect("nonce length");
        let cipher =
            Aes256Gcm::new_from_slice(self.key.expose()).map_err(|_| damaged("repository key has the wrong length"))?;
        let aad = format!("{FORMAT}\n{}\n{name}", self.id);
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[4 + NONCE_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                damaged("not authentic: altered, truncated, or an object of another backup or repository moved here")
            })
    }

    /// Read and open a sealed object.
    pub(crate) async fn get_sealed(&self, name: &str) -> Result<Vec<u8>> {
        let raw = match self.store.get_opt(name).await? {
            Some(r) => r,
            None => {
                return Err(Error::Damaged {
                    object: name.into(),
                    reason: "missing".into(),
                });
            }
        };
        self.open_sealed(name, &raw)
    }
}

impl Repository {
    /// Take a lock of `kind`, refusing while a live lock of a conflicting kind exists.
    /// `exclusive` locks (prune) conflict with every other lock; shared ones (backup) only with
    /// exclusive ones.
    pub(crate) async fn lock(&self, kind: &str, exclusive: bool) -> Result<LockGuard> {
        match stratalake_table::lock::take(&self.store, "locks", kind, |other| exclusive || other == "prune").await? {
            Ok(g) => Ok(g),
            Err(held) => Err(Error::Locked {
                repo: self.store.url().to_string(),
                holder: held.lock.describe(),
                hint: format!(
                    "retry when it has finished, or delete {} if that process is gone",
                    held.path
                ),
            }),
        }
    }
}
