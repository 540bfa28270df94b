//! # stratalake-crypto
//!
//! The key hierarchy of a Stratalake lake.
//!
//! ```text
//!  KeyProvider (key file | environment | your KMS)
//!      │  master key per classification and version   (a KMS never releases it)
//!      ▼
//!  KeyProvider::wrap / unwrap: built in AES-256-GCM (a KMS: its own),
//!  AAD = table id + file path + role + classification + key version
//!      │
//!      ▼
//!  data keys, fresh for every Parquet file: one footer key + one key per classification present
//!      │
//!      ▼
//!  Parquet Modular Encryption (AES-GCM, encrypted footer, AAD prefix bound to table and path)
//! ```
//!
//! * [`KeyProvider`] names master keys by [`KeyId`] (classification + version) and wraps and
//!   unwraps data keys under them ([`KeyProvider::wrap`] / [`KeyProvider::unwrap`]); a KMS does so
//!   without ever releasing master key bytes. [`conformance`] checks a provider.
//! * [`DataKey::generate`] makes a fresh 256-bit data key; [`wrap_data_key`] / [`unwrap_data_key`]
//!   seal it through a provider, [`wrap_key`] / [`unwrap_key`] under master key bytes, both bound
//!   to a [`KeyContext`] so that a wrapped key copied to another file, table or classification
//!   fails to open.
//! * [`parquet_props`] turns data keys into parquet-rs encryption and decryption properties.
//! * [`aead`] (AES-256-GCM in the stored framing), [`derive_key`] (HKDF-SHA-256), [`mac`]
//!   (HMAC-SHA-256, constant-time comparison) and [`hex`] are the workspace's only crypto and
//!   hex helpers: other crates use these and write none by hand. They come from the RustCrypto
//!   crates `aes-gcm`, `hkdf`, `hmac`, `sha2`, `subtle`, `zeroize` and from `hex`.
//!
//! * [`password`]: credentials of principals — argon2id password hashes, SCRAM-SHA-256
//!   verifiers and the server side of the exchange, API tokens (only hashes are stored).
//!
//! Key types ([`MasterKey`], [`DataKey`], [`DerivedKey`]) zero their bytes when dropped and compare
//! in constant time; unwrapped bytes come as [`Zeroizing`].
//!
//! Secrets never appear in `Debug` output or error messages:
//!
//! ```
//! use stratalake_crypto::{DataKey, MasterKey};
//! let k = MasterKey::generate().unwrap();
//! assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
//! let d = DataKey::generate().unwrap();
//! assert_eq!(format!("{d:?}"), "DataKey(<redacted>)");
//! ```

pub mod aead;
pub mod conformance;
mod error;
mod kdf;
mod keys;
pub mod mac;
pub mod parquet_props;
pub mod password;
mod provider;
mod wrap;

/// Hex encoding and decoding (the `hex` crate), for digests and ids shown or stored as text:
/// `hex::encode` gives lower-case hex.
pub use hex;
/// Zeroing of secrets in memory (the `zeroize` crate).
pub use zeroize::{self, Zeroizing};

pub use error::{Error, Result};
pub use kdf::{KDF_SALT, derive_key, legacy_keyed_sha256};
pub use keys::{DataKey, DerivedKey, KEY_LEN, KeyId, MasterKey, random_bytes};
pub use mac::{ct_eq, hmac_sha256, verify_hmac_sha256};
pub use provider::{EnvKeyProvider, KeyFileProvider, KeyProvider, MemoryKeyProvider};
pub use wrap::{KeyContext, WrappedKey, unwrap_data_key, unwrap_key, wrap_data_key, wrap_key};
