//! TLS beyond the basics, each case run against natsd and nats-server: the handshake before
//! INFO (`handshake_first`, with and without a fallback), users mapped from client
//! certificates (`verify_and_map`), which `ocsp` settings start, and certificate reload.
//! Every certificate is generated here, into the test's temporary directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::configs;
use crate::harness::{binary, check_config, impls, Impl, Proc, WAIT};

/// A certificate authority that signs the test's server and client certificates.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// Write the CA certificate as `<name>.pem`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }

    /// Sign `params` and write `<name>.pem` and `<name>-key.pem`.
    fn issue(&self, dir: &Path, name: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// A server certificate for `localhost` / `127.0.0.1`, `extra` applied to its parameters.
    fn server(
        &self,
        dir: &Path,
        name: &str,
        extra: impl FnOnce(&mut CertificateParams),
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        extra(&mut params);
        self.issue(dir, name, params)
    }

    /// A client certificate with these subject attributes (in this order) and SANs.
    fn client(
        &self,
        dir: &Path,
        name: &str,
        subject: &[(DnType, &str)],
        sans: Vec<SanType>,
    ) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(dir, name, params)
    }
}

fn tls_block(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n  {extra}\n}}\n",
        cert.display(),
        key.display()
    )
}

/// A rustls client trusting only `ca`.
fn tls_client(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The first line the server sends, read within `within`; `None` if nothing came.
async fn first_line<R: tokio::io::AsyncRead + Unpin>(r: R, within: Duration) -> Option<String> {
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    match tokio::time::timeout(within, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(line.trim_end().to_string()),
        _ => None,
    }
}

fn info_json(line: &str) -> serde_json::Value {
    serde_json::from_str(line.trim_start_matches("INFO ")).unwrap()
}

/// Start `kind` with `tls` added to the base accounts.
async fn start(kind: Impl, dir: tempfile::TempDir, tls: &str) -> Proc {
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, format!("{tls}{}", configs::base())).unwrap();
    Proc::start_in(kind, dir, path).await
}

fn shop_over_tls(ca: &Path) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::with_user_and_password("shop".into(), "shoppw".into())
        .add_root_certificates(ca.to_path_buf())
        .require_tls(true)
        .max_reconnects(Some(0))
}

async fn connect(
    opts: async_nats::ConnectOptions,
    port: u16,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    tokio::time::timeout(WAIT, opts.connect(format!("tls://127.0.0.1:{port}")))
        .await
        .expect("TLS connect hung")
}

/// A round trip through the server on `client`'s own connection.
async fn assert_round_trip(client: &async_nats::Client, subject: &str, kind: Impl) {
    let mut sub = client.subscribe(subject.to_string()).await.unwrap();
    client
        .publish(subject.to_string(), "x".into())
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut sub))
        .await
        .unwrap_or_else(|_| panic!("{kind:?}: no message on {subject}"))
        .unwrap();
    assert_eq!(&msg.payload[..], b"x", "{kind:?}");
}

async fn connz_tls_first(p: &Proc) -> Vec<bool> {
    let connz = p.http_json("/connz").await;
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tls_first"].as_bool().unwrap_or(false))
        .collect()
}

/// `handshake_first: true`: the server says nothing until the client's handshake, INFO then
/// comes inside TLS, and a client that waits for INFO first never gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_sends_info_inside_tls() {
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let ca_path = ca.write(dir.path(), "ca");
        let (cert, key) = ca.server(dir.path(), "server", |_| {});
        let p = start(kind, dir, &tls_block(&cert, &key, "handshake_first: true")).await;

        let tcp = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        let (r, w) = tcp.into_split();
        assert_eq!(
            first_line(r, Duration::from_millis(500)).await,
            None,
            "{kind:?}: the server spoke before the handshake"
        );
        drop(w);

        let tcp = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tls_client(&ca_path)
            .connect(server_name, tcp)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: handshake first failed: {e}"));
        let info = first_line(tls, WAIT).await.expect("INFO inside TLS");
        assert_eq!(info_json(&info)["tls_required"], true, "{kind:?}");

        let client = connect(shop_over_tls(&ca_path).tls_first(), p.port)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: tls_first client refused: {e}"));
        assert_round_trip(&client, "first", kind).await;
        assert_eq!(connz_tls_first(&p).await, vec![true], "{kind:?}");

        assert!(
            connect(shop_over_tls(&ca_path), p.port).await.is_err(),
            "{kind:?}: a client waiting for INFO connected"
        );
    }
}

