//! TLS with certificates generated at test time, driven by async-nats (rustls).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::configs;
use crate::harness::{impls, Proc, Raw};

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["client".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server-key.pem", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client-key.pem", client_key.serialize_pem()),
    }
}

fn tls_conf(pki: &Pki, verify: bool, with_ca_file: bool) -> String {
    let ca_file = if with_ca_file {
        format!("  ca_file: \"{}\"\n", pki.ca.display())
    } else {
        String::new()
    };
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{ca_file}  verify: {verify}\n  timeout: 2\n}}\n{}",
        pki.server_cert.display(),
        pki.server_key.display(),
        configs::base()
    )
}

async fn start_with(kind: crate::harness::Impl, verify: bool, with_ca_file: bool) -> (Proc, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, tls_conf(&pki, verify, with_ca_file)).unwrap();
    (Proc::start_in(kind, dir, path).await, pki)
}

async fn start(kind: crate::harness::Impl, verify: bool) -> (Proc, Pki) {
    start_with(kind, verify, true).await
}

async fn connect_tls(
    port: u16,
    pki: &Pki,
    client_cert: bool,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut opts =
        async_nats::ConnectOptions::with_user_and_password("shop".into(), "shoppw".into())
            .add_root_certificates(pki.ca.clone())
            .require_tls(true)
            .max_reconnects(Some(0));
    if client_cert {
        opts = opts.add_client_certificate(pki.client_cert.clone(), pki.client_key.clone());
    }
    tokio::time::timeout(
        crate::harness::WAIT,
        opts.connect(format!("tls://127.0.0.1:{port}")),
    )
    .await
    .expect("TLS connect hung")
}

/// With `verify` and no `ca_file`, client certificates are checked against the system's
/// roots: one from a private CA is refused, as is a client without any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_without_ca_file_uses_system_roots() {
    for kind in impls() {
        let (p, pki) = start_with(kind, true, false).await;
        let raw = Raw::open(p.port).await;
        assert_eq!(raw.info["tls_verify"], true, "{kind:?}");
        assert!(
            connect_tls(p.port, &pki, true).await.is_err(),
            "{kind:?}: a private-CA client certificate was accepted"
        );
        assert!(
            connect_tls(p.port, &pki, false).await.is_err(),
            "{kind:?}: connected without a client certificate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_cert_with_custom_root() {
    for kind in impls() {
        let (p, pki) = start(kind, false).await;
        let raw = Raw::open(p.port).await;
        assert_eq!(raw.info["tls_required"], true, "{kind:?}");
        assert!(raw.info.get("tls_verify").is_none(), "{kind:?}");
        // A client that never starts the handshake is dropped after `timeout` (2s).
        let mut idle = raw;
        let started = std::time::Instant::now();
        assert!(idle.until_closed().await.is_empty(), "{kind:?}");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(1500),
            "{kind:?}"
        );

        let client =
            async_nats::ConnectOptions::with_user_and_password("shop".into(), "shoppw".into())
                .add_root_certificates(pki.ca.clone())
                .require_tls(true)
                .connect(format!("tls://127.0.0.1:{}", p.port))
                .await
                .unwrap_or_else(|e| panic!("{kind:?}: TLS connect failed: {e}"));
        let mut sub = client.subscribe("secure").await.unwrap();
        client.publish("secure", "over-tls".into()).await.unwrap();
        let msg = tokio::time::timeout(crate::harness::WAIT, futures::StreamExt::next(&mut sub))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&msg.payload[..], b"over-tls");

        // Authentication still applies inside TLS.
        let err = async_nats::ConnectOptions::with_user_and_password("shop".into(), "nope".into())
            .add_root_certificates(pki.ca.clone())
            .require_tls(true)
            .connect(format!("tls://127.0.0.1:{}", p.port))
            .await
            .expect_err("bad password over TLS accepted");
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("authorization violation"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_requires_a_client_certificate() {
    for kind in impls() {
        let (p, pki) = start(kind, true).await;
        let raw = Raw::open(p.port).await;
        assert_eq!(raw.info["tls_verify"], true, "{kind:?}");

        let client =
            async_nats::ConnectOptions::with_user_and_password("shop".into(), "shoppw".into())
                .add_root_certificates(pki.ca.clone())
                .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone())
                .require_tls(true)
                .connect(format!("tls://127.0.0.1:{}", p.port))
                .await
                .unwrap_or_else(|e| panic!("{kind:?}: mutual TLS failed: {e}"));
        client.flush().await.unwrap();

        let without = tokio::time::timeout(
            crate::harness::WAIT,
            async_nats::ConnectOptions::with_user_and_password("shop".into(), "shoppw".into())
                .add_root_certificates(pki.ca.clone())
                .require_tls(true)
                .connect(format!("tls://127.0.0.1:{}", p.port)),
        )
        .await
        .expect("connect without client cert hung");
        assert!(
            without.is_err(),
            "{kind:?}: connected without a client certificate"
        );
    }
}
