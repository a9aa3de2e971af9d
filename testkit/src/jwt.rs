//! NATS JWTs for operator-mode tests (no nsc needed): operator, account and user JWTs signed
//! with NKEYs, and `.creds` files as the clients read them.

use base64::Engine as _;
use nkeys::KeyPair;

/// What a JWT describes (`nats.type`).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Operator,
    Account,
    User,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Operator => "operator",
            Kind::Account => "account",
            Kind::User => "user",
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A v2 JWT of `kind` for `subject`, signed by `issuer`. `nats` holds the kind's fields;
/// `top` adds standard claims (`exp`, `iat`, ...), overriding the defaults.
pub fn encode(
    issuer: &KeyPair,
    subject: &str,
    kind: Kind,
    nats: serde_json::Value,
    top: serde_json::Value,
) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut nats = nats;
    if let Some(fields) = nats.as_object_mut() {
        fields.insert("type".into(), kind.name().into());
        fields.insert("version".into(), 2.into());
    }
    let mut claims = serde_json::json!({
        "jti": format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..)),
        "iat": now(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": subject,
        "nats": nats,
    });
    if let (Some(c), Some(extra)) = (claims.as_object_mut(), top.as_object()) {
        c.extend(extra.clone());
    }
    let header = engine.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = engine.encode(claims.to_string());
    let input = format!("{header}.{body}");
    let sig = issuer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", engine.encode(sig))
}

/// A `.creds` file's text for a user JWT and the user's key pair, as nsc writes it.
pub fn creds(jwt: &str, user: &KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    )
}

/// The CONNECT fields of a user JWT signing `nonce` with `user`'s key.
pub fn connect_fields(jwt: &str, user: &KeyPair, nonce: &str) -> serde_json::Value {
    let sig = user.sign(nonce.as_bytes()).unwrap();
    serde_json::json!({
        "jwt": jwt,
        "sig": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig),
    })
}