/// `handshake_first: <duration>`: a client that sends nothing gets INFO in plain text once the
/// wait is over and upgrades as usual; a client that starts with its handshake gets it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_with_a_fallback_serves_both_kinds_of_client() {
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let ca_path = ca.write(dir.path(), "ca");
        let (cert, key) = ca.server(dir.path(), "server", |_| {});
        let p = start(kind, dir, &tls_block(&cert, &key, "handshake_first: 400ms")).await;

        let started = Instant::now();
        let tcp = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        let info = first_line(tcp, WAIT)
            .await
            .expect("INFO after the fallback wait");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{kind:?}: INFO came after {:?}, before the wait was over",
            started.elapsed()
        );
        assert_eq!(info_json(&info)["tls_required"], true, "{kind:?}");

        let plain_first = connect(shop_over_tls(&ca_path), p.port)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: INFO-first client refused: {e}"));
        assert_round_trip(&plain_first, "fallback", kind).await;
        let tls_first = connect(shop_over_tls(&ca_path).tls_first(), p.port)
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: tls_first client refused: {e}"));
        assert_round_trip(&tls_first, "fallback", kind).await;
        let mut flags = connz_tls_first(&p).await;
        flags.sort();
        assert_eq!(flags, vec![false, true], "{kind:?}");
    }
}

/// Which `handshake_first` values the config accepts: the same on both servers.
#[test]
fn handshake_first_values_are_checked_as_nats_server_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(dir.path(), "server", |_| {});
    for (value, ok) in [
        ("true", true),
        ("false", true),
        ("\"auto\"", true),
        ("auto_fallback", true),
        ("\"off\"", true),
        ("300ms", true),
        ("\"1s\"", true),
        ("\"soon\"", false),
        ("5", false),
    ] {
        let path = dir.path().join("hf.conf");
        std::fs::write(
            &path,
            format!(
                "{}{}",
                configs::HEADER,
                tls_block(&cert, &key, &format!("handshake_first: {value}"))
            ),
        )
        .unwrap();
        for kind in impls() {
            let (accepted, err) = check_config(kind, &path);
            assert_eq!(accepted, ok, "{kind:?} handshake_first: {value}: {err}");
        }
    }
}

/// Users for the mapping test: each name is what one of the certificates below carries.
fn mapped_users() -> String {
    configs::shop_users(
        r#"
      { user: "alice@example.com" }
      { user: "alice.example.com" }
      { user: "svc.example.com", permissions: { publish: { deny: ["denied.>"] } } }
      { user: "CN=bob,OU=dev,O=Acme" }
      { user: "CN=carol,O=Acme" }
      { user: "CN=dave" }
      { user: "CN=erin,DC=example" }
"#,
    )
}

