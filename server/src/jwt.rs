//! NATS JWTs for operator mode: `header.claims.signature`, each part base64url, the signature
//! an ed25519 signature of `header.claims` by the issuer's NKEY (`iss`).
//!
//! Operator JWTs name the keys that may sign accounts; account JWTs carry the account's
//! limits, signing keys, default permissions and revocations; user JWTs carry the user's
//! permissions and are issued by an account (or one of its signing keys, naming the account
//! in `issuer_account`). Both the v1 layout (`type` at the top) and the v2 one
//! (`nats.type`, `nats.version: 2`) are read.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

/// Why a JWT was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum JwtError {
    #[error("expected 3 chunks")]
    Shape,
    #[error("invalid encoding")]
    Encoding,
    #[error("unsupported JWT header")]
    Header,
    #[error("invalid claims: {0}")]
    Claims(String),
    #[error("claim failed signature verification")]
    Signature,
    #[error("expected {expected} JWT, got {got:?}")]
    Kind { expected: Kind, got: String },
}

/// What a JWT describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Operator,
    Account,
    User,
    /// An account's permission for another account to import one of its private exports.
    Activation,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Operator => "operator",
            Kind::Account => "account",
            Kind::User => "user",
            Kind::Activation => "activation",
        })
    }
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

/// The claims every JWT has, and the NATS part.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Claims {
    pub(crate) jti: String,
    pub(crate) iat: i64,
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) name: String,
    /// Unix seconds after which the JWT is no longer valid (0: never expires).
    pub(crate) exp: i64,
    /// Unix seconds before which it is not yet valid (0: at once).
    pub(crate) nbf: i64,
    /// The v1 layout's kind.
    #[serde(rename = "type")]
    v1_type: Option<String>,
    pub(crate) nats: Nats,
}

/// Publish or subscribe rules of a user or of an account's default permissions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct PermissionClaim {
    pub(crate) allow: Vec<String>,
    pub(crate) deny: Vec<String>,
}

impl PermissionClaim {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// `resp`: a responder may publish `max` replies within `ttl` (nanoseconds) of a request.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct ResponseClaim {
    pub(crate) max: i64,
    pub(crate) ttl: i64,
}

/// A user's (or an account's default) permissions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct UserPermissions {
    #[serde(rename = "pub")]
    pub(crate) publish: PermissionClaim,
    #[serde(rename = "sub")]
    pub(crate) subscribe: PermissionClaim,
    pub(crate) resp: Option<ResponseClaim>,
    /// Where and when the user may log in (`src`, `times`, `times_location`). They travel
    /// with the permissions, so a scoped signing key's template carries them too; they do
    /// not count as permissions for [`UserPermissions::is_empty`].
    #[serde(flatten)]
    pub(crate) limits: crate::user_limits::UserLimitsClaim,
}

impl UserPermissions {
    pub(crate) fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty() && self.resp.is_none()
    }
}

/// A signing key: a plain key, or a scoped one (whose users get the scope's template in
/// place of their own permissions and limits; see [`scoped_user`]).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum SigningKey {
    Plain(String),
    Scoped {
        key: String,
        #[serde(default)]
        template: serde_json::Value,
    },
}

/// What a scope template's `{{...}}` operations expand to for one user.
pub(crate) struct TemplateContext<'a> {
    pub(crate) user: &'a Claims,
    pub(crate) account: &'a Claims,
}

/// Why a scope template gives a user no permissions (the login is refused).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TemplateError {
    #[error("template operation in {entry:?}: {op:?} is not defined")]
    UnknownOperation { entry: String, op: String },
    #[error("generated invalid subject {entry:?}: {tag:?} is not defined")]
    UndefinedTag { entry: String, tag: String },
    #[error("generated invalid subject")]
    InvalidSubject,
    #[error("template expansion exceeds limit: {TEMPLATE_EXPANSION_LIMIT}")]
    TooManySubjects,
}

/// At most this many subjects come out of one permission list's templates (nats-server's
/// bound, against a few tags multiplying into millions of subjects).
const TEMPLATE_EXPANSION_LIMIT: usize = 4096;

/// The `{{...}}` operations in `entry`, each with its whole text.
fn template_operations(entry: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = entry;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let inner = after.find('}').unwrap_or(after.len());
        if inner > 0 && after[inner..].starts_with("}}") {
            let whole = &entry[offset + start..offset + start + 2 + inner + 2];
            out.push(whole);
            offset += start + 2 + inner + 2;
        } else {
            offset += start + 1;
        }
        rest = &entry[offset..];
    }
    out
}

