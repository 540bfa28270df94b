use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::{Error, KeyContext, KeyId, MasterKey, Result};

/// Where master keys live, and who wraps data keys under them.
///
/// Contract for implementers:
/// * [`KeyProvider::current_id`] names the newest usable version of a classification's key, the
///   one new data keys are wrapped under; it may create the first version of a classification it
///   has never seen, and answers [`Error::KeyDestroyed`] once every version was destroyed.
/// * [`KeyProvider::wrap`] seals a data key under the current key of a classification, bound to a
///   [`KeyContext`], and says which [`KeyId`] it used.
/// * [`KeyProvider::unwrap`] opens a sealed data key under exactly the [`KeyId`] given and only for
///   the context it was sealed for. Another key id (another classification or version), another
///   context, or an altered ciphertext fail with [`Error::UnwrapFailed`] (or [`Error::Malformed`]
///   for one too short to be a sealed key); an unknown or destroyed id with
///   [`Error::KeyNotFound`] / [`Error::KeyDestroyed`] naming it. It never tries another version.
/// * [`KeyProvider::current`] / [`KeyProvider::get`], where a provider releases master keys at
///   all, return the same versions; `get` never substitutes another version.
/// * Keys never appear in `Debug` output, errors or logs.
///
/// Stratalake wraps and unwraps every data key of the table log through `wrap` / `unwrap`
/// ([`crate::wrap_data_key`] / [`crate::unwrap_data_key`] store the result as a
/// [`crate::WrappedKey`]). Their default implementations take the master key from `current` /
/// `get` and use the built-in AES-256-GCM wrapping, associated data
/// [`KeyContext::associated_data`], so a provider that holds master keys (key file, environment,
/// memory) implements `current` and `get` only, and its wrapped keys are byte for byte those of
/// [`crate::wrap_key`], which the table logs of every earlier version hold.
///
/// **A KMS** that never releases master keys implements `current_id`, `wrap` and `unwrap` (plus
/// `rotate`, `destroy` and `versions` if it manages versions) and keeps the defaults of `current`
/// and `get`, which answer [`Error::Unsupported`]. It binds [`KeyContext::associated_data`] as the
/// KMS's additional authenticated data, and runs [`crate::conformance::check_provider`] against a
/// scratch key store. What still asks for master key bytes gets [`Error::Unsupported`] from such a
/// provider: the key of hash masks (`stratalake-query`), which derives from the bytes of the lowest
/// level's current master key ([`crate::legacy_keyed_sha256`]) so that stored pseudonyms stay
/// the same.
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// A short description for error messages (never contains secrets).
    fn describe(&self) -> String;

    /// The current key of a classification, with its bytes. Providers that do not release master
    /// keys keep this default, which answers [`Error::Unsupported`].
    async fn current(&self, classification: &str) -> Result<(KeyId, MasterKey)> {
        Err(releases_no_master_keys(
            self.describe(),
            format!("release the current {classification} master key"),
        ))
    }

    /// A specific key version, with its bytes. Providers that do not release master keys keep
    /// this default, which answers [`Error::Unsupported`].
    async fn get(&self, id: &KeyId) -> Result<MasterKey> {
        Err(releases_no_master_keys(
            self.describe(),
            format!("release master key {id}"),
        ))
    }

    /// The id of the current key of a classification, the one [`KeyProvider::wrap`] seals under.
    /// Default: the id [`KeyProvider::current`] returns.
    async fn current_id(&self, classification: &str) -> Result<KeyId> {
        self.current(classification).await.map(|(id, _)| id)
    }

    /// Seal `data_key` under the current key of `classification`, bound to `context`; returns the
    /// key id used and the sealed bytes (which only [`KeyProvider::unwrap`] needs to understand).
    /// Default: `nonce(12) ‖ AES-256-GCM(ciphertext ‖ tag)` under the master key from
    /// [`KeyProvider::current`], associated data [`KeyContext::associated_data`] of that id.
    async fn wrap(&self, classification: &str, data_key: &[u8], context: &KeyContext) -> Result<(KeyId, Vec<u8>)> {
        let (id, master) = self.current(classification).await?;
        let sealed = crate::wrap::seal(&master, &id, data_key, context)?;
        Ok((id, sealed))
    }

    /// Open what [`KeyProvider::wrap`] sealed under `id` for `context`. Default: the built-in
    /// wrapping with the master key from [`KeyProvider::get`].
    async fn unwrap(&self, id: &KeyId, wrapped: &[u8], context: &KeyContext) -> Result<Zeroizing<Vec<u8>>> {
        let master = self.get(id).await?;
        crate::wrap::open(&master, id, wrapped, context)
    }

    /// Create a new version of a classification's master key and make it the current one
    /// (key rotation). Providers whose keys are managed elsewhere return [`Error::Unsupported`]
    /// saying how to add a version there.
    async fn rotate(&self, classification: &str) -> Result<KeyId> {
        Err(Error::Unsupported {
            provider: self.describe(),
            operation: format!("create a new version of the {classification} key"),
            hint: "add the new version where the keys are managed, then run the rotation again".into(),
        })
    }

    /// Destroy one version of a classification's key, or with `None` every version, after which
    /// the provider refuses to create new ones (crypto-shredding). Returns the versions destroyed.
    async fn destroy(&self, classification: &str, version: Option<u32>) -> Result<Vec<KeyId>> {
        let _ = version;
        Err(Error::Unsupported {
            provider: self.describe(),
            operation: format!("destroy the {classification} key"),
            hint: "delete every copy of it where the keys are managed".into(),
        })
    }

    /// The versions of a classification's key the provider knows, each with whether it was
    /// destroyed. Providers that cannot enumerate return the current version only.
    async fn versions(&self, classification: &str) -> Result<Vec<(KeyId, bool)>> {
        match self.current_id(classification).await {
            Ok(id) => Ok(vec![(id, false)]),
            Err(Error::KeyDestroyed { id }) => Ok(vec![(id, true)]),
            Err(e) => Err(e),
        }
    }
}

