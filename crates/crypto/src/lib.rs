//! # stratalake-crypto
//!
//! The key hierarchy of a Stratalake lake.
//!
//! ```text
//!  KeyProvider (key file | environment | your KMS)
//!      │  master key per classification and version   (never leaves the provider's process memory)
//!      ▼
//!  wrap / unwrap with AES-256-GCM, AAD = table id + file path + classification + key version
//!      │
//!      ▼
//!  data keys, fresh for every Parquet file: one footer key + one key per classification present
//!      │
//!      ▼
//!  Parquet Modular Encryption (AES-GCM, encrypted footer, AAD prefix bound to table and path)
//! ```
//!
//! * [`KeyProvider`] hands out master keys by [`KeyId`] (classification + version).
//! * [`DataKey::generate`] makes a fresh 256-bit data key; [`wrap_key`] / [`unwrap_key`] seal it
//!   under a master key, bound to a [`KeyContext`] so that a wrapped key copied to another file,
//!   table or classification fails to open.
//! * [`parquet_props`] turns data keys into parquet-rs encryption and decryption properties.
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

pub mod conformance;
mod error;
mod keys;
pub mod parquet_props;
mod provider;
mod wrap;

pub use error::{Error, Result};
pub use keys::{DataKey, KEY_LEN, KeyId, MasterKey, random_bytes};
pub use provider::{EnvKeyProvider, KeyFileProvider, KeyProvider, MemoryKeyProvider};
pub use wrap::{KeyContext, WrappedKey, unwrap_key, wrap_key};
