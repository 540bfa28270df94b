use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{DataKey, Error, KeyId, KeyProvider, MasterKey, Result, aead};

/// What a wrapped key is bound to. It is authenticated (AES-GCM associated data), not secret:
/// a wrapped key opens only for the same table, file, and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyContext {
    /// The table's id (a UUID fixed at creation).
    pub table_id: String,
    /// The data file's path relative to the table.
    pub file: String,
    /// The key's role in the file: `footer` or a classification name.
    pub role: String,
}

impl KeyContext {
    /// The associated data a key wrapped under master key `id` for this context is bound to
    /// (format in `docs/encryption.md`, "Wrapping"). A KMS provider passes it to the KMS as
    /// additional authenticated data (or encryption context).
    pub fn associated_data(&self, id: &KeyId) -> Vec<u8> {
        format!(
            "stratalake-dek/v1\n{}\n{}\n{}\n{}\n{}",
            self.table_id, self.file, self.role, id.classification, id.version
        )
        .into_bytes()
    }
}

impl fmt::Display for KeyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key of file {} in table {}", self.role, self.file, self.table_id)
    }
}

/// A data key sealed under a master key: stored in the table log, never the plaintext key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The master key that seals it.
    pub key: KeyId,
    /// base64 of what [`KeyProvider::wrap`] returned. The built-in wrapping: nonce (12 bytes)
    /// followed by ciphertext and tag (48 bytes).
    pub sealed: String,
}

/// The built-in wrapping: `nonce ‖ AES-256-GCM(master, nonce, plain, aad = ctx + id)` ([`crate::aead`]).
pub(crate) fn seal(master: &MasterKey, id: &KeyId, plain: &[u8], ctx: &KeyContext) -> Result<Vec<u8>> {
    aead::seal(master.expose(), &ctx.associated_data(id), plain)
}

/// Opens what [`seal`] made, under the same master key id and context.
pub(crate) fn open(master: &MasterKey, id: &KeyId, raw: &[u8], ctx: &KeyContext) -> Result<Zeroizing<Vec<u8>>> {
    if raw.len() < aead::NONCE_LEN + aead::TAG_LEN {
        return Err(Error::Malformed {
            reason: format!("{ctx}: sealed key is too short"),
        });
    }
    aead::open(master.expose(), &ctx.associated_data(id), raw)
        .map(Zeroizing::new)
        .ok_or_else(|| Error::UnwrapFailed {
            id: id.clone(),
            context: ctx.to_string(),
        })
}

fn decode_sealed(wrapped: &WrappedKey, ctx: &KeyContext) -> Result<Vec<u8>> {
    B64.decode(wrapped.sealed.as_bytes()).map_err(|_| Error::Malformed {
        reason: format!("{ctx}: sealed key is not base64"),
    })
}

/// Seal `data` under `master`, bound to `ctx`. Needs the master key's bytes: code that has a
/// [`KeyProvider`] uses [`wrap_data_key`], which works with a KMS too.
pub fn wrap_key(master: &MasterKey, id: &KeyId, data: &DataKey, ctx: &KeyContext) -> Result<WrappedKey> {
    Ok(WrappedKey {
        key: id.clone(),
        sealed: B64.encode(seal(master, id, data.expose(), ctx)?),
    })
}

/// Open a wrapped key with its master key. Fails if the master key is wrong or if the wrapped key
/// was altered or moved to another context. Code that has a [`KeyProvider`] uses
/// [`unwrap_data_key`].
pub fn unwrap_key(master: &MasterKey, wrapped: &WrappedKey, ctx: &KeyContext) -> Result<DataKey> {
    let raw = decode_sealed(wrapped, ctx)?;
    let plain = open(master, &wrapped.key, &raw, ctx)?;
    DataKey::from_bytes(&plain)
}

/// Seal `data` under the current master key of `classification`, bound to `ctx`, by the
/// provider ([`KeyProvider::wrap`]); the master key's bytes never leave the provider.
pub async fn wrap_data_key(
    provider: &dyn KeyProvider,
    classification: &str,
    data: &DataKey,
    ctx: &KeyContext,
) -> Result<WrappedKey> {
    let (key, sealed) = provider.wrap(classification, data.expose(), ctx).await?;
    Ok(WrappedKey {
        key,
        sealed: B64.encode(sealed),
    })
}