fn releases_no_master_keys(provider: String, operation: String) -> Error {
    Error::Unsupported {
        provider,
        operation,
        hint: "this provider does not release master keys; it wraps and unwraps data keys itself".into(),
    }
}

#[derive(Serialize, Deserialize, Default)]
struct KeyFileBody {
    format: String,
    keys: BTreeMap<String, Vec<KeyEntry>>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    version: u32,
    /// base64 of the 32-byte key; absent once destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyText>,
    created: String,
}

/// The base64 text of a master key, zeroed when dropped.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct KeyText(String);

impl Drop for KeyText {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

const KEY_FILE_FORMAT: &str = "stratalake-keys/v1";

impl KeyFileBody {
    fn current(&self, classification: &str) -> Option<&KeyEntry> {
        self.keys
            .get(classification)?
            .iter()
            .filter(|e| e.key.is_some())
            .max_by_key(|e| e.version)
    }

    /// Every version of a classification destroyed: the newest one's id.
    fn shredded(&self, classification: &str) -> Option<KeyId> {
        let v = self.keys.get(classification)?;
        if v.is_empty() || v.iter().any(|e| e.key.is_some()) {
            return None;
        }
        v.iter().map(|e| e.version).max().map(|n| KeyId::new(classification, n))
    }

    fn add(&mut self, classification: &str) -> Result<u32> {
        let versions = self.keys.entry(classification.to_string()).or_default();
        let version = versions.iter().map(|e| e.version).max().unwrap_or(0) + 1;
        let key = MasterKey::generate()?;
        versions.push(KeyEntry {
            version,
            key: Some(KeyText(B64.encode(key.expose()))),
            created: now_unix(),
        });
        Ok(version)
    }
}

fn now_unix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix:{secs}")
}

/// Master keys in a local JSON file readable only by its owner (mode 0600), as `stratalake init`
/// creates it. Opening a file that group or others may read is refused.
pub struct KeyFileProvider {
    path: PathBuf,
    body: Mutex<KeyFileBody>,
}