/// `tag(name)` or `account-tag(name)` (case-insensitive): whose tags, and the name.
fn tag_operation(op: &str) -> Option<(bool, &str)> {
    let lower = op.to_ascii_lowercase();
    for (prefix, account) in [("account-tag(", true), ("tag(", false)] {
        if lower.starts_with(prefix) && op.ends_with(')') {
            return Some((account, &op[prefix.len()..op.len() - 1]));
        }
    }
    None
}

impl TemplateContext<'_> {
    /// The values `{{op}}` stands for: one for the names and keys, every matching tag's value
    /// for the tag operations (none when no tag has the name).
    fn values(&self, entry: &str, op: &str) -> Result<(Vec<String>, bool), TemplateError> {
        let single = |v: &str| Ok((vec![v.to_string()], false));
        match op.to_ascii_lowercase().as_str() {
            "name()" => return single(&self.user.name),
            "subject()" => return single(&self.user.sub),
            "account-name()" => return single(&self.account.name),
            "account-subject()" => {
                return single(self.user.nats.issuer_account.as_deref().unwrap_or_default())
            }
            _ => {}
        }
        let Some((account, name)) = tag_operation(op) else {
            return Err(TemplateError::UnknownOperation {
                entry: entry.to_string(),
                op: op.to_string(),
            });
        };
        let tags = if account {
            &self.account.nats.tags
        } else {
            &self.user.nats.tags
        };
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let values = tags
            .iter()
            .filter_map(|t| t.strip_prefix(&prefix).map(str::to_string))
            .collect();
        Ok((values, true))
    }

    /// A permission list with its templates expanded. Subjects that come out invalid are left
    /// out of an allow list (`fail_on_invalid` false) and refuse the login in a deny list, as
    /// on nats-server.
    pub(crate) fn expand(
        &self,
        list: &[String],
        fail_on_invalid: bool,
    ) -> Result<Vec<String>, TemplateError> {
        if list.iter().all(|e| template_operations(e).is_empty()) {
            return Ok(list.to_vec());
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for entry in list {
            let ops = template_operations(entry);
            let mut values = Vec::with_capacity(ops.len());
            let mut has_tags = false;
            for whole in &ops {
                let op = whole[2..whole.len() - 2].trim();
                let (mut v, tag) = self.values(entry, op)?;
                if tag && v.is_empty() {
                    if fail_on_invalid {
                        let name = tag_operation(op).map(|(_, n)| n).unwrap_or_default();
                        return Err(TemplateError::UndefinedTag {
                            entry: entry.clone(),
                            tag: name.to_string(),
                        });
                    }
                    // A subject no one can have, so the entry drops out below.
                    v = vec![" ".to_string()];
                }
                has_tags |= tag;
                values.push(v);
            }
            let combinations: usize = values.iter().map(Vec::len).product();
            if has_tags
                && (combinations > TEMPLATE_EXPANSION_LIMIT
                    || out.len() > TEMPLATE_EXPANSION_LIMIT - combinations)
            {
                return Err(TemplateError::TooManySubjects);
            }
            let mut index = vec![0usize; values.len()];
            for _ in 0..combinations {
                let mut subject = entry.clone();
                for (i, whole) in ops.iter().enumerate() {
                    subject = subject.replace(whole, &values[i][index[i]]);
                }
                if crate::subject::is_valid_subject(subject.as_bytes()) {
                    out.push(subject);
                } else if fail_on_invalid {
                    return Err(TemplateError::InvalidSubject);
                }
                // The next combination, the last operation changing fastest.
                for i in (0..index.len()).rev() {
                    index[i] += 1;
                    if index[i] < values[i].len() {
                        break;
                    }
                    index[i] = 0;
                }
            }
        }
        Ok(out)
    }

    /// The template's permissions with their templates expanded. An allow list that expands
    /// to nothing allows nothing (`>` is denied instead), as on nats-server.
    pub(crate) fn permissions(
        &self,
        template: &UserPermissions,
    ) -> Result<UserPermissions, TemplateError> {
        let mut p = template.clone();
        p.subscribe.allow = self.expand(&template.subscribe.allow, false)?;
        p.subscribe.deny = self.expand(&template.subscribe.deny, true)?;
        p.publish.allow = self.expand(&template.publish.allow, false)?;
        p.publish.deny = self.expand(&template.publish.deny, true)?;
        for (before, after) in [
            (&template.subscribe, &mut p.subscribe),
            (&template.publish, &mut p.publish),
        ] {
            if !before.allow.is_empty() && after.allow.is_empty() {
                after.deny.push(">".to_string());
            }
        }
        Ok(p)
    }
}

