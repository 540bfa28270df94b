//! Message authentication and comparison of secrets, from the RustCrypto `hmac` and `subtle`
//! crates. Nothing here is written by hand.
//!
//! * [`hmac_sha256`] / [`verify_hmac_sha256`]: HMAC-SHA-256 (RFC 2104, FIPS 198-1) and its
//!   constant-time check;
//! * [`ct_eq`]: compare MACs, hashes that authenticate something, tokens or key bytes in a time
//!   that does not depend on where they differ. Never compare such values with `==`.
//!
//! ```
//! use stratalake_crypto::mac::{ct_eq, hmac_sha256, verify_hmac_sha256};
//! let tag = hmac_sha256(b"key", b"message");
//! assert!(verify_hmac_sha256(b"key", b"message", &tag));
//! assert!(!verify_hmac_sha256(b"key", b"massage", &tag));
//! assert!(!verify_hmac_sha256(b"key", b"message", &tag[..16]), "only whole tags verify");
//! assert!(ct_eq(&tag, &hmac_sha256(b"key", b"message")));
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length in bytes of an HMAC-SHA-256 tag.
pub const HMAC_SHA256_LEN: usize = 32;

fn keyed(key: &[u8], msg: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of every length (longer ones than the block are hashed first).
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of every length");
    m.update(msg);
    m
}

/// HMAC-SHA-256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; HMAC_SHA256_LEN] {
    keyed(key, msg).finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC-SHA-256 of `msg` under `key`, checked in constant time (`hmac`'s
/// own verification). A tag of any other length than [`HMAC_SHA256_LEN`] never verifies.
pub fn verify_hmac_sha256(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
    keyed(key, msg).verify_slice(tag).is_ok()
}

/// Constant-time equality of two byte strings (`subtle`). The time depends only on the lengths,
/// which are not secret, never on the position of the first difference.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_test_vectors() {
        // Test case 1
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: a key shorter than the block
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block, hashed first
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn verification() {
        let tag = hmac_sha256(b"k", b"m");
        assert!(verify_hmac_sha256(b"k", b"m", &tag));
        assert!(!verify_hmac_sha256(b"K", b"m", &tag));
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!verify_hmac_sha256(b"k", b"m", &bad));
        assert!(!verify_hmac_sha256(b"k", b"m", &tag[..31]));
        assert!(!verify_hmac_sha256(b"k", b"m", &[]));
    }

    #[test]
    fn hex_is_lower_case_without_separators() {
        // digests stored as text (audit chain, backup object names) depend on this form
        assert_eq!(hex::encode([0x00, 0xab, 0x0f, 0xf0]), "00ab0ff0");
        assert_eq!(hex::decode("00ab0ff0").unwrap(), [0x00, 0xab, 0x0f, 0xf0]);
    }

    #[test]
    fn compares_in_full() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
