//! TLS for client connections (rustls). As with nats-server, the INFO line goes out in plain
//! text first (with `tls_required`), then the client starts the handshake; under
//! `handshake_first` the handshake comes first and INFO follows inside TLS (the accept path is
//! in `server.rs`).
//!
//! With `verify_and_map` the user is the one the client certificate names. The names are tried
//! in nats-server's order (see [`PeerCert::map_user`]): email SANs, DNS SANs, URI SANs, then
//! the subject as a distinguished name (an RFC 4514 user name compared RDN by RDN, first in
//! order, then in any order), then the subject as Go prints it with its domain components
//! appended, then as Go prints it.
//!
//! OCSP stapling is not built. nats-server staples only when the certificate asks for it
//! (must-staple) or `ocsp { mode: always }` says so, and then fails to start without a
//! reachable responder; natsd refuses exactly those configurations, and runs the others as
//! nats-server does (without a staple).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use x509_cert::der::asn1::{Any, ObjectIdentifier};
use x509_cert::der::{Decode, Encode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::config::{OcspConfig, OcspMode, TlsConfig};

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
    #[error("certificate at '{0}' needs an OCSP staple (must-staple, or ocsp mode always), and natsd does not staple OCSP responses; use `ocsp: false` or a certificate without the status_request feature")]
    OcspStapling(String),
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

/// The acceptor the options describe (`None` without a `tls {}` block), refused when it would
/// need an OCSP staple.
pub fn acceptor_for(
    tls: Option<&TlsConfig>,
    ocsp: Option<&OcspConfig>,
) -> Result<Option<TlsAcceptor>, TlsError> {
    let Some(cfg) = tls else {
        return Ok(None);
    };
    let acceptor = acceptor(cfg)?;
    check_ocsp(cfg, ocsp)?;
    Ok(Some(acceptor))
}

/// Refuse what nats-server would staple: a must-staple certificate unless `ocsp` is off, and
/// any certificate under `ocsp { mode: always }`.
fn check_ocsp(cfg: &TlsConfig, ocsp: Option<&OcspConfig>) -> Result<(), TlsError> {
    let mode = ocsp.map_or(OcspMode::Auto, |o| o.mode);
    let needs_staple = match mode {
        OcspMode::Never => false,
        OcspMode::Always => true,
        OcspMode::Auto | OcspMode::Must => {
            let leaf = rustls_pemfile::certs(&mut open(&cfg.cert_file)?)
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| TlsError::NoCertificates(cfg.cert_file.display().to_string()))?;
            must_staple(&leaf)
        }
    };
    if needs_staple {
        return Err(TlsError::OcspStapling(cfg.cert_file.display().to_string()));
    }
    Ok(())
}

/// The TLS Feature extension (RFC 7633) asks for `status_request` (5): must-staple.
fn must_staple(der: &[u8]) -> bool {
    const TLS_FEATURE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.24");
    const STATUS_REQUEST: u8 = 5;
    let Ok(cert) = Certificate::from_der(der) else {
        return false;
    };
    let extensions = cert.tbs_certificate.extensions.unwrap_or_default();
    extensions
        .iter()
        .filter(|e| e.extn_id == TLS_FEATURE)
        .filter_map(|e| Vec::<Any>::from_der(e.extn_value.as_bytes()).ok())
        .flatten()
        .any(|feature| feature.tag() == Tag::Integer && feature.value() == [STATUS_REQUEST])
}

/// One attribute of a distinguished name: its type (`CN`, `O`, ...) and value.
type Attribute = (String, String);

/// A relative distinguished name: one or more attributes.
type Rdn = Vec<Attribute>;

/// What `verify_and_map` reads from a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    emails: Vec<String>,
    dns_names: Vec<String>,
    uris: Vec<String>,
    /// The subject's RDNs, last first (RFC 4514 order); `None` when an attribute has a type
    /// outside the ones nats-server names, or a value that is not a string: nats-server then
    /// skips the DN comparison.
    dn: Option<Vec<Rdn>>,
    /// The subject as Go prints it (`CN=alice,OU=dev,O=Acme`): only the well-known attributes,
    /// in Go's fixed order, not the certificate's.
    subject: String,
    /// The subject's domain components, `DC=example,DC=com`, in the certificate's order.
    domain_components: String,
}