/// A client certificate's name, subject attributes (in certificate order) and SANs, and the
/// user it maps to.
type MapCase = (
    &'static str,
    Vec<(DnType, &'static str)>,
    Vec<SanType>,
    Option<&'static str>,
);

/// `verify_and_map`: the user comes from the certificate, in nats-server's order (email SANs,
/// then DNS SANs, then the subject as a DN, in order or not, then the subject as Go prints it),
/// and that user's account and permissions apply. A certificate naming nobody is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_map_finds_the_user_in_the_certificate() {
    let uid = DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]);
    let dc = DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]);
    let email = |s: &str| SanType::Rfc822Name(s.try_into().unwrap());
    let dns = |s: &str| SanType::DnsName(s.try_into().unwrap());
    let cases: Vec<MapCase> = vec![
        (
            "alice",
            vec![(DnType::CommonName, "alice")],
            vec![dns("alice.example.com"), email("alice@example.com")],
            Some("alice@example.com"),
        ),
        (
            "svc",
            vec![(DnType::CommonName, "svc")],
            vec![dns("svc.example.com")],
            Some("svc.example.com"),
        ),
        (
            "bob",
            vec![
                (DnType::OrganizationName, "Acme"),
                (DnType::OrganizationalUnitName, "dev"),
                (DnType::CommonName, "bob"),
            ],
            vec![],
            Some("CN=bob,OU=dev,O=Acme"),
        ),
        (
            "carol",
            vec![
                (DnType::CommonName, "carol"),
                (DnType::OrganizationName, "Acme"),
            ],
            vec![],
            Some("CN=carol,O=Acme"),
        ),
        (
            "dave",
            vec![(uid.clone(), "dave"), (DnType::CommonName, "dave")],
            vec![],
            Some("CN=dave"),
        ),
        (
            "erin",
            vec![(dc.clone(), "example"), (DnType::CommonName, "erin")],
            vec![],
            Some("CN=erin,DC=example"),
        ),
        (
            "mallory",
            vec![(DnType::CommonName, "mallory")],
            vec![dns("mallory.example.com")],
            None,
        ),
    ];
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let ca_path = ca.write(dir.path(), "ca");
        let (cert, key) = ca.server(dir.path(), "server", |_| {});
        let tls = tls_block(
            &cert,
            &key,
            &format!("ca_file: \"{}\"\n  verify_and_map: true", ca_path.display()),
        );
        let path = dir.path().join("nats.conf");
        std::fs::write(
            &path,
            format!("{tls}{}", configs::with_accounts(&mapped_users(), "")),
        )
        .unwrap();
        let certs: Vec<(PathBuf, PathBuf)> = cases
            .iter()
            .map(|(name, subject, sans, _)| ca.client(dir.path(), name, subject, sans.clone()))
            .collect();
        let p = Proc::start_in(kind, dir, path).await;
        // The observer is alice (SHOP, no permissions): a mapped user gives no password.
        let observer = connect(
            async_nats::ConnectOptions::new()
                .add_root_certificates(ca_path.clone())
                .add_client_certificate(certs[0].0.clone(), certs[0].1.clone())
                .require_tls(true),
            p.port,
        )
        .await
        .unwrap_or_else(|e| panic!("{kind:?}: observer refused: {e}"));
        let mut seen = observer.subscribe("mapped.>").await.unwrap();
        let mut denied = observer.subscribe("denied.>").await.unwrap();
        observer.flush().await.unwrap();

        for ((name, _, _, expected), (cert, key)) in cases.iter().zip(&certs) {
            let opts = async_nats::ConnectOptions::new()
                .add_root_certificates(ca_path.clone())
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true)
                .max_reconnects(Some(0));
            let result = connect(opts, p.port).await;
            let Some(user) = expected else {
                let err = result.expect_err("a certificate naming no user was accepted");
                assert!(
                    err.to_string()
                        .to_lowercase()
                        .contains("authorization violation"),
                    "{kind:?} {name}: {err}"
                );
                continue;
            };
            let client = result.unwrap_or_else(|e| panic!("{kind:?} {name}: refused: {e}"));
            client.publish("denied.x", (*name).into()).await.unwrap();
            client
                .publish(format!("mapped.{name}"), (*name).into())
                .await
                .unwrap();
            client.flush().await.unwrap();
            let msg = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut seen))
                .await
                .unwrap_or_else(|_| panic!("{kind:?} {name}: nothing arrived in SHOP"))
                .unwrap();
            assert_eq!(msg.subject.as_str(), format!("mapped.{name}"), "{kind:?}");
            let connz = p.http_json("/connz?auth=true").await;
            let users: Vec<&str> = connz["connections"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["authorized_user"].as_str())
                .collect();
            assert!(users.contains(user), "{kind:?} {name}: users {users:?}");
            drop(client);
        }
        // Only svc.example.com is denied `denied.>`: every other mapped user got through.
        let mut through = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout(
            Duration::from_millis(300),
            futures::StreamExt::next(&mut denied),
        )
        .await
        {
            through.push(String::from_utf8_lossy(&msg.payload).into_owned());
        }
        through.sort();
        assert_eq!(
            through,
            vec!["alice", "bob", "carol", "dave", "erin"],
            "{kind:?}"
        );
    }
}

