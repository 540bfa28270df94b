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

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use stratalake_crypto::{
    DataKey, Error as CryptoError, KeyContext, KeyId, WrappedKey, aead, legacy_keyed_sha256, unwrap_data_key,
    wrap_data_key,
};
use stratalake_table::lock::LockGuard;
use stratalake_table::{Keyring, Store};

use crate::{Error, Result};

const FORMAT: &str = "stratalake-backup/v1";
const CONFIG: &str = "config.json";
const SEAL_MAGIC: &[u8; 4] = b"SLB1";

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
        let slot = wrap_data_key(keyring.provider().as_ref(), &level, &key, &slot_context(&repo_id)).await?;
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
            match unwrap_data_key(keyring.provider().as_ref(), slot, &ctx).await {
                Ok(k) => {
                    key = Some(k);
                    break;
                }
                Err(CryptoError::UnwrapFailed { .. } | CryptoError::Malformed { .. }) => {
                    tried.push(format!("{} (a different key of that name)", slot.key))
                }
                Err(e) => tried.push(format!("{} ({e})", slot.key)),
            }
        }
        let key = key.ok_or_else(|| Error::KeyUnavailable {
            repo: url.clone(),
            needed: tried.join(", "),
        })?;
        let level = keyring.classifications().lowest().to_string();
        if let Ok(kid) = keyring.provider().current_id(&level).await
            && !config.keyslots.iter().any(|s| s.key == kid)
        {
            let slot = wrap_data_key(keyring.provider().as_ref(), &level, &key, &ctx).await?;
            // the provider may have moved on between the two calls: never two slots of one key
            if !config.keyslots.iter().any(|s| s.key == slot.key) {
                let kid = slot.key.clone();
                config.keyslots.push(slot);
                if let Ok(body) = serde_json::to_vec_pretty(&config) {
                    store.put(CONFIG, body.into()).await?;
                    tracing::info!(repo = %url, key = %kid, "added a key slot for the current master key");
                }
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
        stratalake_crypto::hex::encode(*legacy_keyed_sha256(
            b"stratalake-backup/meta-id\n",
            self.key.expose(),
            plain,
        ))
    }

    /// The associated data of the object at `name`: sealed objects are bound to their own path
    /// in this repository.
    fn object_aad(&self, name: &str) -> String {
        format!("{FORMAT}\n{}\n{name}", self.id)
    }

    /// Encrypt and authenticate `plain`, bound to `name` (the object's own path):
    /// `"SLB1" ‖ nonce ‖ AES-256-GCM(repository key, plain, aad)` ([`stratalake_crypto::aead`]).
    pub(crate) fn seal(&self, name: &str, plain: &[u8]) -> Result<Bytes> {
        let sealed = aead::seal(self.key.expose(), self.object_aad(name).as_bytes(), plain)?;
        Ok([SEAL_MAGIC.as_slice(), &sealed].concat().into())
    }

    /// Open an object sealed by [`Repository::seal`] under the same `name`.
    pub(crate) fn open_sealed(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let damaged = |reason: &str| Error::Damaged {
            object: name.into(),
            reason: reason.into(),
        };
        let body = match sealed.strip_prefix(SEAL_MAGIC.as_slice()) {
            Some(b) if b.len() >= aead::NONCE_LEN + aead::TAG_LEN => b,
            _ => return Err(damaged("not a sealed repository object (truncated or replaced)")),
        };
        aead::open(self.key.expose(), self.object_aad(name).as_bytes(), body).ok_or_else(|| {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use stratalake_crypto::{EnvKeyProvider, KeyProvider, MemoryKeyProvider, Zeroizing, random_bytes};
    use stratalake_table::Classifications;

    use super::*;

    /// A repository as the previous release made it, with its code run verbatim (`wrap_key`,
    /// `Repository::seal` and `meta_id` of that release; checked with Python's `cryptography`
    /// and `hashlib`): master key `public/v1` = bytes 0..32, repository key = bytes 0x20..0x40.
    const REPO_ID: &str = "9b2f6d1e-3c4a-4e8b-9f00-5a6b7c8d9e0f";
    const CONFIG_V1: &str = r#"{"format":"stratalake-backup/v1","repo_id":"9b2f6d1e-3c4a-4e8b-9f00-5a6b7c8d9e0f","created_ms":1767225600000,"keyslots":[{"key":{"classification":"public","version":1},"sealed":"Ju8o5za5aTzUKX0ey2MrrA7jlV8s+/fHqz2rx7p08PNtS3Z2UFGX6xm6WZNyYwywJsGt7p/d04sy1yqh"}]}"#;
    /// `{"commit":1}` sealed as `meta/5e/5e0f`, base64.
    const SEALED_V1: &str = "U0xCMWeuSfnu7/ibe2OZ/I/xIwyAdBDY7WrnYOyPoMhw4DkTVy/CSPsWF04=";

    fn b64(s: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn scratch_store(name: &str) -> Store {
        let mut suffix = [0u8; 8];
        random_bytes(&mut suffix).unwrap();
        let url = format!("memory://{name}-{}", stratalake_crypto::hex::encode(suffix));
        Store::open(&url, &Default::default()).unwrap()
    }

    fn keyring(provider: Arc<dyn KeyProvider>) -> Keyring {
        Keyring::new(provider, Classifications::default())
    }

    #[tokio::test]
    async fn a_repository_of_the_previous_release_opens_byte_for_byte() {
        let store = scratch_store("backup-pinned");
        store.put(CONFIG, CONFIG_V1.as_bytes().to_vec().into()).await.unwrap();
        let text = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(Vec::from_iter(0u8..32))
        };
        let env = EnvKeyProvider::with_lookup(move |n| (n == "STRATALAKE_KEY_PUBLIC").then(|| text.clone()));
        let repo = Repository::open(store.clone(), &keyring(Arc::new(env))).await.unwrap();
        assert_eq!(repo.id(), REPO_ID);
        assert_eq!(repo.key.expose().as_slice(), Vec::from_iter(0x20u8..0x40));
        // the slot for the current key existed: config.json is left as it was
        assert_eq!(store.get(CONFIG).await.unwrap().as_ref(), CONFIG_V1.as_bytes());

        // metadata ids, which new backups deduplicate against
        assert_eq!(
            repo.meta_id(br#"{"version":0}"#),
            "e29ba49185caa118276901aff47059d0903aaed80362b25a8b06297d0cd224f1"
        );
        assert_eq!(
            repo.meta_id(b""),
            "3e4a58859e1bf216c70deb5a810940df51fe2291adb3ed5a0bbdabe2bc249ec1"
        );
        // sealed objects
        let sealed = b64(SEALED_V1);
        assert_eq!(repo.open_sealed("meta/5e/5e0f", &sealed).unwrap(), br#"{"commit":1}"#);
        assert!(repo.open_sealed("meta/5e/5e0e", &sealed).is_err(), "bound to its name");
        // and what is sealed now has the same form: magic, nonce, ciphertext, tag
        let new = repo.seal("meta/5e/5e0f", br#"{"commit":1}"#).unwrap();
        assert_eq!(new.len(), sealed.len());
        assert_eq!(&new[..4], SEAL_MAGIC);
        assert_eq!(repo.open_sealed("meta/5e/5e0f", &new).unwrap(), br#"{"commit":1}"#);
        for bad in [&sealed[..sealed.len() - 1], &sealed[..20], b"SLB2".as_slice()] {
            assert!(repo.open_sealed("meta/5e/5e0f", bad).is_err());
        }
        let mut flipped = sealed.clone();
        flipped[10] ^= 1;
        assert!(repo.open_sealed("meta/5e/5e0f", &flipped).is_err());
    }

    /// A provider shaped like a KMS: it never releases master keys and seals in a form of its
    /// own. A repository is made, opened and re-slotted through `wrap` / `unwrap` alone.
    #[derive(Debug, Default)]
    struct Kms(MemoryKeyProvider);

    #[async_trait]
    impl KeyProvider for Kms {
        fn describe(&self) -> String {
            "test KMS".into()
        }
        async fn current_id(&self, classification: &str) -> stratalake_crypto::Result<KeyId> {
            self.0.current_id(classification).await
        }
        async fn wrap(
            &self,
            classification: &str,
            data_key: &[u8],
            context: &KeyContext,
        ) -> stratalake_crypto::Result<(KeyId, Vec<u8>)> {
            let (id, sealed) = self.0.wrap(classification, data_key, context).await?;
            Ok((id, [b"kms:".as_slice(), &sealed].concat()))
        }
        async fn unwrap(
            &self,
            id: &KeyId,
            wrapped: &[u8],
            context: &KeyContext,
        ) -> stratalake_crypto::Result<Zeroizing<Vec<u8>>> {
            let sealed = wrapped
                .strip_prefix(b"kms:".as_slice())
                .ok_or_else(|| CryptoError::Malformed {
                    reason: "not a test KMS ciphertext".into(),
                })?;
            self.0.unwrap(id, sealed, context).await
        }
        async fn rotate(&self, classification: &str) -> stratalake_crypto::Result<KeyId> {
            self.0.rotate(classification).await
        }
    }

    #[tokio::test]
    async fn a_provider_that_releases_no_master_keys_keeps_a_repository() {
        let kms = Arc::new(Kms::default());
        let keys = keyring(kms.clone());
        let store = scratch_store("backup-kms");
        let repo = Repository::init(store.clone(), &keys).await.unwrap();
        let sealed = repo.seal("snapshots/x", b"manifest").unwrap();
        assert_eq!(repo.key_slots().await.unwrap(), vec![KeyId::new("public", 1)]);

        kms.rotate("public").await.unwrap();
        let reopened = Repository::open(store.clone(), &keys).await.unwrap();
        assert_eq!(reopened.open_sealed("snapshots/x", &sealed).unwrap(), b"manifest");
        assert_eq!(
            reopened.key_slots().await.unwrap(),
            vec![KeyId::new("public", 1), KeyId::new("public", 2)],
            "a slot for the new current version"
        );
        // the new slot opens by itself
        kms.0.destroy("public", Some(1)).await.unwrap();
        let again = Repository::open(store.clone(), &keys).await.unwrap();
        assert_eq!(again.open_sealed("snapshots/x", &sealed).unwrap(), b"manifest");

        // another lake's provider cannot open it, and says which key it needs
        let e = Repository::open(store, &keyring(Arc::new(Kms::default())))
            .await
            .expect_err("a stranger's keys do not open it")
            .to_string();
        assert!(e.contains("public/v1") && e.contains("public/v2"), "{e}");
    }
}