impl SigningKey {
    pub(crate) fn key(&self) -> &str {
        match self {
            SigningKey::Plain(k) | SigningKey::Scoped { key: k, .. } => k,
        }
    }
}

/// Account limits (`-1`: unlimited; an absent limit is 0, as nats-server reads it) and
/// JetStream limits (`0` storage: JetStream off).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct AccountLimitsClaim {
    pub(crate) subs: i64,
    pub(crate) data: i64,
    pub(crate) payload: i64,
    pub(crate) conn: i64,
    pub(crate) mem_storage: i64,
    pub(crate) disk_storage: i64,
    pub(crate) streams: i64,
    pub(crate) consumer: i64,
    pub(crate) max_ack_pending: i64,
    pub(crate) mem_max_stream_bytes: i64,
    pub(crate) disk_max_stream_bytes: i64,
    pub(crate) max_bytes_required: bool,
    /// The account's users may not log in with bearer-token JWTs.
    pub(crate) disallow_bearer: bool,
    /// Per-replication tier (`R1`, ...) JetStream limits; a single node uses `R1`.
    pub(crate) tiered_limits: HashMap<String, AccountLimitsClaim>,
}

/// An account's export: a stream or service others may import, publicly or (`token_req`)
/// with an activation JWT the account issued to the importer.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct ExportClaim {
    pub(crate) subject: String,
    /// `stream` or `service`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) token_req: bool,
    /// Importing accounts (or `*`) whose activations issued at or before the time are revoked.
    pub(crate) revocations: HashMap<String, i64>,
    /// `Singleton` (or empty), `Stream` or `Chunked`.
    pub(crate) response_type: String,
    /// Nanoseconds; 0: the default.
    pub(crate) response_threshold: i64,
    pub(crate) account_token_position: usize,
}

/// An account's import of another account's export.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct ImportClaim {
    /// A stream's subject in the exporter; a service's subject as the importer publishes it
    /// (unless `to` names the exporter's).
    pub(crate) subject: String,
    /// The exporting account's public key.
    pub(crate) account: String,
    /// The activation JWT for a private export.
    pub(crate) token: String,
    /// Deprecated: a stream's prefix, or the service's subject in the exporter.
    pub(crate) to: String,
    /// The subject in the importing account.
    pub(crate) local_subject: String,
    /// `stream` or `service`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) share: bool,
}

/// One destination of an account's subject mapping.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct MappingClaim {
    pub(crate) subject: String,
    /// Percent; absent (0) means 100.
    pub(crate) weight: u8,
    pub(crate) cluster: String,
}

/// The `nats` part of the claims; which fields mean something depends on the kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Nats {
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) version: Option<u32>,
    // Operator and account.
    pub(crate) signing_keys: Vec<SigningKey>,
    // Operator.
    pub(crate) system_account: Option<String>,
    // Account.
    pub(crate) limits: AccountLimitsClaim,
    pub(crate) default_permissions: UserPermissions,
    /// Users (or `*`, everyone) whose JWTs issued at or before the time are revoked.
    pub(crate) revocations: HashMap<String, i64>,
    pub(crate) exports: Vec<ExportClaim>,
    pub(crate) imports: Vec<ImportClaim>,
    /// Subject mappings: source subject → weighted destinations.
    pub(crate) mappings: std::collections::BTreeMap<String, Vec<MappingClaim>>,
    // Activation.
    /// The subject (perhaps with wildcards) the activation lets its subject account import.
    pub(crate) subject: String,
    /// `stream` or `service`: what the activation is for.
    #[serde(rename = "kind")]
    pub(crate) import_kind: String,
    // User.
    #[serde(flatten)]
    pub(crate) permissions: UserPermissions,
    pub(crate) bearer_token: bool,
    /// The connection types (`STANDARD`, `WEBSOCKET`, ...) the user may log in over; empty:
    /// any.
    pub(crate) allowed_connection_types: Vec<String>,
    /// Free-form tags, shown by `/connz?auth=true`.
    pub(crate) tags: Vec<String>,
    pub(crate) issuer_account: Option<String>,
    /// A user's own limits (`-1`: unlimited; absent is 0, as nats-server reads it).
    pub(crate) subs: i64,
    pub(crate) payload: i64,
}