/// The `ocsp` settings both servers start with (nothing to staple), and those both refuse to
/// start with: a must-staple certificate, or `mode: always`, with no responder to ask.
#[test]
fn ocsp_settings_start_where_nats_server_starts() {
    let must_staple = |params: &mut CertificateParams| {
        // TLS Feature extension: SEQUENCE { INTEGER 5 } (status_request).
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 24],
            vec![0x30, 0x03, 0x02, 0x01, 0x05],
        )];
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let plain = ca.server(dir.path(), "plain", |_| {});
    let stapled = ca.server(dir.path(), "stapled", must_staple);
    for (ocsp, (cert, key), starts) in [
        ("ocsp: false", &stapled, true),
        ("ocsp: { mode: never }", &stapled, true),
        ("", &plain, true),
        ("ocsp: true", &plain, true),
        ("ocsp: { mode: auto }", &plain, true),
        (
            "ocsp: { mode: must, url: \"http://127.0.0.1:1\" }",
            &plain,
            true,
        ),
        ("", &stapled, false),
        ("ocsp: { mode: auto }", &stapled, false),
        ("ocsp: { mode: always }", &plain, false),
    ] {
        let path = dir.path().join("ocsp.conf");
        std::fs::write(
            &path,
            format!("{}{ocsp}\n{}", configs::HEADER, tls_block(cert, key, "")),
        )
        .unwrap();
        for kind in impls() {
            let (valid, err) = check_config(kind, &path);
            assert!(valid, "{kind:?} -t {ocsp}: {err}");
            let spec = testkit::ServerSpec::new()
                .config_file(&path)
                .ports_from_config();
            let started = testkit::TestServer::try_start_bin(binary(kind), spec);
            assert_eq!(
                started.is_ok(),
                starts,
                "{kind:?} {ocsp} with {}: {:?}",
                cert.display(),
                started.err().map(|e| e.to_string())
            );
        }
    }
    for bad in [
        "ocsp: { mode: sometimes }",
        "ocsp: { stapling: true }",
        "ocsp: 5",
        "ocsp: { mode: never, urls: [\"http://127.0.0.1:1\"] }",
    ] {
        let path = dir.path().join("bad.conf");
        std::fs::write(
            &path,
            format!(
                "{}{bad}\n{}",
                configs::HEADER,
                tls_block(&plain.0, &plain.1, "")
            ),
        )
        .unwrap();
        for kind in impls() {
            let (valid, _) = check_config(kind, &path);
            assert!(!valid, "{kind:?} accepted {bad}");
        }
    }
}

/// A TLS handshake with a client trusting only `ca`: whether the server's certificate is one
/// `ca` signed.
async fn handshake_trusting(port: u16, ca: &Path) -> bool {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut info = Vec::new();
    let mut byte = [0u8; 1];
    while !info.ends_with(b"\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        info.push(byte[0]);
    }
    let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    match tls_client(ca).connect(server_name, tcp).await {
        Ok(mut tls) => {
            let _ = tls.shutdown().await;
            true
        }
        Err(_) => false,
    }
}

/// SIGHUP re-reads the certificate files: new connections get the new certificate, existing
/// ones keep working; a broken certificate is refused and the old one stays in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_certificate_for_new_connections() {
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let old_ca = Ca::new("old CA");
        let new_ca = Ca::new("new CA");
        let old_ca_path = old_ca.write(dir.path(), "old-ca");
        let new_ca_path = new_ca.write(dir.path(), "new-ca");
        let (cert, key) = old_ca.server(dir.path(), "server", |_| {});
        let conf = format!("{}{}", tls_block(&cert, &key, ""), configs::base());
        let staged = dir.path().join("staged");
        std::fs::create_dir(&staged).unwrap();
        let (new_cert, new_key) = new_ca.server(&staged, "server", |_| {});
        let mut p = start(kind, dir, &tls_block(&cert, &key, "")).await;

        let existing = connect(shop_over_tls(&old_ca_path), p.port).await.unwrap();
        assert!(handshake_trusting(p.port, &old_ca_path).await, "{kind:?}");
        assert!(!handshake_trusting(p.port, &new_ca_path).await, "{kind:?}");

        std::fs::copy(&new_cert, &cert).unwrap();
        std::fs::copy(&new_key, &key).unwrap();
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Reloaded server configuration"),
            "{kind:?}: {outcome}"
        );
        assert!(handshake_trusting(p.port, &new_ca_path).await, "{kind:?}");
        assert!(!handshake_trusting(p.port, &old_ca_path).await, "{kind:?}");
        assert_round_trip(&existing, "kept", kind).await;

        std::fs::write(&cert, "not a certificate\n").unwrap();
        let outcome = p.reload_with(&conf).await;
        assert!(
            outcome.contains("Failed to reload server configuration"),
            "{kind:?}: {outcome}"
        );
        assert!(handshake_trusting(p.port, &new_ca_path).await, "{kind:?}");
        assert_round_trip(&existing, "kept", kind).await;
    }
}

