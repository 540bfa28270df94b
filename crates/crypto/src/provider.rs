use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::{Error, KeyId, MasterKey, Result};

/// Where master keys come from.
///
/// Contract for implementers:
/// * [`KeyProvider::current`] returns the newest usable version of a classification's key; it
///   may create the first version of a classification it has never seen.
/// * [`KeyProvider::get`] returns exactly the requested version, or [`Error::KeyNotFound`] /
///   [`Error::KeyDestroyed`]. It never substitutes another version.
/// * Keys never appear in `Debug` output, errors or logs.
///
/// An external KMS plugs in by implementing this trait: `get` asks the KMS to release (or to
/// unwrap) the master key for `id`, and `current` names the version new data is wrapped under.
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// A short description for error messages (never contains secrets).
    fn describe(&self) -> String;
    /// The current key of a classification, for wrapping new data keys.
    async fn current(&self, classification: &str) -> Result<(KeyId, MasterKey)>;
    /// A specific key version, for unwrapping.
    async fn get(&self, id: &KeyId) -> Result<MasterKey>;
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
    key: Option<String>,
    created: String,
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

    fn add(&mut self, classification: &str) -> Result<u32> {
        let versions = self.keys.entry(classification.to_string()).or_default();
        let version = versions.iter().map(|e| e.version).max().unwrap_or(0) + 1;
        let key = MasterKey::generate()?;
        versions.push(KeyEntry {
            version,
            key: Some(B64.encode(key.expose())),
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
        check_permissions(&path)?;
        let text = std::fs::read(&path).map_err(|e| key_file_err(&path, &e.to_string()))?;
        let body: KeyFileBody = serde_json::from_slice(&text).map_err(|e| {
            key_file_err(
                &path,
                &format!("not a Stratalake key file (line {}, column {})", e.line(), e.column()),
            )
        })?;
        if body.format != KEY_FILE_FORMAT {
            return Err(key_file_err(&path, &format!("unknown format {:?}", body.format)));
        }
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
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("keys")
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let json = serde_json::to_vec_pretty(body).map_err(|e| key_file_err(path, &e.to_string()))?;
    let mut f = opts.open(&tmp).map_err(|e| key_file_err(&tmp, &e.to_string()))?;
    f.write_all(&json).map_err(|e| key_file_err(&tmp, &e.to_string()))?;
    f.sync_all().map_err(|e| key_file_err(&tmp, &e.to_string()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| key_file_err(path, &e.to_string()))?;
    Ok(())
}

fn decode_key(b64: &str, what: impl Fn(&str) -> Error) -> Result<MasterKey> {
    let raw = B64.decode(b64.trim()).map_err(|_| what("not base64"))?;
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
            // First use of a classification the file has no key for: create one, durably.
            body.add(classification)?;
            write_key_file(&self.path, &body)?;
            tracing::info!(classification, path = %self.path.display(), "created master key");
        }
        let e = body.current(classification).expect("just added");
        let id = KeyId::new(classification, e.version);
        let key = decode_key(e.key.as_deref().unwrap_or_default(), |r| {
            key_file_err(&self.path, &format!("key {id}: {r}"))
        })?;
        Ok((id, key))
    }

    async fn get(&self, id: &KeyId) -> Result<MasterKey> {
        let body = self.body.lock().expect("key file lock");
        let entry = body
            .keys
            .get(&id.classification)
            .and_then(|v| v.iter().find(|e| e.version == id.version))
            .ok_or_else(|| Error::KeyNotFound {
                id: id.clone(),
                provider: self.describe(),
            })?;
        match &entry.key {
            Some(k) => decode_key(k, |r| key_file_err(&self.path, &format!("key {id}: {r}"))),
            None => Err(Error::KeyDestroyed { id: id.clone() }),
        }
    }
}

/// Master keys from environment variables: `STRATALAKE_KEY_<CLASSIFICATION>` holds version 1 and
/// `STRATALAKE_KEY_<CLASSIFICATION>_V<N>` version N, each the base64 of 32 bytes. The current
/// version is the highest one set. The classification is upper-cased in the variable name.
#[derive(Debug, Default)]
pub struct EnvKeyProvider {
    _priv: (),
}

impl EnvKeyProvider {
    /// A provider reading the process environment at each request.
    pub fn new() -> Self {
        Self::default()
    }

    fn var_name(id: &KeyId) -> String {
        let base = format!("STRATALAKE_KEY_{}", id.classification.to_ascii_uppercase());
        if id.version == 1 {
            base
        } else {
            format!("{base}_V{}", id.version)
        }
    }

    fn read(id: &KeyId) -> Result<Option<MasterKey>> {
        let var = Self::var_name(id);
        match std::env::var(&var) {
            Ok(v) => decode_key(&v, |r| Error::Env {
                var: var.clone(),
                reason: r.to_string(),
            })
            .map(Some),
            Err(std::env::VarError::NotPresent) => {
                // version 1 may also be written with an explicit _V1 suffix
                if id.version == 1 {
                    let v1 = format!("{var}_V1");
                    if let Ok(v) = std::env::var(&v1) {
                        return decode_key(&v, |r| Error::Env {
                            var: v1.clone(),
                            reason: r.to_string(),
                        })
                        .map(Some);
                    }
                }
                Ok(None)
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Env {
                var,
                reason: "not valid UTF-8".into(),
            }),
        }
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
            if let Some(k) = Self::read(&id)? {
                best = Some((id, k));
            }
        }
        best.ok_or_else(|| Error::KeyNotFound {
            id: KeyId::new(classification, 1),
            provider: self.describe(),
        })
    }

    async fn get(&self, id: &KeyId) -> Result<MasterKey> {
        Self::read(id)?.ok_or_else(|| Error::KeyNotFound {
            id: id.clone(),
            provider: self.describe(),
        })
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
}
