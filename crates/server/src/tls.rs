//! TLS: the certificate chain and key from PEM files, on rustls with the ring provider.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::{Error, Result};

/// A certificate chain and its private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1). Keep it readable only by the server's user.
    pub key: PathBuf,
}

pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let bad = |path: &PathBuf, reason: String| Error::Tls {
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(&files.cert, "holds no certificate".into()));
    }
    // the error of a key file never quotes it
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad(&files.key, format!("no usable private key ({})", key_error(&e))))?;
    #[allow(deprecated)]
    // rustls 0.23.48 deprecates ring's provider for lack of post-quantum kx; it is the one this tree builds
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(&files.cert, format!("certificate and key do not fit: {e}")))?;
    // PostgreSQL 17 clients may start TLS directly (sslnegotiation=direct); they ask for ALPN
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn key_error(e: &rustls_pki_types::pem::Error) -> &'static str {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key block",
        rustls_pki_types::pem::Error::Io(_) => "cannot be read",
        _ => "malformed PEM",
    }
}