impl fmt::Debug for KeyFileProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFileProvider")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyFileProvider {
    /// Create a new key file with one key for each classification. Fails if the file exists.
    pub fn create(path: impl AsRef<Path>, classifications: &[String]) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            return Err(key_file_err(&path, "already exists; refusing to overwrite master keys"));
        }
        let mut body = KeyFileBody {
            format: KEY_FILE_FORMAT.into(),
            keys: BTreeMap::new(),
        };
        for c in classifications {
            body.add(c)?;
        }
        write_key_file(&path, &body)?;
        Ok(Self {
            path,
            body: Mutex::new(body),
        })
    }

    /// Open an existing key file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let body = read_key_file(&path)?;
        Ok(Self {
            path,
            body: Mutex::new(body),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn key_file_err(path: &Path, reason: &str) -> Error {
    Error::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| key_file_err(path, &e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_file_err(
            path,
            &format!("permissions {mode:o} let others read master keys; run `chmod 600` on it"),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<()> {
    Ok(())
}

fn write_key_file(path: &Path, body: &KeyFileBody) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut nonce = [0u8; 8];
    crate::random_bytes(&mut nonce)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("keys"),
        hex::encode(nonce)
    ));
    // A fresh name, created exclusively: never follows a planted symlink, never reuses a
    // file with looser permissions.
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let json = Zeroizing::new(serde_json::to_vec_pretty(body).map_err(|e| key_file_err(path, &e.to_string()))?);
    let mut f = opts.open(&tmp).map_err(|e| key_file_err(&tmp, &e.to_string()))?;
    let written = f.write_all(&json).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(key_file_err(path, &e.to_string()));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read_key_file(path: &Path) -> Result<KeyFileBody> {
    check_permissions(path)?;
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| key_file_err(path, &e.to_string()))?);
    let body: KeyFileBody = serde_json::from_slice(&text).map_err(|e| {
        key_file_err(
            path,
            &format!("not a Stratalake key file (line {}, column {})", e.line(), e.column()),
        )
    })?;
    if body.format != KEY_FILE_FORMAT {
        return Err(key_file_err(path, &format!("unknown format {:?}", body.format)));
    }
    Ok(body)
}

/// An exclusive lock on `<key file>.lock`, held while the key file is read and rewritten, so
/// that processes sharing a key file never overwrite each other's new keys.
fn lock_key_file(path: &Path) -> Result<std::fs::File> {
    let lock_path = path.with_extension("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| key_file_err(&lock_path, &e.to_string()))?;
    f.lock().map_err(|e| key_file_err(&lock_path, &e.to_string()))?;
    Ok(f)
}

fn decode_key(b64: &str, what: impl Fn(&str) -> Error) -> Result<MasterKey> {
    let raw = Zeroizing::new(B64.decode(b64.trim()).map_err(|_| what("not base64"))?);
    MasterKey::from_bytes(&raw).map_err(|_| what("a master key must be 32 bytes (44 base64 characters)"))
}

#[async_trait]
impl KeyProvider for KeyFileProvider {
    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }

    async fn current(&self, classification: &str) -> Result<(KeyId, MasterKey)> {
        let mut body = self.body.lock().expect("key file lock");
        if body.current(classification).is_none() {
            if let Some(id) = body.shredded(classification) {
                return Err(Error::KeyDestroyed { id });
            }
            // First use of a level the file has no key for: under the file lock, re-read the
            // file (another process may have added it), then create one, durably.
            let _lock = lock_key_file(&self.path)?;
            *body = read_key_file(&self.path)?;
            if let Some(id) = body.shredded(classification) {
                return Err(Error::KeyDestroyed { id });
            }
            if body.current(classification).is_none() {
                body.add(classification)?;
                write_key_file(&self.path, &body)?;
                tracing::info!(classification, path = %self.path.display(), "created master key");
            }
        }
        let e = body.current(classification).expect("just added");
        let id = KeyId::new(classification, e.version);
        let key = decode_key(e.key.as_ref().map_or("", |k| k.0.as_str()), |r| {
            key_file_err(&self.path, &format!("key {id}: {r}"))
        })?;
        Ok((id, key))
    }

    async fn get(&self, id: &KeyId) -> Result<MasterKey> {
        let mut body = self.body.lock().expect("key file lock");
        let known = |b: &KeyFileBody| {
            b.keys
                .get(&id.classification)
                .is_some_and(|v| v.iter().any(|e| e.version == id.version))
        };
        if !known(&body) {
            // Another process may have added it since this provider read the file.
            *body = read_key_file(&self.path)?;
        }
        let entry = body
            .keys
            .get(&id.classification)
            .and_then(|v| v.iter().find(|e| e.version == id.version))
            .ok_or_else(|| Error::KeyNotFound {
                id: id.clone(),
                provider: self.describe(),
            })?;
        match &entry.key {
            Some(k) => decode_key(&k.0, |r| key_file_err(&self.path, &format!("key {id}: {r}"))),
            None => Err(Error::KeyDestroyed { id: id.clone() }),
        }
    }

    async fn rotate(&self, classification: &str) -> Result<KeyId> {
        let version = self.modify(|b| {
            if let Some(id) = b.shredded(classification) {
                return Err(Error::KeyDestroyed { id });
            }
            b.add(classification)
        })?;
        tracing::info!(classification, version, path = %self.path.display(), "rotated master key");
        Ok(KeyId::new(classification, version))
    }

    async fn destroy(&self, classification: &str, version: Option<u32>) -> Result<Vec<KeyId>> {
        let ids = self.modify(|b| {
            let entries = b.keys.get_mut(classification).ok_or_else(|| Error::KeyNotFound {
                id: KeyId::new(classification, version.unwrap_or(1)),
                provider: format!("key file {}", self.path.display()),
            })?;
            let mut ids = Vec::new();
            for e in entries.iter_mut() {
                if version.is_none_or(|v| v == e.version) && e.key.is_some() {
                    e.key = None;
                    ids.push(KeyId::new(classification, e.version));
                }
            }
            if let Some(v) = version
                && ids.is_empty()
                && !entries.iter().any(|e| e.version == v)
            {
                return Err(Error::KeyNotFound {
                    id: KeyId::new(classification, v),
                    provider: format!("key file {}", self.path.display()),
                });
            }
            Ok(ids)
        })?;
        tracing::warn!(classification, destroyed = ids.len(), path = %self.path.display(), "destroyed master key versions");
        Ok(ids)
    }

    async fn versions(&self, classification: &str) -> Result<Vec<(KeyId, bool)>> {
        let mut body = self.body.lock().expect("key file lock");
        *body = read_key_file(&self.path)?;
        Ok(body
            .keys
            .get(classification)
            .map(|v| {
                v.iter()
                    .map(|e| (KeyId::new(classification, e.version), e.key.is_none()))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl KeyFileProvider {
    /// Re-read the file under its lock, change it, write it back durably.
    fn modify<T>(&self, f: impl FnOnce(&mut KeyFileBody) -> Result<T>) -> Result<T> {
        let mut body = self.body.lock().expect("key file lock");
        let _lock = lock_key_file(&self.path)?;
        let mut fresh = read_key_file(&self.path)?;
        let out = f(&mut fresh)?;
        write_key_file(&self.path, &fresh)?;
        *body = fresh;
        Ok(out)
    }
}

/// Master keys from environment variables: `STRATALAKE_KEY_<CLASSIFICATION>` holds version 1 and
/// `STRATALAKE_KEY_<CLASSIFICATION>_V<N>` version N, each the base64 of 32 bytes. The current
/// version is the highest one set. The classification is upper-cased in the variable name.
#[derive(Default, Clone)]
pub struct EnvKeyProvider {
    lookup: Option<Lookup>,
}

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl fmt::Debug for EnvKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvKeyProvider")
    }
}

impl EnvKeyProvider {
    /// A provider reading the process environment at each request.
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider reading variables through `lookup` instead of the process environment
    /// (for a secrets manager that exposes variables, and for tests).
    pub fn with_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Some(Arc::new(lookup)),
        }
    }

    fn var_name(id: &KeyId) -> String {
        let base = format!("STRATALAKE_KEY_{}", id.classification.to_ascii_uppercase());
        if id.version == 1 {
            base
        } else {
            format!("{base}_V{}", id.version)
        }
    }

    fn var(&self, name: &str) -> Result<Option<Zeroizing<String>>> {
        if let Some(l) = &self.lookup {
            return Ok(l(name).map(Zeroizing::new));
        }
        match std::env::var(name) {
            Ok(v) => Ok(Some(Zeroizing::new(v))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Env {
                var: name.to_string(),
                reason: "not valid UTF-8".into(),
            }),
        }
    }

    fn read(&self, id: &KeyId) -> Result<Option<MasterKey>> {
        let var = Self::var_name(id);
        let mut names = vec![var.clone()];
        if id.version == 1 {
            // version 1 may also be written with an explicit _V1 suffix
            names.push(format!("{var}_V1"));
        }
        for name in names {
            if let Some(v) = self.var(&name)? {
                return decode_key(&v, |r| Error::Env {
                    var: name.clone(),
                    reason: r.to_string(),
                })
                .map(Some);
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl KeyProvider for EnvKeyProvider {
    fn describe(&self) -> String {
        "environment variables STRATALAKE_KEY_*".into()
    }

    async fn current(&self, classification: &str) -> Result<(KeyId, MasterKey)> {
        let mut best = None;
        for version in 1..=1000u32 {
            let id = KeyId::new(classification, version);
            if let Some(k) = self.read(&id)? {
                best = Some((id, k));
            }
        }
        best.ok_or_else(|| Error::KeyNotFound {
            id: KeyId::new(classification, 1),
            provider: self.describe(),
        })
    }

    async fn get(&self, id: &KeyId) -> Result<MasterKey> {
        self.read(id)?.ok_or_else(|| Error::KeyNotFound {
            id: id.clone(),
            provider: self.describe(),
        })
    }

    async fn rotate(&self, classification: &str) -> Result<KeyId> {
        let next = match self.current(classification).await {
            Ok((id, _)) => id.version + 1,
            Err(_) => 1,
        };
        Err(Error::Unsupported {
            provider: self.describe(),
            operation: format!("create a new version of the {classification} key"),
            hint: format!(
                "set {} to the base64 of 32 random bytes (`openssl rand -base64 32`) wherever the lake runs, then run the rotation again",
                Self::var_name(&KeyId::new(classification, next))
            ),
        })
    }

    async fn destroy(&self, classification: &str, _version: Option<u32>) -> Result<Vec<KeyId>> {
        Err(Error::Unsupported {
            provider: self.describe(),
            operation: format!("destroy the {classification} key"),
            hint: format!(
                "unset {}* everywhere and delete every stored copy of the value",
                Self::var_name(&KeyId::new(classification, 1))
            ),
        })
    }

    async fn versions(&self, classification: &str) -> Result<Vec<(KeyId, bool)>> {
        let mut out = Vec::new();
        for version in 1..=1000u32 {
            let id = KeyId::new(classification, version);
            if self.read(&id)?.is_some() {
                out.push((id, false));
            }
        }
        Ok(out)
    }
}

/// Master keys held only in this process's memory, created on first use. For tests and for
/// `memory://` lakes; keys vanish with the process.
#[derive(Default)]
pub struct MemoryKeyProvider {
    keys: Mutex<BTreeMap<String, Vec<Option<MasterKey>>>>,
}

impl fmt::Debug for MemoryKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryKeyProvider(<redacted>)")
    }
}

impl MemoryKeyProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl KeyProvider for MemoryKeyProvider {
    fn describe(&self) -> String {
        "in-memory keys".into()
    }

    async fn current(&self, classification: &str) -> Result<(KeyId, MasterKey)> {
        let mut keys = self.keys.lock().expect("memory keys lock");
        let versions = keys.entry(classification.to_string()).or_default();
        if versions.is_empty() {
            versions.push(Some(MasterKey::generate()?));
        }
        let (i, k) = versions
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, k)| k.as_ref().map(|k| (i, k.clone())))
            .ok_or_else(|| Error::KeyDestroyed {
                id: KeyId::new(classification, versions.len() as u32),
            })?;
        Ok((KeyId::new(classification, i as u32 + 1), k))
    }

    async fn get(&self, id: &KeyId) -> Result<MasterKey> {
        let keys = self.keys.lock().expect("memory keys lock");
        match keys
            .get(&id.classification)
            .and_then(|v| v.get((id.version as usize).wrapping_sub(1)))
        {
            Some(Some(k)) => Ok(k.clone()),
            Some(None) => Err(Error::KeyDestroyed { id: id.clone() }),
            None => Err(Error::KeyNotFound {
                id: id.clone(),
                provider: self.describe(),
            }),
        }
    }

    async fn rotate(&self, classification: &str) -> Result<KeyId> {
        let mut keys = self.keys.lock().expect("memory keys lock");
        let versions = keys.entry(classification.to_string()).or_default();
        if !versions.is_empty() && versions.iter().all(Option::is_none) {
            return Err(Error::KeyDestroyed {
                id: KeyId::new(classification, versions.len() as u32),
            });
        }
        versions.push(Some(MasterKey::generate()?));
        Ok(KeyId::new(classification, versions.len() as u32))
    }

    async fn destroy(&self, classification: &str, version: Option<u32>) -> Result<Vec<KeyId>> {
        let mut keys = self.keys.lock().expect("memory keys lock");
        let versions = keys.get_mut(classification).ok_or_else(|| Error::KeyNotFound {
            id: KeyId::new(classification, version.unwrap_or(1)),
            provider: "in-memory keys".into(),
        })?;
        if let Some(v) = version
            && (v == 0 || v as usize > versions.len())
        {
            return Err(Error::KeyNotFound {
                id: KeyId::new(classification, v),
                provider: "in-memory keys".into(),
            });
        }
        let mut ids = Vec::new();
        for (i, k) in versions.iter_mut().enumerate() {
            let v = i as u32 + 1;
            if version.is_none_or(|x| x == v) && k.is_some() {
                *k = None;
                ids.push(KeyId::new(classification, v));
            }
        }
        Ok(ids)
    }

    async fn versions(&self, classification: &str) -> Result<Vec<(KeyId, bool)>> {
        let keys = self.keys.lock().expect("memory keys lock");
        Ok(keys
            .get(classification)
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(i, k)| (KeyId::new(classification, i as u32 + 1), k.is_none()))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_provider_passes_the_conformance_suite() {
        crate::conformance::check_provider(&MemoryKeyProvider::new(), true).await;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.keys");
        let kf = KeyFileProvider::create(&path, &["public".to_string(), "internal".to_string()]).unwrap();
        crate::conformance::check_provider(&kf, true).await;
        // what was destroyed stays destroyed for every process that opens the file
        let reopened = KeyFileProvider::open(&path).unwrap();
        assert!(matches!(
            reopened.get(&KeyId::new("internal", 1)).await,
            Err(Error::KeyDestroyed { .. })
        ));
        assert!(matches!(
            reopened.current("internal").await,
            Err(Error::KeyDestroyed { .. })
        ));

        let vars: BTreeMap<String, String> = [
            ("STRATALAKE_KEY_PUBLIC", [1u8; 32]),
            ("STRATALAKE_KEY_INTERNAL", [2u8; 32]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), B64.encode(v)))
        .collect();
        let env = EnvKeyProvider::with_lookup(move |n| vars.get(n).cloned());
        crate::conformance::check_provider(&env, false).await;
        let e = env.rotate("internal").await.unwrap_err().to_string();
        assert!(e.contains("STRATALAKE_KEY_INTERNAL_V2"), "{e}");
    }

    /// A provider shaped like a KMS: it never releases master keys (`current`/`get` keep their
    /// defaults) and seals in a format of its own. Stands for the contract a real KMS fulfils.
    #[derive(Debug, Default)]
    struct TestKms {
        inside: MemoryKeyProvider,
    }

    const KMS_TAG: &[u8] = b"kms1";

    #[async_trait]
    impl KeyProvider for TestKms {
        fn describe(&self) -> String {
            "test KMS".into()
        }
        async fn current_id(&self, classification: &str) -> Result<KeyId> {
            self.inside.current_id(classification).await
        }
        async fn wrap(&self, classification: &str, data_key: &[u8], context: &KeyContext) -> Result<(KeyId, Vec<u8>)> {
            let (id, sealed) = self.inside.wrap(classification, data_key, context).await?;
            Ok((id, [KMS_TAG, &sealed].concat()))
        }
        async fn unwrap(&self, id: &KeyId, wrapped: &[u8], context: &KeyContext) -> Result<Zeroizing<Vec<u8>>> {
            let sealed = wrapped.strip_prefix(KMS_TAG).ok_or_else(|| Error::Malformed {
                reason: format!("{context}: not a test KMS ciphertext"),
            })?;
            self.inside.unwrap(id, sealed, context).await
        }
        async fn rotate(&self, classification: &str) -> Result<KeyId> {
            self.inside.rotate(classification).await
        }
        async fn destroy(&self, classification: &str, version: Option<u32>) -> Result<Vec<KeyId>> {
            self.inside.destroy(classification, version).await
        }
        async fn versions(&self, classification: &str) -> Result<Vec<(KeyId, bool)>> {
            self.inside.versions(classification).await
        }
    }

    #[tokio::test]
    async fn a_provider_that_releases_no_master_keys_passes_too() {
        let kms = TestKms::default();
        crate::conformance::check_provider(&kms, true).await;
        let e = kms.current("public").await.unwrap_err().to_string();
        assert!(
            e.contains("test KMS") && e.contains("does not release master keys"),
            "{e}"
        );
        assert!(matches!(
            kms.get(&KeyId::new("public", 1)).await,
            Err(Error::Unsupported { .. })
        ));
        // the stored form goes through the provider's own wrapping
        let ctx = KeyContext {
            table_id: "t".into(),
            file: "f".into(),
            role: "public".into(),
        };
        let dk = crate::DataKey::generate().unwrap();
        let w = crate::wrap_data_key(&kms, "public", &dk, &ctx).await.unwrap();
        assert!(B64.decode(&w.sealed).unwrap().starts_with(KMS_TAG));
        assert_eq!(crate::unwrap_data_key(&kms, &w, &ctx).await.unwrap(), dk);
    }

    #[tokio::test]
    async fn key_file_is_shared_safely_between_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.keys");
        let a = KeyFileProvider::create(&path, &["public".to_string()]).unwrap();
        let b = KeyFileProvider::open(&path).unwrap();
        // a adds a level b has never seen; b must find it, not invent another v1
        let (id_a, k_a) = a.current("restricted").await.unwrap();
        let (id_b, k_b) = b.current("restricted").await.unwrap();
        assert_eq!(id_a, id_b);
        assert_eq!(k_a, k_b);
        assert_eq!(b.get(&id_a).await.unwrap(), k_a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // no temp files left behind
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        assert!(matches!(
            a.get(&KeyId::new("public", 9)).await,
            Err(Error::KeyNotFound { .. })
        ));
        assert!(KeyFileProvider::create(&path, &[]).is_err());
    }

    #[tokio::test]
    async fn env_provider_reads_versions() {
        let level = "envtest";
        let vars: BTreeMap<String, String> = [
            ("STRATALAKE_KEY_ENVTEST".to_string(), B64.encode([1u8; 32])),
            ("STRATALAKE_KEY_ENVTEST_V3".to_string(), B64.encode([3u8; 32])),
            ("STRATALAKE_KEY_BROKEN".to_string(), "not base64!".to_string()),
        ]
        .into();
        let p = EnvKeyProvider::with_lookup(move |k| vars.get(k).cloned());
        let (id, k) = p.current(level).await.unwrap();
        assert_eq!(id.version, 3);
        assert_eq!(k.expose(), &[3u8; 32]);
        assert_eq!(p.get(&KeyId::new(level, 1)).await.unwrap().expose(), &[1u8; 32]);
        assert!(matches!(
            p.get(&KeyId::new(level, 2)).await,
            Err(Error::KeyNotFound { .. })
        ));
        let e = p.get(&KeyId::new("broken", 1)).await.unwrap_err().to_string();
        assert!(e.contains("STRATALAKE_KEY_BROKEN") && !e.contains("not base64!"), "{e}");
        assert!(matches!(p.current("absent").await, Err(Error::KeyNotFound { .. })));
    }
}