/// `/connz?auth=true` shows each client certificate (subject as Go prints it, the SHA-256 of
/// its public key and of the certificate) as nats-server shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_shows_the_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let ca_path = ca.write(dir.path(), "ca");
    let (cert, key) = ca.server(dir.path(), "server", |_| {});
    let uid = DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]);
    let dc = DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]);
    let email = DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]);
    let clients = [
        ca.client(
            dir.path(),
            "full",
            &[
                (DnType::CountryName, "US"),
                (DnType::StateOrProvinceName, "CA"),
                (DnType::LocalityName, "Los Angeles"),
                (DnType::OrganizationName, "Acme, Inc"),
                (DnType::OrganizationalUnitName, "dev+ops"),
                (DnType::CommonName, " bob#"),
            ],
            vec![],
        ),
        ca.client(
            dir.path(),
            "others",
            &[
                (dc, "example"),
                (uid, "u-1"),
                (email, "bob@example.com"),
                (DnType::CommonName, "bob"),
            ],
            vec![],
        ),
    ];
    let mut shown = Vec::new();
    for kind in impls() {
        let conf_dir = tempfile::tempdir().unwrap();
        let tls = tls_block(
            &cert,
            &key,
            &format!("ca_file: \"{}\"\n  verify: true", ca_path.display()),
        );
        let p = start(kind, conf_dir, &tls).await;
        let mut seen = Vec::new();
        for (cert, key) in &clients {
            let client = connect(
                shop_over_tls(&ca_path).add_client_certificate(cert.clone(), key.clone()),
                p.port,
            )
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: refused: {e}"));
            client.flush().await.unwrap();
            let connz = p.http_json("/connz?auth=true").await;
            let certs = connz["connections"][0]["tls_peer_certs"].clone();
            assert_eq!(certs.as_array().map(Vec::len), Some(1), "{kind:?}: {connz}");
            seen.push(certs);
            let without_auth = p.http_json("/connz").await;
            assert!(
                without_auth["connections"][0]
                    .get("tls_peer_certs")
                    .is_none(),
                "{kind:?}"
            );
            drop(client);
            testkit::eventually_async(WAIT, "the client's connection to close", async || {
                p.http_json("/connz").await["num_connections"] == 0
            })
            .await;
        }
        shown.push(seen);
    }
    testkit::with_reference(&shown, |ours, theirs| assert_eq!(ours, theirs));
}

/// A WebSocket client over TLS presenting `cert`: upgrades, sends CONNECT (with `connect`'s
/// fields) and PING, and returns the first answer line (`PONG` or the `-ERR`) and the
/// stream, kept open so the monitor still shows the connection.
async fn wss_login(
    port: u16,
    ca: &Path,
    cert: &Path,
    key: &Path,
    connect: serde_json::Value,
) -> (String, tokio_rustls::client::TlsStream<TcpStream>) {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(ca).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = rustls_pemfile::certs(&mut std::fs::read(cert).unwrap().as_slice())
        .map(Result::unwrap)
        .collect();
    let key = rustls_pemfile::private_key(&mut std::fs::read(key).unwrap().as_slice())
        .unwrap()
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut fields = serde_json::json!({ "verbose": false, "protocol": 1 });
    if let (Some(f), Some(extra)) = (fields.as_object_mut(), connect.as_object()) {
        f.extend(extra.clone());
    }
    let mut sent = false;
    let answer = loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if !sent && text.contains("INFO {") {
            // One masked binary frame (the mask is zero: the payload goes as it is).
            let payload = format!("CONNECT {fields}\r\nPING\r\n").into_bytes();
            let mut frame = vec![0x82, 0x80 | 126];
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(&payload);
            tls.write_all(&frame).await.unwrap();
            sent = true;
        }
        if let Some(line) = ["PONG", "-ERR"]
            .iter()
            .find_map(|needle| text.find(needle).map(|at| &text[at..]))
        {
            break line.lines().next().unwrap_or_default().to_string();
        }
        match tokio::time::timeout(WAIT, tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break format!("closed after {text:?}"),
        }
    };
    (answer, tls)
}

