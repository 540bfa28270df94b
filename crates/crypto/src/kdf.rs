//! Key derivation with HKDF-SHA-256 (RFC 5869, the RustCrypto `hkdf` crate).
//!
//! [`derive_key`] is the one way to make a sub-key of a master key: one purpose label per use,
//! so that keys for different purposes are independent even when derived from the same master
//! key, and a context that binds the key to what it protects (a table id, a log, ...).
//!
//! The derivation, fixed for ever once a derived key protects stored data:
//!
//! ```text
//! PRK = HKDF-Extract(salt = "stratalake-kdf/v1", IKM = master key)
//! OKM = HKDF-Expand(PRK, info = u32_be(len(purpose)) ‖ purpose ‖ context, L = 32)
//! ```
//!
//! The length prefix keeps `(purpose, context)` pairs apart: `("ab", "c")` and `("a", "bc")`
//! give different keys.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{DerivedKey, KEY_LEN, MasterKey};

/// Salt of every [`derive_key`] derivation: HKDF's domain separator for Stratalake.
pub const KDF_SALT: &[u8] = b"stratalake-kdf/v1";

fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    okm
}

/// A sub-key of `master` for one purpose, by HKDF-SHA-256: extract with the salt
/// `stratalake-kdf/v1`, expand with the info `u32_be(len(purpose)) ‖ purpose ‖ context` to 32
/// bytes (fixed for ever once a derived key protects stored data).
///
/// * `purpose` names the use and its version, e.g. `"table-log-mac/v1"`; give every use its own
///   label, and never reuse a label for another use.
/// * `context` binds the key to what it protects (e.g. a table id); it may be empty.
///
/// The same inputs always give the same key; neither the master key nor a sibling key can be
/// computed from it.
///
/// ```
/// use stratalake_crypto::{MasterKey, derive_key};
/// let master = MasterKey::generate().unwrap();
/// let a = derive_key(&master, "table-log-mac/v1", b"table 1");
/// assert_eq!(a, derive_key(&master, "table-log-mac/v1", b"table 1"));
/// assert_ne!(a, derive_key(&master, "table-log-mac/v1", b"table 2"));
/// assert_ne!(a, derive_key(&master, "another-use/v1", b"table 1"));
/// assert_eq!(format!("{a:?}"), "DerivedKey(<redacted>)");
/// ```
pub fn derive_key(master: &MasterKey, purpose: &str, context: &[u8]) -> DerivedKey {
    let label = purpose.as_bytes();
    let len = u32::try_from(label.len()).expect("a purpose label shorter than 4 GiB");
    let mut info = Vec::with_capacity(4 + label.len() + context.len());
    info.extend_from_slice(&len.to_be_bytes());
    info.extend_from_slice(label);
    info.extend_from_slice(context);
    let okm = hkdf_sha256(KDF_SALT, master.expose(), &info);
    DerivedKey::from_bytes(okm.as_ref()).expect("HKDF output has the key length")
}

/// `SHA-256(label ‖ key ‖ msg)`: the keyed hash Stratalake used before it had [`derive_key`] and
/// [`crate::mac::hmac_sha256`].
///
/// **Only for outputs that are already persisted**, which would change if it did: the key of hash
/// masks (pseudonyms users store and join on; `label = "stratalake-mask-hash/v1\n"`, `key` = the
/// lowest level's master key, empty `msg`) and the ids of metadata objects in backup repositories
/// (`label = "stratalake-backup/meta-id\n"`, `key` = the repository key), which existing
/// repositories deduplicate against. New uses derive keys with [`derive_key`] and authenticate
/// with [`crate::mac::hmac_sha256`].
pub fn legacy_keyed_sha256(label: &[u8], key: &[u8], msg: &[u8]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(
        Sha256::new()
            .chain_update(label)
            .chain_update(key)
            .chain_update(msg)
            .finalize()
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        // The first 32 of the RFC's 42 output bytes (HKDF output is prefix-stable).
        assert_eq!(
            hex::encode(*hkdf_sha256(&salt, &ikm, &info)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    #[test]
    fn derive_key_is_pinned() {
        // Computed independently with Python's hmac/hashlib; pins the construction.
        let bytes: Vec<u8> = (0u8..32).collect();
        let master = MasterKey::from_bytes(&bytes).unwrap();
        assert_eq!(
            hex::encode(derive_key(&master, "test-purpose/v1", b"table 42").expose()),
            "049771f76da7c8d989a980092e0c3a7b44b59716ac69ab424feeb3af06afec5e"
        );
        assert_eq!(
            hex::encode(derive_key(&master, "table-log-mac/v1", b"").expose()),
            "52357973a293d67200fb9019a1c0bf24c7586ae6cecd2b82bfb431059386219b"
        );
    }

    #[test]
    fn label_and_context_do_not_run_together() {
        let master = MasterKey::generate().unwrap();
        assert_ne!(derive_key(&master, "ab", b"c"), derive_key(&master, "a", b"bc"));
        assert_ne!(
            derive_key(&master, "x", b"").expose(),
            master.expose(),
            "never the master key itself"
        );
    }

    #[test]
    fn legacy_keyed_sha256_is_pinned() {
        // Python: hashlib.sha256(label + key + msg)
        let key: Vec<u8> = (0u8..32).collect();
        assert_eq!(
            hex::encode(*legacy_keyed_sha256(b"label\n", b"key", b"msg")),
            "483e8a8da69e72ca172285cd8a232a3e55634e8836884b488669698ce0c9ff6e"
        );
        assert_eq!(
            hex::encode(*legacy_keyed_sha256(b"stratalake-mask-hash/v1\n", &key, b"")),
            "1d1fedde6b8e19d82d9cf597bb89a099ec5ae49ca5e7607a594bfeb0f2779118"
        );
        assert_eq!(
            hex::encode(*legacy_keyed_sha256(
                b"stratalake-backup/meta-id\n",
                &key,
                br#"{"a":1}"#
            )),
            "e934feb5ebf816661c6540e187544a4fd86cf475870420d75a22b5bc14e59191"
        );
    }
}
