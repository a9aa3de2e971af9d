//! TLS for client connections (rustls). As with nats-server, the INFO line goes out in plain
//! text first (with `tls_required`), then the client starts the handshake.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("error parsing X509 certificate/key pair: open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("error parsing X509 certificate/key pair: {0}: no certificates found")]
    NoCertificates(String),
    #[error("error parsing X509 certificate/key pair: {0}: no private key found")]
    NoKey(String),
    #[error("failed to parse root ca certificate in {0}")]
    BadCa(String),
    #[error("TLS configuration error: {0}")]
    Config(String),
    #[error("tls verify without ca_file: no system root certificates could be loaded")]
    NoSystemRoots,
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Open {
            path: path.display().to_string(),
            source,
        })
}

/// Trust anchors: the system's roots when `system` (certificates rustls cannot parse are
/// skipped), plus every certificate in `ca_file`. [`TlsError::NoSystemRoots`] when only the
/// system's were asked for and none could be loaded.
pub fn root_store(ca_file: Option<&Path>, system: bool) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    if system {
        if let Ok(certs) = rustls_native_certs::load_native_certs() {
            roots.add_parsable_certificates(certs);
        }
    }
    if let Some(ca) = ca_file {
        for cert in rustls_pemfile::certs(&mut open(ca)?) {
            let cert = cert.map_err(|_| TlsError::BadCa(ca.display().to_string()))?;
            roots
                .add(cert)
                .map_err(|_| TlsError::BadCa(ca.display().to_string()))?;
        }
    } else if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}

/// Build an acceptor from the `tls {}` block; every file problem is a start-up (or reload) error.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(&cfg.cert_file)?)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Open {
            path: cfg.cert_file.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates(
            cfg.cert_file.display().to_string(),
        ));
    }
    let key = rustls_pemfile::private_key(&mut open(&cfg.key_file)?)
        .map_err(|source| TlsError::Open {
            path: cfg.key_file.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(cfg.key_file.display().to_string()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if cfg.verify {
        // Without `ca_file`, client certificates are checked against the system's roots, as
        // nats-server does.
        let roots = root_store(cfg.ca_file.as_deref(), cfg.ca_file.is_none())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS version as Go names it in `/connz`.
pub fn tls_version_name(version: Option<rustls::ProtocolVersion>) -> String {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Cipher suite as Go names it (`TLS_AES_128_GCM_SHA256`, not rustls' `TLS13_AES_...`).
pub fn tls_cipher_name(suite: Option<rustls::SupportedCipherSuite>) -> String {
    let Some(suite) = suite else {
        return String::new();
    };
    let name = suite.suite().as_str().unwrap_or("").to_string();
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}
