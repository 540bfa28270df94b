//! Authenticated encryption with AES-256-GCM (the RustCrypto `aes-gcm` crate), in the one framing
//! Stratalake stores: `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`, a fresh random nonce for
//! every message.
//!
//! The built-in key wrapping ([`crate::wrap_key`], [`crate::KeyProvider::wrap`]) and the sealed
//! objects of backup repositories are made with it; each caller chooses its associated data and
//! anything it puts around the result (a backup object starts with a magic of its own).
//!
//! ```
//! use stratalake_crypto::{DataKey, aead};
//! let key = DataKey::generate().unwrap();
//! let sealed = aead::seal(key.expose(), b"bound to this", b"plain").unwrap();
//! assert_eq!(sealed.len(), aead::NONCE_LEN + 5 + aead::TAG_LEN);
//! assert_eq!(aead::open(key.expose(), b"bound to this", &sealed).unwrap(), b"plain");
//! assert!(aead::open(key.expose(), b"bound to that", &sealed).is_none());
//! ```

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::{Error, KEY_LEN, Result, random_bytes};

/// Length of the nonce that starts every sealed message.
pub const NONCE_LEN: usize = 12;
/// Length of the authentication tag that ends every sealed message.
pub const TAG_LEN: usize = 16;

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    // The `zeroize` feature of aes-gcm zeroes the expanded key when the cipher is dropped.
    Aes256Gcm::new(key.into())
}

/// `nonce ‖ AES-256-GCM(key, nonce, plain, aad)` with a fresh random nonce.
pub fn seal(key: &[u8; KEY_LEN], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let ct = cipher(key)
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| Error::Malformed {
            reason: "AES-GCM encryption failed".into(),
        })?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The plaintext of what [`seal`] made under `key` and `aad`; `None` when it is not authentic
/// (another key or associated data, altered, truncated, or too short to be sealed at all).
/// The caller wraps the result in [`crate::Zeroizing`] when the plaintext is a secret.
pub fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at nonce length");
    cipher(key).decrypt(&Nonce::from(nonce), Payload { msg: ct, aad }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_gcm_test_case_14() {
        // AES-256, zero key, zero nonce, one zero block, no AAD (McGrew & Viega, test case 14).
        let key = [0u8; 32];
        let sealed = [
            [0u8; NONCE_LEN].as_slice(),
            &hex::decode("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919").unwrap(),
        ]
        .concat();
        assert_eq!(open(&key, b"", &sealed).unwrap(), [0u8; 16]);
    }

    #[test]
    fn fresh_nonces_and_every_refusal() {
        let key = [7u8; 32];
        let a = seal(&key, b"aad", b"msg").unwrap();
        let b = seal(&key, b"aad", b"msg").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN], "a nonce is never reused");
        assert_eq!(open(&key, b"aad", &a).unwrap(), b"msg");
        assert!(open(&[8u8; 32], b"aad", &a).is_none(), "another key");
        assert!(open(&key, b"aax", &a).is_none(), "other associated data");
        for i in [0, NONCE_LEN, a.len() - 1] {
            let mut t = a.clone();
            t[i] ^= 1;
            assert!(open(&key, b"aad", &t).is_none(), "flipped byte {i}");
        }
        assert!(open(&key, b"aad", &a[..a.len() - 1]).is_none());
        assert!(open(&key, b"aad", &a[..NONCE_LEN + TAG_LEN - 1]).is_none());
        assert!(open(&key, b"aad", &[]).is_none());
    }
}
