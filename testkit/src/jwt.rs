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
    /// An account's permission for another account to import a private export.
    Activation,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Operator => "operator",
            Kind::Account => "account",
            Kind::User => "user",
            Kind::Activation => "activation",
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

/// An operator with a system account and account `A` (with [`Operator::limited_a`]: 2
/// connections, 3 subscriptions, 64-byte payloads), whose signing key `a_signer` may issue
/// users too; [`Operator::config`] is its `operator` / `resolver: MEMORY` configuration.
pub struct Operator {
    pub operator: KeyPair,
    pub sys: KeyPair,
    pub a: KeyPair,
    pub a_signer: KeyPair,
    /// Account `B` exists, but its JWT is signed by a key the operator does not trust.
    pub rogue: KeyPair,
    /// The operator's, the system account's and B's JWTs, made once so that every
    /// configuration of this operator carries the same ones (nats-server refuses a reload
    /// that changes the operator).
    fixed: std::sync::OnceLock<[String; 3]>,
}

impl Default for Operator {
    fn default() -> Self {
        Self::new()
    }
}

impl Operator {
    /// Fresh keys for the operator and its accounts.
    pub fn new() -> Operator {
        Operator {
            operator: KeyPair::new_operator(),
            sys: KeyPair::new_account(),
            a: KeyPair::new_account(),
            a_signer: KeyPair::new_account(),
            rogue: KeyPair::new_account(),
            fixed: std::sync::OnceLock::new(),
        }
    }

    /// `a_nats` holds account A's claims; its limits are added to nsc's defaults (unlimited),
    /// and `a_signer` to its signing keys.
    pub fn config(&self, a_nats: serde_json::Value) -> String {
        self.config_with(a_nats, serde_json::json!({}))
    }

    /// [`Operator::config`], with `a_top` adding standard claims (`name`, `exp`, ...) to A's JWT.
    pub fn config_with(&self, a_nats: serde_json::Value, a_top: serde_json::Value) -> String {
        let [op, sys, rogue] = self.fixed.get_or_init(|| self.fixed_jwts());
        let mut a_nats = a_nats;
        let mut limits = unlimited_account_limits();
        if let (Some(l), Some(extra)) = (limits.as_object_mut(), a_nats["limits"].as_object()) {
            l.extend(extra.clone());
        }
        a_nats["limits"] = limits;
        let mut keys = a_nats["signing_keys"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        keys.push(self.a_signer.public_key().into());
        a_nats["signing_keys"] = keys.into();
        let a = encode(
            &self.operator,
            &self.a.public_key(),
            Kind::Account,
            a_nats,
            a_top,
        );
        format!(
            "operator: {op}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {sys}\n  {}: {a}\n  {}: {rogue}\n}}\n",
            self.sys.public_key(),
            self.a.public_key(),
            self.rogue.public_key(),
        )
    }

    fn fixed_jwts(&self) -> [String; 3] {
        let op = encode(
            &self.operator,
            &self.operator.public_key(),
            Kind::Operator,
            serde_json::json!({ "system_account": self.sys.public_key() }),
            serde_json::json!({}),
        );
        let sys = encode(
            &self.operator,
            &self.sys.public_key(),
            Kind::Account,
            serde_json::json!({ "limits": unlimited_account_limits() }),
            serde_json::json!({}),
        );
        let untrusted = KeyPair::new_operator();
        let rogue = encode(
            &untrusted,
            &self.rogue.public_key(),
            Kind::Account,
            serde_json::json!({ "limits": unlimited_account_limits() }),
            serde_json::json!({}),
        );
        [op, sys, rogue]
    }

    pub fn limited_a(&self) -> String {
        self.config(serde_json::json!({
            "limits": { "conn": 2, "subs": 3, "payload": 64, "data": -1 }
        }))
    }

    /// A user JWT of account `a` (or whoever `issuer` is) with `nats` claims and `top` claims.
    pub fn user(
        &self,
        issuer: &KeyPair,
        nats: serde_json::Value,
        top: serde_json::Value,
    ) -> (String, KeyPair) {
        let user = KeyPair::new_user();
        // nsc's defaults: the user's own limits unlimited.
        let mut claims = serde_json::json!({ "subs": -1, "data": -1, "payload": -1 });
        if let (Some(c), Some(extra)) = (claims.as_object_mut(), nats.as_object()) {
            c.extend(extra.clone());
        }
        (
            encode(issuer, &user.public_key(), Kind::User, claims, top),
            user,
        )
    }
}

impl Operator {
    /// An account JWT for `account` signed by the operator: `nats` claims, with nsc's default
    /// (unlimited) limits under any `limits` given.
    pub fn account_jwt(&self, account: &KeyPair, nats: serde_json::Value) -> String {
        let mut nats = nats;
        let mut limits = unlimited_account_limits();
        if let (Some(l), Some(extra)) = (limits.as_object_mut(), nats["limits"].as_object()) {
            l.extend(extra.clone());
        }
        nats["limits"] = limits;
        encode(
            &self.operator,
            &account.public_key(),
            Kind::Account,
            nats,
            serde_json::json!({}),
        )
    }

    /// The operator JWT (naming the system account).
    pub fn operator_jwt(&self) -> String {
        encode(
            &self.operator,
            &self.operator.public_key(),
            Kind::Operator,
            serde_json::json!({ "system_account": self.sys.public_key() }),
            serde_json::json!({}),
        )
    }

    /// The `operator` / `resolver: MEMORY` configuration preloading the system account and
    /// each of `accounts` with its claims ([`Operator::account_jwt`]).
    pub fn config_with_accounts(&self, accounts: &[(&KeyPair, serde_json::Value)]) -> String {
        let mut preload = format!(
            "  {}: {}\n",
            self.sys.public_key(),
            self.account_jwt(&self.sys, serde_json::json!({}))
        );
        for (key, nats) in accounts {
            preload.push_str(&format!(
                "  {}: {}\n",
                key.public_key(),
                self.account_jwt(key, nats.clone())
            ));
        }
        format!(
            "operator: {}\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n",
            self.operator_jwt()
        )
    }
}

/// An activation JWT: `issuer` (the exporting account, or its signing key with `nats`
/// naming the account in `issuer_account`) lets `importer` import `subject` (`kind`:
/// `stream` or `service`). `top` adds standard claims (`exp`, `iat`, ...).
pub fn activation(
    issuer: &KeyPair,
    importer: &KeyPair,
    subject: &str,
    kind: &str,
    nats: serde_json::Value,
    top: serde_json::Value,
) -> String {
    let mut claims = serde_json::json!({ "subject": subject, "kind": kind });
    if let (Some(c), Some(extra)) = (claims.as_object_mut(), nats.as_object()) {
        c.extend(extra.clone());
    }
    encode(
        issuer,
        &importer.public_key(),
        Kind::Activation,
        claims,
        top,
    )
}

/// The account limits nsc writes by default: nothing limited.
pub fn unlimited_account_limits() -> serde_json::Value {
    serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1
    })
}