/// Open a wrapped key by the provider ([`KeyProvider::unwrap`]), under the master key it names
/// and only for the context it was wrapped for.
pub async fn unwrap_data_key(provider: &dyn KeyProvider, wrapped: &WrappedKey, ctx: &KeyContext) -> Result<DataKey> {
    let raw = decode_sealed(wrapped, ctx)?;
    let plain = provider.unwrap(&wrapped.key, &raw, ctx).await?;
    DataKey::from_bytes(&plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(file: &str) -> KeyContext {
        KeyContext {
            table_id: "t1".into(),
            file: file.into(),
            role: "secret".into(),
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let m = MasterKey::generate().unwrap();
        let id = KeyId::new("secret", 1);
        let d = DataKey::generate().unwrap();
        let w = wrap_key(&m, &id, &d, &ctx("a.parquet")).unwrap();
        assert_eq!(unwrap_key(&m, &w, &ctx("a.parquet")).unwrap(), d);
        // moved to another file
        let e = unwrap_key(&m, &w, &ctx("b.parquet")).unwrap_err();
        assert!(matches!(e, Error::UnwrapFailed { .. }), "{e}");
        // wrong master key
        let m2 = MasterKey::generate().unwrap();
        assert!(unwrap_key(&m2, &w, &ctx("a.parquet")).is_err());
        // claims another key version
        let mut w2 = w.clone();
        w2.key.version = 2;
        assert!(unwrap_key(&m, &w2, &ctx("a.parquet")).is_err());
        // flipped byte
        let mut raw = B64.decode(&w.sealed).unwrap();
        raw[20] ^= 1;
        let w3 = WrappedKey {
            key: id,
            sealed: B64.encode(raw),
        };
        assert!(unwrap_key(&m, &w3, &ctx("a.parquet")).is_err());
    }

    /// A wrapped key as the table log stores it, made independently of this code (Python's
    /// `cryptography` AES-GCM, the associated data as `docs/encryption.md` specifies it). Wrapped
    /// keys on disk are a promise: this must open, by the master key and by a provider.
    #[tokio::test]
    async fn stored_wrapped_keys_still_open() {
        let master: Vec<u8> = (0u8..32).collect();
        let data: Vec<u8> = [[0x42u8; 16], [0x17; 16]].concat();
        let wrapped = WrappedKey {
            key: KeyId::new("confidential", 3),
            sealed: "ZGVmZ2hpamtsbW5vClmcJDurFNx8IB2qmCcov1XVER2ce+RlsMa7X+y0sl/neBj1bbWq9Xx/jxbPP9BJ".into(),
        };
        let ctx = KeyContext {
            table_id: "6f1c0a52-0000-4000-8000-000000000001".into(),
            file: "data/region=north/part-0.parquet".into(),
            role: "confidential".into(),
        };
        let m = MasterKey::from_bytes(&master).unwrap();
        assert_eq!(unwrap_key(&m, &wrapped, &ctx).unwrap().expose().as_slice(), data);
        let b64 = B64.encode(&master);
        let p =
            crate::EnvKeyProvider::with_lookup(move |n| (n == "STRATALAKE_KEY_CONFIDENTIAL_V3").then(|| b64.clone()));
        assert_eq!(
            unwrap_data_key(&p, &wrapped, &ctx).await.unwrap().expose().as_slice(),
            data
        );
        // and what the provider wraps now is the same format
        let d = DataKey::from_bytes(&data).unwrap();
        let w = wrap_data_key(&p, "confidential", &d, &ctx).await.unwrap();
        assert_eq!(w.key, wrapped.key);
        assert_eq!(w.sealed.len(), wrapped.sealed.len());
        assert_eq!(unwrap_key(&m, &w, &ctx).unwrap(), d);
        assert_eq!(
            unwrap_data_key(&p, &wrap_key(&m, &w.key, &d, &ctx).unwrap(), &ctx)
                .await
                .unwrap(),
            d
        );
    }

    #[test]
    fn errors_carry_no_key_material() {
        let m = MasterKey::generate().unwrap();
        let d = DataKey::generate().unwrap();
        let w = wrap_key(&m, &KeyId::new("secret", 1), &d, &ctx("a")).unwrap();
        let e = unwrap_key(&MasterKey::generate().unwrap(), &w, &ctx("a"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains(&w.sealed));
        assert!(!e.contains(&B64.encode(m.expose())));
    }
}