/// `verify_and_map` in the `websocket { tls {} }` block maps a WebSocket client's certificate
/// to a user as the client listener's does (and a certificate naming nobody is refused);
/// a user without a password is then a certificate identity, which a plain TCP client cannot
/// log in as by name alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_verify_and_map_finds_the_user_in_the_certificate() {
    let email = |s: &str| SanType::Rfc822Name(s.try_into().unwrap());
    let dns = |s: &str| SanType::DnsName(s.try_into().unwrap());
    let mut outcomes = Vec::new();
    for kind in impls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let ca_path = ca.write(dir.path(), "ca");
        let (cert, key) = ca.server(dir.path(), "server", |_| {});
        let alice = ca.client(
            dir.path(),
            "alice",
            &[(DnType::CommonName, "alice")],
            vec![email("alice@example.com")],
        );
        let bob = ca.client(
            dir.path(),
            "bob",
            &[
                (DnType::OrganizationName, "Acme"),
                (DnType::OrganizationalUnitName, "dev"),
                (DnType::CommonName, "bob"),
            ],
            vec![],
        );
        let mallory = ca.client(
            dir.path(),
            "mallory",
            &[(DnType::CommonName, "mallory")],
            vec![dns("mallory.example.com")],
        );
        let ws_port = testkit::free_port();
        let websocket = format!(
            "websocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  tls {{\n    cert_file: \"{}\"\n    key_file: \"{}\"\n    ca_file: \"{}\"\n    verify_and_map: true\n  }}\n}}\n",
            cert.display(),
            key.display(),
            ca_path.display()
        );
        let path = dir.path().join("nats.conf");
        std::fs::write(
            &path,
            format!("{websocket}{}", configs::with_accounts(&mapped_users(), "")),
        )
        .unwrap();
        let p = Proc::start_in(kind, dir, path).await;
        let mut outcome = Vec::new();
        for (name, (cert, key), connect) in [
            ("alice", &alice, serde_json::json!({})),
            ("bob", &bob, serde_json::json!({})),
            // The certificate decides; a name in CONNECT is only warned about.
            ("bob as shop", &bob, serde_json::json!({ "user": "shop" })),
            ("mallory", &mallory, serde_json::json!({})),
        ] {
            let (answer, open) = wss_login(ws_port, &ca_path, cert, key, connect).await;
            let connz = p.http_json("/connz?auth=true").await;
            let users: Vec<String> = connz["connections"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["authorized_user"].as_str().map(str::to_string))
                .collect();
            outcome.push(format!("{name}: {answer} {users:?}"));
            drop(open);
        }
        let tcp = match crate::harness::Raw::login(p.port, "alice@example.com", "").await {
            crate::harness::Login::Ok(_) => "tcp alice by name: let in".to_string(),
            crate::harness::Login::Refused(lines) => format!("tcp alice by name: {lines:?}"),
        };
        outcome.push(tcp);
        assert_eq!(
            outcome,
            vec![
                "alice: PONG [\"alice@example.com\"]".to_string(),
                "bob: PONG [\"CN=bob,OU=dev,O=Acme\"]".to_string(),
                "bob as shop: PONG [\"CN=bob,OU=dev,O=Acme\"]".to_string(),
                "mallory: -ERR 'Authorization Violation' []".to_string(),
                "tcp alice by name: [\"-ERR 'Authorization Violation'\"]".to_string(),
            ],
            "{kind:?}"
        );
        outcomes.push(outcome);
    }
    testkit::with_reference(&outcomes, |ours, theirs| assert_eq!(ours, theirs));
}