/// The domain component attribute, which nats-server's DN form knows beside Go's named fields.
const DOMAIN_COMPONENT: (&str, &str) = ("0.9.2342.19200300.100.1.25", "DC");

/// The order Go prints a subject in (before reversing it): multi-valued types first, then the
/// common name and serial number, each of which keeps only its last value.
const GO_SUBJECT_ORDER: &[(&str, bool)] = &[
    ("C", true),
    ("ST", true),
    ("L", true),
    ("STREET", true),
    ("POSTALCODE", true),
    ("O", true),
    ("OU", true),
    ("CN", false),
    ("SERIALNUMBER", false),
];

/// An attribute value as Go's ASN.1 decoder reads it into a string; `None` for other types.
fn attribute_string(value: &Any) -> Option<String> {
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::TeletexString
        | Tag::NumericString => Some(String::from_utf8_lossy(value.value()).into_owned()),
        Tag::BmpString => {
            let units: Vec<u16> = value
                .value()
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// A value escaped as Go's RDN printer escapes it (RFC 2253).
fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => i == 0 || i == last,
            '#' => i == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A subject as Go prints it. The well-known attributes (Go's named fields) come in Go's fixed
/// order, each multi-valued type as one RDN and the common name and serial number with their
/// last value only; with `others`, every other attribute follows, last first, as
/// `<oid>=<value>` (Go's `Name.String`, which `/connz` shows).
fn go_subject(subject: &x509_cert::name::Name, others: bool) -> String {
    let mut by_type: Vec<Vec<String>> = vec![Vec::new(); GO_SUBJECT_ORDER.len()];
    let mut other: Vec<String> = Vec::new();
    for atv in subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
        let oid = atv.oid.to_string();
        let known = GO_NAMED_FIELDS.iter().position(|(o, _)| *o == oid);
        match (known, attribute_string(&atv.value)) {
            (Some(i), Some(value)) => {
                let name = GO_NAMED_FIELDS[i].1;
                if let Some(slot) = GO_SUBJECT_ORDER.iter().position(|(n, _)| *n == name) {
                    by_type[slot].push(value);
                }
            }
            (Some(_), None) => {}
            (None, Some(value)) => other.push(format!("{oid}={}", escape_rdn_value(&value))),
            (None, None) => {
                let der = atv.value.to_der().unwrap_or_default();
                other.push(format!("{oid}=#{}", hex::encode(der)));
            }
        }
    }
    let mut printed: Vec<String> = Vec::new();
    for ((name, multi), values) in GO_SUBJECT_ORDER.iter().zip(&by_type) {
        let values: &[String] = match (multi, values.last()) {
            (_, None) => continue,
            (false, Some(last)) if last.is_empty() => continue,
            (true, Some(_)) => values,
            (false, Some(last)) => std::slice::from_ref(last),
        };
        let rdn: Vec<String> = values
            .iter()
            .map(|v| format!("{name}={}", escape_rdn_value(v)))
            .collect();
        printed.push(rdn.join("+"));
    }
    if others {
        printed.splice(0..0, other);
    }
    printed.reverse();
    printed.join(",")
}

/// The attribute types Go reads into named fields, by OID.
const GO_NAMED_FIELDS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.17", "POSTALCODE"),
];

/// What a TLS connection keeps of the certificates its client presented: each as
/// `/connz?auth=true` shows it, and under `verify_and_map` (`map`) the leaf's names for
/// CONNECT to map to a user (a certificate that cannot be read maps to no user).
pub(crate) fn peer_certificates(
    certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
    map: bool,
) -> (Vec<PeerCertInfo>, Option<std::sync::Arc<PeerCert>>) {
    let certs = certs.unwrap_or_default();
    let shown = certs
        .iter()
        .filter_map(|cert| PeerCertInfo::parse(cert))
        .collect();
    let mapped = map.then(|| {
        let leaf = certs.first().and_then(|leaf| PeerCert::parse(leaf));
        std::sync::Arc::new(leaf.unwrap_or_default())
    });
    (shown, mapped)
}

/// A client certificate as `/connz?auth=true` shows it (`tls_peer_certs`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerCertInfo {
    pub subject: String,
    pub spki_sha256: String,
    pub cert_sha256: String,
}

