use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, Result};

/// Length in bytes of every key Stratalake makes (AES-256).
pub const KEY_LEN: usize = 32;

/// Fill a buffer from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Random(e.to_string()))
}

/// Which master key: a classification level and a version of its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId {
    /// Classification level, e.g. `confidential`.
    pub classification: String,
    /// Version of that level's master key, starting at 1; rotation adds a version.
    pub version: u32,
}

impl KeyId {
    /// A key id.
    pub fn new(classification: impl Into<String>, version: u32) -> Self {
        Self {
            classification: classification.into(),
            version,
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/v{}", self.classification, self.version)
    }
}

macro_rules! secret_key {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// Its bytes are zeroed when it is dropped (`zeroize`), compared in constant time
        /// (`subtle`) and never shown by `Debug`.
        #[derive(Clone)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// A fresh random key from the operating system's random source.
            pub fn generate() -> Result<Self> {
                let mut k = Self([0u8; KEY_LEN]);
                random_bytes(&mut k.0)?;
                Ok(k)
            }

            /// A key from exactly [`KEY_LEN`] bytes (copied; zeroing `bytes` is the caller's job).
            pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
                if bytes.len() != KEY_LEN {
                    return Err(Error::Malformed {
                        reason: format!("a key must be {KEY_LEN} bytes, got {}", bytes.len()),
                    });
                }
                let mut k = Self([0u8; KEY_LEN]);
                k.0.copy_from_slice(bytes);
                Ok(k)
            }

            /// The raw key bytes. Handle with care: never log them.
            pub fn expose(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            /// Constant time: how long it takes does not tell where two keys differ.
            fn eq(&self, other: &Self) -> bool {
                crate::mac::ct_eq(&self.0, &other.0)
            }
        }

        impl Eq for $name {}

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }

        impl ZeroizeOnDrop for $name {}
    };
}

secret_key!(
    MasterKey,
    "A 256-bit master key of one classification version. Wraps data keys."
);
secret_key!(
    DataKey,
    "A 256-bit data key: the footer key or a column-group key of one Parquet file."
);
secret_key!(
    DerivedKey,
    "A 256-bit key derived from a master key for one purpose (by [`derive_key`](crate::derive_key)), e.g. a MAC key."
);