impl Claims {
    pub(crate) fn kind(&self) -> Option<&str> {
        self.nats.kind.as_deref().or(self.v1_type.as_deref())
    }

    /// Whether the JWT's validity window (`nbf`..`exp`) excludes `now` (Unix seconds).
    pub(crate) fn is_expired_at(&self, now: i64) -> bool {
        (self.exp > 0 && now >= self.exp) || (self.nbf > 0 && now < self.nbf)
    }

    /// Whether a user JWT issued at `issued_at` for `user` is revoked by this account.
    pub(crate) fn revokes(&self, user: &str, issued_at: i64) -> bool {
        [user, "*"].iter().any(|k| {
            self.nats
                .revocations
                .get(*k)
                .is_some_and(|&t| t >= issued_at)
        })
    }

    /// The account's signing key `key`, if it is one (or the account's own key: `Some(None)`).
    pub(crate) fn account_signer(&self, key: &str) -> Option<Option<&SigningKey>> {
        if key == self.sub {
            return Some(None);
        }
        self.nats
            .signing_keys
            .iter()
            .find(|k| k.key() == key)
            .map(Some)
    }

    /// The keys that may sign for this operator (its own and its signing keys).
    pub(crate) fn operator_keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.sub.as_str()).chain(self.nats.signing_keys.iter().map(|k| k.key()))
    }
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Encoding)
}

/// Decode `token`, check it is signed by its issuer's key, and that it is a `kind` JWT.
/// Expiry is the caller's to check (a server starts with an expired account JWT; a user
/// with an expired JWT cannot connect).
pub(crate) fn decode(token: &str, kind: Kind) -> Result<Claims, JwtError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::Header)?;
    let typ_ok = header.typ.eq_ignore_ascii_case("jwt");
    let alg_ok = matches!(header.alg.as_str(), "ed25519" | "ed25519-nkey");
    if !typ_ok || !alg_ok {
        return Err(JwtError::Header);
    }
    let claims: Claims =
        serde_json::from_slice(&b64(c)?).map_err(|e| JwtError::Claims(e.to_string()))?;
    let sig = b64(s)?;
    let issuer = nkeys::KeyPair::from_public_key(&claims.iss).map_err(|_| JwtError::Signature)?;
    // Version 2 signs `header.claims`; version 1 signed the encoded claims alone.
    let signed = if claims.nats.version.unwrap_or(1) >= 2 {
        &token[..h.len() + 1 + c.len()]
    } else {
        c
    };
    issuer
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
    let mut claims = claims;
    if claims.nats.version.unwrap_or(1) < 2 {
        // Version 1 user JWTs had no limits of their own: nats-server reads them as unlimited.
        claims.nats.subs = -1;
        claims.nats.payload = -1;
    }
    match claims.kind() {
        Some(k) if k == kind.to_string() => Ok(claims),
        other => Err(JwtError::Kind {
            expected: kind,
            got: other.unwrap_or_default().to_string(),
        }),
    }
}

/// A JWT of any kind, as a deletion request is: its issuer, subject and `nats` object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GenericClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) exp: i64,
    pub(crate) nats: serde_json::Map<String, serde_json::Value>,
}

/// Decode `token` of any kind and check it is signed by its issuer's key.
pub(crate) fn decode_generic(token: &str) -> Result<GenericClaims, JwtError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::Header)?;
    // `ed25519-nkey` (version 2) signs `header.claims`; `ed25519` (version 1) the claims alone.
    let signed = match header.alg.as_str() {
        "ed25519-nkey" => &token[..h.len() + 1 + c.len()],
        "ed25519" => c,
        _ => return Err(JwtError::Header),
    };
    if !header.typ.eq_ignore_ascii_case("jwt") {
        return Err(JwtError::Header);
    }
    let claims: GenericClaims =
        serde_json::from_slice(&b64(c)?).map_err(|e| JwtError::Claims(e.to_string()))?;
    let issuer = nkeys::KeyPair::from_public_key(&claims.iss).map_err(|_| JwtError::Signature)?;
    issuer
        .verify(signed.as_bytes(), &b64(s)?)
        .map_err(|_| JwtError::Signature)?;
    Ok(claims)
}