impl PeerCertInfo {
    /// `None` if the certificate cannot be parsed.
    pub fn parse(der: &[u8]) -> Option<PeerCertInfo> {
        use sha2::{Digest, Sha256};
        let cert = Certificate::from_der(der).ok()?;
        let tbs = &cert.tbs_certificate;
        let spki = tbs.subject_public_key_info.to_der().ok()?;
        Some(PeerCertInfo {
            subject: go_subject(&tbs.subject, true),
            spki_sha256: hex::encode(Sha256::digest(spki)),
            cert_sha256: hex::encode(Sha256::digest(der)),
        })
    }
}

impl PeerCert {
    /// Read a (verified) client certificate; `None` if it cannot be parsed.
    pub fn parse(der: &[u8]) -> Option<PeerCert> {
        let cert = Certificate::from_der(der).ok()?;
        let tbs = &cert.tbs_certificate;
        let mut peer = PeerCert::default();
        if let Ok(Some((_, SubjectAltName(names)))) = tbs.get::<SubjectAltName>() {
            for name in names {
                match name {
                    GeneralName::Rfc822Name(v) => peer.emails.push(v.to_string()),
                    GeneralName::DnsName(v) => peer.dns_names.push(v.to_string()),
                    GeneralName::UniformResourceIdentifier(v) => peer.uris.push(v.to_string()),
                    _ => {}
                }
            }
        }
        let type_name = |oid: &ObjectIdentifier| {
            let oid = oid.to_string();
            GO_NAMED_FIELDS
                .iter()
                .chain(std::iter::once(&DOMAIN_COMPONENT))
                .find(|(o, _)| *o == oid)
                .map(|(_, name)| *name)
        };
        // The RDNs as the certificate holds them, with each attribute's type name and string
        // value where it has them.
        let raw: Vec<Vec<(Option<&str>, Option<String>)>> = tbs
            .subject
            .0
            .iter()
            .map(|rdn| {
                rdn.0
                    .iter()
                    .map(|atv| (type_name(&atv.oid), attribute_string(&atv.value)))
                    .collect()
            })
            .collect();
        peer.dn = raw
            .iter()
            .rev()
            .filter(|rdn| !rdn.is_empty())
            .map(|rdn| {
                rdn.iter()
                    .rev()
                    .map(|(name, value)| Some(((*name)?.to_string(), value.clone()?)))
                    .collect::<Option<Rdn>>()
            })
            .collect();
        peer.subject = go_subject(&tbs.subject, false);
        let dcs: Vec<String> = raw
            .iter()
            .flatten()
            .filter_map(|(name, value)| match (name, value) {
                (Some("DC"), Some(value)) => Some(format!("DC={value}")),
                _ => None,
            })
            .collect();
        peer.domain_components = dcs.join(",");
        Some(peer)
    }

    /// The configured user this certificate names, tried in nats-server's order. `exists` says
    /// whether a user of that name exists; `users` lists them all (for the DN comparison).
    pub fn map_user<'a>(
        &self,
        exists: impl Fn(&str) -> bool,
        users: impl Iterator<Item = &'a str>,
    ) -> Option<String> {
        let sans = self.emails.iter().chain(&self.dns_names).chain(&self.uris);
        if let Some(found) = sans.into_iter().find(|name| exists(name)) {
            return Some(found.clone());
        }
        if let Some(dn) = &self.dn {
            let mut parsed: Vec<(&str, Vec<Rdn>)> = users
                .filter_map(|name| Some((name, parse_dn(name)?)))
                .collect();
            // nats-server walks a map here; sorting makes a tie between two users stable.
            parsed.sort_by(|a, b| a.0.cmp(b.0));
            let exact = parsed.iter().find(|(_, user_dn)| {
                user_dn.len() == dn.len() && user_dn.iter().zip(dn).all(|(a, b)| rdn_equal(a, b))
            });
            let reordered = || parsed.iter().find(|(_, user_dn)| rdns_match(user_dn, dn));
            if let Some((name, _)) = exact.or_else(reordered) {
                return Some((*name).to_string());
            }
        }
        if !self.domain_components.is_empty() {
            let with_dcs = format!("{},{}", self.subject, self.domain_components);
            if exists(&with_dcs) {
                return Some(with_dcs);
            }
        }
        exists(&self.subject).then(|| self.subject.clone())
    }
}

