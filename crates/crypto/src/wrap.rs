use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::{DataKey, Error, KeyId, MasterKey, Result, random_bytes};

const NONCE_LEN: usize = 12;

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
    fn aad(&self, id: &KeyId) -> Vec<u8> {
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
    /// base64 of nonce (12 bytes) followed by ciphertext and tag (48 bytes).
    pub sealed: String,
}

/// Seal `data` under `master`, bound to `ctx`.
pub fn wrap_key(master: &MasterKey, id: &KeyId, data: &DataKey, ctx: &KeyContext) -> Result<WrappedKey> {
    let cipher = Aes256Gcm::new_from_slice(master.expose()).map_err(|_| Error::Malformed {
        reason: "master key has the wrong length".into(),
    })?;
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let aad = ctx.aad(id);
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: data.expose(),
                aad: &aad,
            },
        )
        .map_err(|_| Error::Malformed {
            reason: "AES-GCM encryption failed".into(),
        })?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(WrappedKey {
        key: id.clone(),
        sealed: B64.encode(out),
    })
}

/// Open a wrapped key with its master key. Fails if the master key is wrong or if the wrapped key
/// was altered or moved to another context.
pub fn unwrap_key(master: &MasterKey, wrapped: &WrappedKey, ctx: &KeyContext) -> Result<DataKey> {
    let raw = B64.decode(wrapped.sealed.as_bytes()).map_err(|_| Error::Malformed {
        reason: format!("{ctx}: sealed key is not base64"),
    })?;
    if raw.len() < NONCE_LEN + 16 {
        return Err(Error::Malformed {
            reason: format!("{ctx}: sealed key is too short"),
        });
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at nonce length");
    let cipher = Aes256Gcm::new_from_slice(master.expose()).map_err(|_| Error::Malformed {
        reason: "master key has the wrong length".into(),
    })?;
    let aad = ctx.aad(&wrapped.key);
    let mut plain = cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
        .map_err(|_| Error::UnwrapFailed {
            id: wrapped.key.clone(),
            context: ctx.to_string(),
        })?;
    let key = DataKey::from_bytes(&plain);
    plain.fill(0);
    key
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