/// The user JWT fields a scope's template stands in for.
const SCOPED_FIELDS: [&str; 12] = [
    "pub",
    "sub",
    "resp",
    "src",
    "times",
    "times_location",
    "subs",
    "data",
    "payload",
    "bearer_token",
    "proxy_required",
    "allowed_connection_types",
];

/// The `nats` claims of a user (decoded, verified) `token` signed by a scoped key: its own,
/// with every permission and limit replaced by the scope's `template`'s, whose absent
/// limits are unlimited (nsc's scopes start from unlimited, unlike user JWTs). Whatever this
/// server reads of a user's limits then comes from the template alike.
pub(crate) fn scoped_user(token: &str, template: &serde_json::Value) -> Result<Nats, JwtError> {
    let claims = token.trim().split('.').nth(1).ok_or(JwtError::Shape)?;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64(claims)?).map_err(|e| JwtError::Claims(e.to_string()))?;
    let mut nats = match claims.get_mut("nats").map(serde_json::Value::take) {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    nats.retain(|k, _| !SCOPED_FIELDS.contains(&k.as_str()));
    for limit in ["subs", "data", "payload"] {
        nats.insert(limit.to_string(), (-1).into());
    }
    if let Some(template) = template.as_object() {
        for (k, v) in template {
            if SCOPED_FIELDS.contains(&k.as_str()) {
                nats.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(nats))
        .map_err(|e| JwtError::Claims(e.to_string()))
}

/// Whether a (decoded, verified) user JWT sets any permission or limit of its own: a scoped
/// signing key may only sign users that leave them all to its template. As in nats-server, a
/// field is unset when absent or at its zero value (`0`, `false`, `""`, an object of such);
/// a list is set even when empty, and so is `resp` whenever present.
pub(crate) fn user_sets_permissions_or_limits(token: &str) -> bool {
    fn zero(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Null => true,
            serde_json::Value::Bool(b) => !b,
            serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(_) => false,
            serde_json::Value::Object(m) => m.values().all(zero),
        }
    }
    let claims = token
        .trim()
        .split('.')
        .nth(1)
        .and_then(|c| b64(c).ok())
        .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok());
    let Some(nats) = claims.as_ref().and_then(|c| c.get("nats")) else {
        return false;
    };
    SCOPED_FIELDS.iter().any(|f| match (nats.get(*f), *f) {
        (None, _) => false,
        (Some(v), "resp") => !v.is_null(),
        (Some(v), _) => !zero(v),
    })
}