/// Two RDNs hold the same attributes, in any order (types compared without case).
fn rdn_equal(a: &Rdn, b: &Rdn) -> bool {
    let has_all = |x: &Rdn, y: &Rdn| {
        y.iter().all(|(t, v)| {
            x.iter()
                .any(|(t2, v2)| t.eq_ignore_ascii_case(t2) && v == v2)
        })
    };
    a.len() == b.len() && has_all(a, b) && has_all(b, a)
}

/// The same RDNs, in any order.
fn rdns_match(a: &[Rdn], b: &[Rdn]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut taken = vec![false; b.len()];
    a.iter().all(|rdn| {
        let found = (0..b.len()).find(|&j| !taken[j] && rdn_equal(rdn, &b[j]));
        if let Some(j) = found {
            taken[j] = true;
        }
        found.is_some()
    })
}

/// A user name read as an RFC 4514 distinguished name (`CN=alice,O=Acme`), the way
/// nats-server reads it: `\\`-escapes of specials or hex pairs, unescaped spaces around values
/// dropped, BER (`#...`) values refused. `None` for a name that is not a DN.
fn parse_dn(s: &str) -> Option<Vec<Rdn>> {
    let bytes = s.as_bytes();
    let mut dn: Vec<Rdn> = Vec::new();
    let mut rdn: Rdn = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut kind: Option<String> = None;
    let mut trailing_spaces = 0usize;
    let take = |buf: &mut Vec<u8>, trailing: &mut usize| {
        let keep = buf.len().saturating_sub(*trailing);
        let out = String::from_utf8_lossy(&buf[..keep]).into_owned();
        buf.clear();
        *trailing = 0;
        out
    };
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\\' => {
                trailing_spaces = 0;
                let next = *bytes.get(i + 1)?;
                if b" \"#+,;<=>\\".contains(&next) {
                    buf.push(next);
                    i += 2;
                    continue;
                }
                let hex = s.get(i + 1..i + 3)?;
                buf.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
                continue;
            }
            b'=' => {
                kind = Some(take(&mut buf, &mut trailing_spaces));
                if bytes.get(i + 1) == Some(&b'#') {
                    return None;
                }
            }
            b',' | b'+' => {
                let t = kind.take().filter(|t| !t.is_empty())?;
                rdn.push((t, take(&mut buf, &mut trailing_spaces)));
                if c == b',' {
                    dn.push(std::mem::take(&mut rdn));
                }
            }
            b' ' if buf.is_empty() => {}
            _ => {
                if c == b' ' {
                    trailing_spaces += 1;
                } else {
                    trailing_spaces = 0;
                }
                buf.push(c);
            }
        }
        i += 1;
    }
    if !buf.is_empty() {
        let t = kind.take().filter(|t| !t.is_empty())?;
        rdn.push((t, take(&mut buf, &mut trailing_spaces)));
        dn.push(rdn);
    }
    Some(dn)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    fn rdn(pairs: &[(&str, &str)]) -> Rdn {
        pairs
            .iter()
            .map(|(t, v)| (t.to_string(), v.to_string()))
            .collect()
    }

    fn cert(subject: &[(DnType, &str)], sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn user_names_read_as_distinguished_names() {
        assert_eq!(
            parse_dn("CN=bob,OU=dev,O=Acme"),
            Some(vec![
                rdn(&[("CN", "bob")]),
                rdn(&[("OU", "dev")]),
                rdn(&[("O", "Acme")])
            ])
        );
        assert_eq!(
            parse_dn(" CN = a\\,b , O=\\41cme+OU=x"),
            Some(vec![
                rdn(&[("CN", "a,b")]),
                rdn(&[("O", "Acme"), ("OU", "x")])
            ])
        );
        // An escaped trailing space is kept.
        assert_eq!(parse_dn("CN=x\\ "), Some(vec![rdn(&[("CN", "x ")])]));
        for not_a_dn in [
            "alice@example.com",
            "svc.example.com",
            "CN=#0403",
            "CN=a,=b",
        ] {
            assert_eq!(parse_dn(not_a_dn), None, "{not_a_dn}");
        }
    }

    #[test]
    fn values_are_escaped_as_go_prints_them() {
        assert_eq!(escape_rdn_value(" a,b#"), "\\ a\\,b#");
        assert_eq!(escape_rdn_value("#x "), "\\#x\\ ");
        assert_eq!(escape_rdn_value("a+b<c>;\"d\\"), "a\\+b\\<c\\>\\;\\\"d\\\\");
    }

    #[test]
    fn the_subject_is_printed_in_gos_order_and_kept_as_a_dn() {
        let der = cert(
            &[
                (DnType::CommonName, "bob"),
                (DnType::CountryName, "US"),
                (
                    DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
                    "example",
                ),
                (DnType::OrganizationName, "Acme, Inc"),
            ],
            vec![],
        );
        let peer = PeerCert::parse(&der).unwrap();
        assert_eq!(peer.subject, "CN=bob,O=Acme\\, Inc,C=US");
        assert_eq!(peer.domain_components, "DC=example");
        assert_eq!(
            peer.dn,
            Some(vec![
                rdn(&[("O", "Acme, Inc")]),
                rdn(&[("DC", "example")]),
                rdn(&[("C", "US")]),
                rdn(&[("CN", "bob")]),
            ])
        );
        // An attribute type the DN form does not know leaves only the printed subject.
        let der = cert(
            &[
                (DnType::CommonName, "dave"),
                (
                    DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
                    "d",
                ),
            ],
            vec![],
        );
        let peer = PeerCert::parse(&der).unwrap();
        assert_eq!(peer.dn, None);
        assert_eq!(peer.subject, "CN=dave");
    }

    #[test]
    fn users_are_mapped_in_nats_servers_order() {
        let der = cert(
            &[
                (DnType::CommonName, "bob"),
                (DnType::OrganizationName, "Acme"),
            ],
            vec![
                SanType::DnsName("bob.example.com".try_into().unwrap()),
                SanType::Rfc822Name("bob@example.com".try_into().unwrap()),
                SanType::URI("spiffe://example.com/bob".try_into().unwrap()),
            ],
        );
        let peer = PeerCert::parse(&der).unwrap();
        let map = |users: &[&str]| peer.map_user(|n| users.contains(&n), users.iter().copied());
        let all = [
            "O=Acme,CN=bob",
            "spiffe://example.com/bob",
            "bob.example.com",
            "bob@example.com",
        ];
        assert_eq!(map(&all).as_deref(), Some("bob@example.com"));
        assert_eq!(map(&all[..3]).as_deref(), Some("bob.example.com"));
        assert_eq!(map(&all[..2]).as_deref(), Some("spiffe://example.com/bob"));
        // In order first, then in any order.
        assert_eq!(
            map(&["CN=bob,O=Acme", "O=Acme,CN=bob"]).as_deref(),
            Some("O=Acme,CN=bob")
        );
        assert_eq!(map(&["cn=bob,o=Acme"]).as_deref(), Some("cn=bob,o=Acme"));
        assert_eq!(map(&["CN=bob,O=acme", "CN=bob"]), None);
    }

    #[test]
    fn must_staple_is_read_from_the_tls_feature_extension() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        assert!(!must_staple(
            params.clone().self_signed(&key).unwrap().der()
        ));
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 24],
            vec![0x30, 0x03, 0x02, 0x01, 0x05],
        )];
        assert!(must_staple(params.self_signed(&key).unwrap().der()));
    }
}