/// Make a JWT of `kind` for `subject`, signed by `issuer` (tests and tools; no nsc needed).
#[cfg(test)]
pub(crate) fn encode(
    issuer: &nkeys::KeyPair,
    subject: &str,
    kind: Kind,
    name: &str,
    mut nats: serde_json::Value,
) -> Result<String, nkeys::error::Error> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if let Some(fields) = nats.as_object_mut() {
        fields.insert("type".into(), kind.to_string().into());
        fields.insert("version".into(), 2.into());
    }
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "jti": format!("{:X}", rand::random::<u128>()),
        "iat": now,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let header = engine.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = engine.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let sig = issuer.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", engine.encode(sig)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    #[test]
    fn encoded_jwts_decode_and_tampering_is_caught() {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let jwt = encode(
            &operator,
            &account.public_key(),
            Kind::Account,
            "A",
            serde_json::json!({ "limits": { "conn": 2, "subs": 10 } }),
        )
        .unwrap();
        let claims = decode(&jwt, Kind::Account).unwrap();
        assert_eq!(claims.iss, operator.public_key());
        assert_eq!(claims.sub, account.public_key());
        assert_eq!((claims.nats.limits.conn, claims.nats.limits.subs), (2, 10));
        assert_eq!(claims.nats.limits.payload, 0);
        assert!(matches!(
            decode(&jwt, Kind::User),
            Err(JwtError::Kind { .. })
        ));
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let other = encode(
            &operator,
            &account.public_key(),
            Kind::Account,
            "B",
            serde_json::json!({}),
        )
        .unwrap();
        let other_body = other.split('.').nth(1).unwrap().to_string();
        parts[1] = &other_body;
        assert_eq!(
            decode(&parts.join("."), Kind::Account).unwrap_err(),
            JwtError::Signature
        );
        assert_eq!(decode("a.b", Kind::Account).unwrap_err(), JwtError::Shape);
    }

    #[test]
    fn v1_jwts_as_old_clients_ship_them_decode() {
        // An operator, account and user from nats.py's test fixtures (v1 layout).
        let user = "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.eyJqdGkiOiJXTURGT1dHV1JGWkRGRFVSM0dPUkdESEtUTTdDUlZBVDQ1RkRFMllNRUY1N0VOQ0JBVFFRIiwiaWF0IjoxNTUzODQwOTQ0LCJpc3MiOiJBRDdTRUFOUzZCQ0JGNkZISUI3U1EzVUdKVlBXNTNCWE9BTFA3NVlYSkJCWFFMN0VBRkI2TkpOQSIsIm5hbWUiOiJmb28tdXNlciIsInN1YiI6IlVDSzVON042Nk9CT0lORlhBWUMyQUNKUVlGU09ENFZZTlU2QVBFSlRBVkZaQjJTVkhMS0dFVzdMIiwidHlwZSI6InVzZXIiLCJuYXRzIjp7InB1YiI6e30sInN1YiI6e319fQ.Vri09BN561m37GvuSWoGN9L9TSkwQbjC_jIv1BCJcoxZqNc_Pa7WbR12b3SAS4_Ip2D9-2HCwyYib1JUEIO8Bg";
        let claims = decode(user, Kind::User).unwrap();
        assert_eq!(
            claims.iss,
            "AD7SEANS6BCBF6FHIB7SQ3UGJVPW53BXOALP75YXJBBXQL7EAFB6NJNA"
        );
        assert!(claims.nats.permissions.is_empty());
        assert_eq!((claims.nats.subs, claims.nats.payload), (-1, -1));
    }

    #[test]
    fn generic_jwts_of_any_kind_decode_and_tampering_is_caught() {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let request = encode(
            &operator,
            &operator.public_key(),
            Kind::Operator,
            "prune",
            serde_json::json!({ "accounts": [account.public_key()] }),
        )
        .unwrap();
        let claims = decode_generic(&request).unwrap();
        assert_eq!(claims.iss, operator.public_key());
        assert_eq!(claims.sub, operator.public_key());
        assert_eq!(
            claims.nats["accounts"],
            serde_json::json!([account.public_key()])
        );
        let forged = encode(
            &account,
            &operator.public_key(),
            Kind::Operator,
            "prune",
            serde_json::json!({}),
        )
        .unwrap();
        let mut parts: Vec<&str> = request.split('.').collect();
        let forged_body = forged.split('.').nth(1).unwrap().to_string();
        parts[1] = &forged_body;
        assert_eq!(
            decode_generic(&parts.join(".")).unwrap_err(),
            JwtError::Signature
        );
        assert_eq!(decode_generic("garbage").unwrap_err(), JwtError::Shape);
    }

    #[test]
    fn template_operations_are_found_as_nats_server_finds_them() {
        assert_eq!(
            template_operations("a.{{name()}}.{{ tag(x) }}"),
            vec!["{{name()}}", "{{ tag(x) }}"]
        );
        assert!(template_operations("a.{{}}.b").is_empty());
        assert!(template_operations("{{a}b}}").is_empty());
        // As the leftmost match of nats-server's pattern: the third brace is inside.
        assert_eq!(template_operations("{{{x}}"), vec!["{{{x}}"]);
    }

    #[test]
    fn scope_templates_expand_per_user() {
        let mut user = Claims {
            name: "alice".into(),
            sub: "UKEY".into(),
            ..Claims::default()
        };
        user.nats.issuer_account = Some("AKEY".into());
        user.nats.tags = vec!["team:red".into(), "team:blue".into(), "other".into()];
        let mut account = Claims {
            name: "acme".into(),
            ..Claims::default()
        };
        account.nats.tags = vec!["region:eu".into()];
        let cx = TemplateContext {
            user: &user,
            account: &account,
        };
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            cx.expand(
                &list(&[
                    "{{name()}}.{{subject()}}",
                    "{{account-name()}}.{{ACCOUNT-SUBJECT()}}",
                    "t.{{tag(TEAM)}}.{{account-tag(region)}}",
                    "plain.>",
                ]),
                false
            )
            .unwrap(),
            list(&[
                "alice.UKEY",
                "acme.AKEY",
                "t.red.eu",
                "t.blue.eu",
                "plain.>"
            ])
        );
        // A missing tag drops an allow entry and refuses a deny entry.
        assert_eq!(
            cx.expand(&list(&["x.{{tag(nope)}}", "y"]), false).unwrap(),
            list(&["y"])
        );
        assert!(matches!(
            cx.expand(&list(&["x.{{tag(nope)}}"]), true),
            Err(TemplateError::UndefinedTag { .. })
        ));
        assert!(matches!(
            cx.expand(&list(&["x.{{nope()}}"]), false),
            Err(TemplateError::UnknownOperation { .. })
        ));
        // An allow list that expands to nothing allows nothing.
        let template = UserPermissions {
            publish: PermissionClaim {
                allow: list(&["x.{{tag(nope)}}"]),
                deny: Vec::new(),
            },
            ..UserPermissions::default()
        };
        let p = cx.permissions(&template).unwrap();
        assert!(p.publish.allow.is_empty());
        assert_eq!(p.publish.deny, list(&[">"]));
        // Tags multiplying past the bound refuse the template.
        let many: Vec<String> = (0..100).map(|i| format!("t:{i}")).collect();
        user.nats.tags = many;
        let cx = TemplateContext {
            user: &user,
            account: &account,
        };
        assert_eq!(
            cx.expand(&list(&["{{tag(t)}}.{{tag(t)}}"]), false),
            Err(TemplateError::TooManySubjects)
        );
    }

    #[test]
    fn scoped_users_must_leave_permissions_and_limits_to_the_scope() {
        let issuer = nkeys::KeyPair::new_account();
        let user =
            |nats: serde_json::Value| encode(&issuer, "UKEY", Kind::User, "u", nats).unwrap();
        let empty = [
            serde_json::json!({}),
            serde_json::json!({ "subs": 0, "pub": {}, "bearer_token": false, "tags": ["a"] }),
            serde_json::json!({ "issuer_account": "AKEY", "resp": null }),
        ];
        for nats in empty {
            assert!(
                !user_sets_permissions_or_limits(&user(nats.clone())),
                "{nats}"
            );
        }
        let set = [
            serde_json::json!({ "subs": -1 }),
            serde_json::json!({ "data": 5 }),
            serde_json::json!({ "pub": { "allow": [] } }),
            serde_json::json!({ "resp": {} }),
            serde_json::json!({ "src": ["10.0.0.0/8"] }),
            serde_json::json!({ "times_location": "UTC" }),
            serde_json::json!({ "bearer_token": true }),
        ];
        for nats in set {
            assert!(
                user_sets_permissions_or_limits(&user(nats.clone())),
                "{nats}"
            );
        }
    }

    #[test]
    fn a_scoped_user_takes_the_templates_permissions_and_limits() {
        let signer = nkeys::KeyPair::new_account();
        let token = encode(
            &signer,
            "UKEY",
            Kind::User,
            "u",
            serde_json::json!({ "issuer_account": "AKEY", "tags": ["t:1"] }),
        )
        .unwrap();
        let nats = scoped_user(
            &token,
            &serde_json::json!({
                "pub": { "allow": ["a"] }, "payload": 10,
                "allowed_connection_types": ["WEBSOCKET"], "bearer_token": true,
            }),
        )
        .unwrap();
        assert_eq!(nats.permissions.publish.allow, vec!["a".to_string()]);
        assert_eq!((nats.subs, nats.payload), (-1, 10));
        assert!(nats.bearer_token);
        assert_eq!(nats.allowed_connection_types, vec!["WEBSOCKET".to_string()]);
        assert_eq!(nats.issuer_account.as_deref(), Some("AKEY"));
        assert_eq!(nats.tags, vec!["t:1".to_string()]);
        let nats = scoped_user(&token, &serde_json::Value::Null).unwrap();
        assert!(nats.permissions.is_empty() && !nats.bearer_token);
        assert_eq!(nats.kind.as_deref(), Some("user"));
    }

    #[test]
    fn revocations_and_windows() {
        let mut claims = Claims::default();
        claims.nats.revocations.insert("U1".into(), 100);
        assert!(claims.revokes("U1", 100) && claims.revokes("U1", 99));
        assert!(!claims.revokes("U1", 101) && !claims.revokes("U2", 1));
        claims.nats.revocations.insert("*".into(), 50);
        assert!(claims.revokes("U2", 50) && !claims.revokes("U2", 51));
        claims.exp = 10;
        assert!(claims.is_expired_at(10) && !claims.is_expired_at(9));
    }
}
