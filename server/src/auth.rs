//! Authentication (who is this connection, in which account) and permissions (what it may
//! publish and subscribe to).
//!
//! bcrypt is deliberately slow (about 150 ms of CPU at cost 11), so a reconnect storm of a
//! few hundred clients would pin a core. A successful verification is remembered under a
//! SHA-256 of (user, password, stored hash): the cache never holds a password, it is keyed
//! by the exact stored hash (a rotated password misses), and wrong passwords are never
//! cached, so guessing still costs a full bcrypt check per attempt.
//!
//! An NKEY user proves itself by signing the random nonce its connection was sent in INFO
//! with its private key; the server holds only the public key. An ed25519 check costs tens of
//! microseconds, so it runs inline and nothing is cached.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::config::{
    is_bcrypt, Options, Permissions, ResponsePermission, SubjectPermission, GLOBAL_ACCOUNT,
};
use crate::jwt;
use crate::subject;

/// Raw length of the nonce before base64 (as nats-server makes it: 15 characters in INFO).
const NONCE_RAW_LEN: usize = 11;

/// A fresh random nonce for one connection's INFO, base64url without padding.
pub(crate) fn generate_nonce() -> String {
    let raw: [u8; NONCE_RAW_LEN] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The public key of an NKEY user, decoded once so each login only verifies.
pub(crate) struct NkeyVerifier(nkeys::KeyPair);

impl std::fmt::Debug for NkeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NkeyVerifier")
            .field(&self.0.public_key())
            .finish()
    }
}

impl NkeyVerifier {
    /// `None` for a key that does not decode to a curve point: nobody can sign for it.
    fn new(public_key: &str) -> Option<NkeyVerifier> {
        nkeys::KeyPair::from_public_key(public_key)
            .ok()
            .map(NkeyVerifier)
    }

    /// Does `sig` (base64url, or standard base64 as nats-server also accepts) sign `nonce`?
    fn verify(&self, nonce: &[u8], sig: &str) -> bool {
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(sig));
        sig.is_ok_and(|sig| self.0.verify(nonce, &sig).is_ok())
    }
}

/// One configured user, with its permissions compiled.
#[derive(Debug)]
pub struct UserEntry {
    /// The user name, or an NKEY user's public key.
    pub name: String,
    password: String,
    /// Set for an NKEY user (it has no password); `None` inside when the key cannot verify.
    nkey: Option<Option<NkeyVerifier>>,
    pub account: String,
    pub permissions: Option<Arc<ClientPermissions>>,
}

impl UserEntry {
    /// Whether `other` still accepts exactly the password this entry accepted (a reload that
    /// changes it invalidates connections made with the old one). An NKEY user's credential is
    /// its name, so it never changes in place.
    pub fn same_password(&self, other: &UserEntry) -> bool {
        self.password == other.password && self.nkey.is_some() == other.nkey.is_some()
    }

    pub fn is_nkey(&self) -> bool {
        self.nkey.is_some()
    }
}

/// Who a connection authenticated as.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `None` when the server requires no authentication.
    pub user: Option<Arc<UserEntry>>,
    pub account: String,
    /// When the user's JWT expires (Unix seconds): the connection is closed then.
    pub expires: Option<i64>,
    /// A user JWT's own subscription and payload limits (`-1`: none).
    pub max_subs: i64,
    pub max_payload: i64,
    /// When a user JWT was issued: its account's revocations are checked against it again
    /// when the account's claims change.
    pub jwt_issued_at: Option<i64>,
    /// What `/connz?auth=true` shows of a user JWT.
    pub jwt_shown: Option<Arc<JwtShown>>,
    /// A user JWT's `src` and `times`, which the login is checked against once the
    /// credentials hold (the peer's address and the time are the connection's to give).
    pub login_limits: Option<crate::user_limits::LoginLimits>,
    /// What new account claims are checked against (operator mode).
    pub jwt_login: Option<Arc<JwtLogin>>,
}

/// What a JWT user's connection keeps of its login, so that new claims of its account can be
/// applied to it as nats-server applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtLogin {
    /// Logged in with a bearer token (no nonce signature).
    pub bearer: bool,
    /// Neither the JWT nor its scope gave permissions: the account's default permissions
    /// apply, and follow the account's claims.
    pub default_permissions: bool,
    /// The account signing key that issued the JWT (empty: the account's own key).
    pub signing_key: String,
    /// The user's own subscription limit, from its JWT or its scope (`-1`: none).
    pub max_subs: i64,
    /// The JWT as presented.
    pub jwt: String,
}

/// A JWT user's `/connz?auth=true` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtShown {
    /// The user JWT, empty for a bearer token (which would let anyone reading it log in).
    pub jwt: String,
    /// The key that signed the user JWT: the account's or one of its signing keys.
    pub issuer_key: String,
    pub tags: Vec<String>,
    /// The user JWT's `name`.
    pub name: String,
}

impl Identity {
    /// A configured (password, NKEY or certificate-mapped) user: no expiry, no JWT limits.
    fn configured(user: &Arc<UserEntry>) -> Identity {
        Identity {
            user: Some(user.clone()),
            ..Identity::anonymous(&user.account)
        }
    }

    /// A connection that is no user in particular: the server needs no authentication, or
    /// the client gave the global token.
    fn anonymous(account: &str) -> Identity {
        Identity {
            user: None,
            account: account.to_string(),
            expires: None,
            max_subs: -1,
            max_payload: -1,
            jwt_issued_at: None,
            jwt_shown: None,
            login_limits: None,
            jwt_login: None,
        }
    }

    pub fn permissions(&self) -> Option<Arc<ClientPermissions>> {
        self.user.as_ref().and_then(|u| u.permissions.clone())
    }
}

/// What a client presented in CONNECT.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    pub user: Option<&'a str>,
    pub pass: Option<&'a str>,
    pub token: Option<&'a str>,
    /// An NKEY user's public key, and its signature of `nonce`.
    pub nkey: Option<&'a str>,
    /// A user JWT (operator mode); `sig` signs the nonce with the JWT's user key.
    pub jwt: Option<&'a str>,
    pub sig: Option<&'a str>,
    /// The nonce this connection was sent in INFO (empty when it was sent none).
    pub nonce: &'a [u8],
    /// Under `verify_and_map`: the client certificate, which names the user.
    pub cert: Option<&'a crate::tls::PeerCert>,
    /// The connection came through the WebSocket listener (a JWT may allow only some
    /// connection types).
    pub websocket: bool,
}

impl Credentials<'_> {
    /// No credentials at all (a signature alone is none, and so is an NKEY while the server
    /// has no NKEY users): `no_auth_user` applies.
    fn is_empty(&self, nkeys: bool) -> bool {
        self.user.is_none()
            && self.pass.is_none()
            && self.token.is_none()
            && (self.nkey.is_none() || !nkeys)
    }
}

/// The authentication part of the options, compiled for lookups. Replaced whole on reload.
#[derive(Debug, Default)]
pub struct Authenticator {
    users: HashMap<String, Arc<UserEntry>>,
    /// Some user is an NKEY user.
    has_nkeys: bool,
    token: Option<String>,
    no_auth_user: Option<String>,
    /// Operator mode: users present JWTs of these accounts.
    trust: Option<Trust>,
    /// A listener maps certificates to users, so users without a password are certificate
    /// identities (see [`Options::maps_certificates`]).
    certificate_identities: bool,
}

/// What operator mode trusts: the operators' keys and the accounts they signed.
#[derive(Debug, Default)]
struct Trust {
    /// Trusted accounts' claims by public key.
    accounts: HashMap<String, jwt::Claims>,
}

impl Trust {
    fn from_options(opts: &Options) -> Option<Trust> {
        let mode = opts.operator.as_ref()?;
        let operators: Vec<jwt::Claims> = mode
            .operators
            .iter()
            .filter_map(|t| jwt::decode(t, jwt::Kind::Operator).ok())
            .collect();
        let trusted: HashSet<&str> = operators.iter().flat_map(|c| c.operator_keys()).collect();
        let accounts = mode
            .preload
            .iter()
            .filter_map(|(key, token)| {
                let claims = jwt::decode(token, jwt::Kind::Account).ok()?;
                (&claims.sub == key && trusted.contains(claims.iss.as_str()))
                    .then(|| (key.clone(), claims))
            })
            .collect();
        Some(Trust { accounts })
    }

    /// A user JWT's identity, checked as nats-server checks it: signed by its account (or one
    /// of the account's signing keys), neither JWT expired, not revoked, and the nonce signed
    /// by the user's key unless it is a bearer token (which the account may disallow). A user
    /// signed by a scoped key carries no permissions or limits of its own: the scope's
    /// template (its `{{...}}` operations expanded for this user) stands in for them.
    fn authenticate(&self, creds: &Credentials<'_>) -> Option<Identity> {
        let mut user = jwt::decode(creds.jwt?, jwt::Kind::User).ok()?;
        let now = chrono::Utc::now().timestamp();
        if user.is_expired_at(now) {
            return None;
        }
        let account_key = user
            .nats
            .issuer_account
            .clone()
            .unwrap_or_else(|| user.iss.clone());
        let account = self.accounts.get(&account_key)?;
        let signer = account.account_signer(&user.iss)?;
        let scope = match signer {
            Some(jwt::SigningKey::Scoped { template, .. }) => Some(template),
            _ => None,
        };
        // The monitor hides a JWT that says it is a bearer token itself (a scoped user's
        // never does: its scope may make it one).
        let hidden = user.nats.bearer_token;
        // The user's own `src`/`times` must parse, as the whole user JWT is invalid otherwise
        // (a scoped user has none: it is refused below if it sets any).
        let own_limits = user.nats.permissions.limits.compile().ok()?;
        if let Some(template) = scope {
            if jwt::user_sets_permissions_or_limits(creds.jwt?) {
                return None;
            }
            let nats = jwt::scoped_user(creds.jwt?, template).ok()?;
            let context = jwt::TemplateContext {
                user: &user,
                account,
            };
            let permissions = context.permissions(&nats.permissions).ok()?;
            user.nats = nats;
            user.nats.permissions = permissions;
        }
        let login_limits = if scope.is_some() {
            user.nats.permissions.limits.compile().ok()?
        } else {
            own_limits
        };
        if account.is_expired_at(now) || account.revokes(&user.sub, user.iat) {
            return None;
        }
        if user.nats.bearer_token && account.nats.limits.disallow_bearer {
            return None;
        }
        if !connection_type_allowed(&user.nats.allowed_connection_types, creds.websocket) {
            return None;
        }
        if !user.nats.bearer_token {
            let verifier = NkeyVerifier::new(&user.sub)?;
            if !verifier.verify(creds.nonce, creds.sig?) {
                return None;
            }
        }
        let default_permissions = user.nats.permissions.is_empty();
        let claimed = if default_permissions {
            Some(&account.nats.default_permissions).filter(|p| !p.is_empty())
        } else {
            Some(&user.nats.permissions)
        };
        let entry = UserEntry {
            name: user.sub.clone(),
            password: String::new(),
            nkey: None,
            account: account_key.clone(),
            permissions: claimed.map(|p| Arc::new(ClientPermissions::compile(&jwt_permissions(p)))),
        };
        Some(Identity {
            user: Some(Arc::new(entry)),
            account: account_key,
            expires: (user.exp > 0).then_some(user.exp),
            max_subs: user.nats.subs,
            max_payload: user.nats.payload,
            jwt_issued_at: Some(user.iat),
            jwt_shown: Some(Arc::new(JwtShown {
                jwt: if hidden {
                    String::new()
                } else {
                    creds.jwt.unwrap_or_default().to_string()
                },
                issuer_key: user.iss.clone(),
                tags: user.nats.tags.clone(),
                name: user.name.clone(),
            })),
            jwt_login: Some(Arc::new(JwtLogin {
                bearer: user.nats.bearer_token,
                default_permissions,
                signing_key: if user.nats.issuer_account.is_some() {
                    user.iss.clone()
                } else {
                    String::new()
                },
                max_subs: user.nats.subs,
                jwt: creds.jwt.unwrap_or_default().to_string(),
            })),
            login_limits,
        })
    }
}

/// Whether a user JWT listing `allowed` connection types may log in over this connection
/// (`STANDARD`, or `WEBSOCKET`). An empty list allows any; a list naming only types this
/// server does not serve (`MQTT`, `LEAFNODE`, ...) allows none, as on nats-server.
fn connection_type_allowed(allowed: &[String], websocket: bool) -> bool {
    let want = if websocket { "WEBSOCKET" } else { "STANDARD" };
    allowed.is_empty() || allowed.iter().any(|t| t.eq_ignore_ascii_case(want))
}

/// A JWT's permissions in the configuration's terms (an empty list allows everything, as in
/// nats-server, where JWT lists only restrict when they name something).
pub(crate) fn jwt_permissions(p: &jwt::UserPermissions) -> Permissions {
    let rules = |c: &jwt::PermissionClaim| {
        (!c.allow.is_empty() || !c.deny.is_empty()).then(|| SubjectPermission {
            allow: (!c.allow.is_empty()).then(|| c.allow.clone()),
            deny: c.deny.clone(),
        })
    };
    Permissions {
        publish: rules(&p.publish),
        subscribe: rules(&p.subscribe),
        allow_responses: p.resp.as_ref().map(|r| ResponsePermission {
            max: if r.max > 0 {
                r.max as u32
            } else {
                crate::config::DEFAULT_ALLOW_RESPONSES_MAX
            },
            expires: if r.ttl > 0 {
                std::time::Duration::from_nanos(r.ttl as u64)
            } else {
                crate::config::DEFAULT_ALLOW_RESPONSES_EXPIRES
            },
        }),
    }
}

impl Authenticator {
    pub fn from_options(opts: &Options) -> Authenticator {
        let users = opts
            .auth
            .users
            .iter()
            .map(|u| {
                let entry = UserEntry {
                    name: u.name.clone(),
                    password: u.password.clone(),
                    nkey: u.nkey.then(|| NkeyVerifier::new(&u.name)),
                    account: if u.account.is_empty() {
                        GLOBAL_ACCOUNT.to_string()
                    } else {
                        u.account.clone()
                    },
                    permissions: u
                        .permissions
                        .as_ref()
                        .map(|p| Arc::new(ClientPermissions::compile(p))),
                };
                (u.name.clone(), Arc::new(entry))
            })
            .collect();
        let has_nkeys = opts.auth.users.iter().any(|u| u.nkey);
        Authenticator {
            users,
            has_nkeys,
            token: opts.auth.token.clone(),
            no_auth_user: opts.auth.no_auth_user.clone(),
            trust: Trust::from_options(opts),
            certificate_identities: opts.maps_certificates(),
        }
    }

    /// Whether clients must authenticate at all.
    pub fn required(&self) -> bool {
        !self.users.is_empty() || self.token.is_some() || self.trust.is_some()
    }

    /// Whether each connection's INFO carries a nonce to sign: when there are NKEY users, or
    /// in operator mode.
    pub fn nonce_required(&self) -> bool {
        self.has_nkeys || self.trust.is_some()
    }

    /// Operator mode: users are JWTs, not configured.
    pub fn operator_mode(&self) -> bool {
        self.trust.is_some()
    }

    /// The name nats-server shows for `account` (`name_tag`): its JWT's `name` in operator
    /// mode, else (or when the JWT has none) the account's own name.
    pub fn name_tag(&self, account: &str) -> String {
        self.jwt_account(account)
            .map(|c| c.name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(account)
            .to_string()
    }

    /// Whether `account`'s JWT has expired (operator mode), as `/accountz` reports it.
    pub fn account_expired(&self, account: &str) -> bool {
        self.jwt_account(account)
            .is_some_and(|c| c.is_expired_at(chrono::Utc::now().timestamp()))
    }

    /// Operator mode: every trusted account's claims, by public key.
    pub(crate) fn jwt_accounts(&self) -> impl Iterator<Item = (&String, &jwt::Claims)> {
        self.trust.iter().flat_map(|t| t.accounts.iter())
    }

    /// Operator mode: the claims of the trusted account `key`.
    pub(crate) fn jwt_account(&self, key: &str) -> Option<&jwt::Claims> {
        self.trust.as_ref().and_then(|t| t.accounts.get(key))
    }

    /// `auth_required` in INFO: absent when a client without credentials is let in as `no_auth_user`.
    pub fn advertise_required(&self) -> bool {
        self.required() && self.no_auth_user.is_none()
    }

    /// Whether a connection admitted without a user (no auth, or by token) under `self` is
    /// still admitted under `new`.
    pub fn anonymous_still_valid(&self, new: &Authenticator) -> bool {
        if !new.required() {
            return true;
        }
        new.token.is_some() && self.token == new.token
    }

    pub fn user(&self, name: &str) -> Option<&Arc<UserEntry>> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = &Arc<UserEntry>> {
        self.users.values()
    }

    /// Check credentials; `None` means `Authorization Violation`.
    pub async fn authenticate(
        &self,
        creds: Credentials<'_>,
        cache: &PasswordCache,
    ) -> Option<Identity> {
        if let Some(trust) = &self.trust {
            return trust.authenticate(&creds);
        }
        if !self.required() {
            return Some(Identity::anonymous(GLOBAL_ACCOUNT));
        }
        // Under `verify_and_map` the certificate names the user among the password users,
        // unless an NKEY was presented: as in nats-server, that decides alone.
        let nkey_presented = creds.nkey.is_some() && self.nonce_required();
        if let (Some(cert), false) = (creds.cert, nkey_presented) {
            let mappable = |u: &&Arc<UserEntry>| !u.is_nkey();
            if self.users.values().any(|u| mappable(&u)) {
                let name = cert.map_user(
                    |name| self.users.get(name).is_some_and(|u| mappable(&u)),
                    self.users
                        .values()
                        .filter(mappable)
                        .map(|u| u.name.as_str()),
                )?;
                let user = self.users.get(&name)?;
                if let Some(given) = creds.user {
                    tracing::warn!(
                        "User {given:?} found in connect proto, but user required from cert"
                    );
                }
                // A mapped user that has a password must still give it.
                let ok = cache
                    .verify(&user.name, creds.pass.unwrap_or_default(), &user.password)
                    .await;
                return ok.then(|| Identity::configured(user));
            }
        }
        if creds.is_empty(self.nonce_required()) {
            let user = self.users.get(self.no_auth_user.as_deref()?)?;
            return Some(Identity::configured(user));
        }
        if let Some(expected) = &self.token {
            let given = creds.token.unwrap_or_default();
            return constant_time_eq(given.as_bytes(), expected.as_bytes())
                .then(|| Identity::anonymous(GLOBAL_ACCOUNT));
        }
        // As in nats-server, an NKEY in CONNECT is only looked at when NKEY users exist, and
        // then it decides alone (a password next to it is not tried).
        if let Some(key) = creds.nkey.filter(|_| self.nonce_required()) {
            let user = self.users.get(key).filter(|u| u.is_nkey())?;
            // The no_auth_user's key needs no signature: no credentials at all get it too.
            let admitted = self.no_auth_user.as_deref() == Some(key)
                || matches!(
                    (&user.nkey, creds.sig),
                    (Some(Some(verifier)), Some(sig)) if verifier.verify(creds.nonce, sig)
                );
            return admitted.then(|| Identity::configured(user));
        }
        let user = self.users.get(creds.user?).filter(|u| !u.is_nkey())?;
        // A certificate identity does not log in by name and an empty password through a
        // listener that does not map certificates (the no_auth_user needs no credentials).
        if self.certificate_identities
            && user.password.is_empty()
            && self.no_auth_user.as_deref() != Some(user.name.as_str())
        {
            tracing::debug!("User {:?} requires a client certificate", user.name);
            return None;
        }
        let ok = cache
            .verify(&user.name, creds.pass.unwrap_or_default(), &user.password)
            .await;
        ok.then(|| Identity::configured(user))
    }
}

/// Remembers successful bcrypt verifications (see the module docs for why this is safe), and
/// runs concurrent checks of the same (user, password, hash) once: after a restart a whole
/// fleet reconnects with the same credentials at the same moment.
pub struct PasswordCache {
    /// Per-process secret mixed into every key, so keys from one process (a memory dump, say)
    /// cannot be matched against precomputed password tables.
    secret: [u8; 32],
    verified: Mutex<HashSet<[u8; 32]>>,
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
}

impl Default for PasswordCache {
    fn default() -> Self {
        PasswordCache {
            secret: rand::random(),
            verified: Mutex::new(HashSet::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for PasswordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCache").finish_non_exhaustive()
    }
}

/// Bound on remembered logins; past it the cache starts over rather than growing.
const PASSWORD_CACHE_MAX: usize = 65_536;

impl PasswordCache {
    /// Does `given` match the configured password `stored` (plain text or bcrypt) of `user`?
    pub async fn verify(&self, user: &str, given: &str, stored: &str) -> bool {
        if !is_bcrypt(stored) {
            return constant_time_eq(given.as_bytes(), stored.as_bytes());
        }
        let key = self.key(user, given, stored);
        if self.verified.lock().contains(&key) {
            return true;
        }
        let cell = self.in_flight.lock().entry(key).or_default().clone();
        let ok = *cell
            .get_or_init(|| {
                let (given, stored) = (given.to_string(), stored.to_string());
                async move {
                    tokio::task::spawn_blocking(move || {
                        bcrypt::verify(given, &stored).unwrap_or(false)
                    })
                    .await
                    .unwrap_or(false)
                }
            })
            .await;
        if ok {
            let mut set = self.verified.lock();
            if set.len() >= PASSWORD_CACHE_MAX {
                set.clear();
            }
            set.insert(key);
        }
        // Later attempts go through `verified` (a success) or check again (a failure).
        let mut in_flight = self.in_flight.lock();
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&key);
        }
        ok
    }

    fn key(&self, user: &str, given: &str, stored: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        for part in [user, given, stored] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A permission entry: a subject pattern, and for subscribe entries an optional queue group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    subject: Box<[u8]>,
    queue: Option<Box<[u8]>>,
}

impl Rule {
    fn parse(entry: &str) -> Rule {
        let mut parts = entry.split_whitespace();
        let subject = parts.next().unwrap_or_default().as_bytes().into();
        let queue = parts.next().map(|q| q.as_bytes().into());
        Rule { subject, queue }
    }

    fn queue_applies(&self, queue: Option<&[u8]>) -> bool {
        match &self.queue {
            None => true,
            Some(q) => queue == Some(&q[..]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rules {
    allow: Option<Vec<Rule>>,
    deny: Vec<Rule>,
}

impl Rules {
    fn compile(p: &SubjectPermission) -> Rules {
        Rules {
            allow: p
                .allow
                .as_ref()
                .map(|a| a.iter().map(|s| Rule::parse(s)).collect()),
            deny: p.deny.iter().map(|s| Rule::parse(s)).collect(),
        }
    }
}

/// The outcome of a subscribe permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeCheck {
    Denied,
    /// Allowed; `filtered` when some deny pattern overlaps the subscription, so each delivery
    /// must be checked against the deny list.
    Allowed {
        filtered: bool,
    },
}

/// A user's permissions, compiled for the checks the connection makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPermissions {
    publish: Option<Rules>,
    subscribe: Option<Rules>,
    pub allow_responses: Option<ResponsePermission>,
}

impl ClientPermissions {
    pub fn compile(p: &Permissions) -> ClientPermissions {
        // Like nats-server, `allow_responses` without publish rules means the user may publish
        // nothing but responses.
        let publish = match (&p.publish, p.allow_responses) {
            (Some(rules), _) => Some(Rules::compile(rules)),
            (None, Some(_)) => Some(Rules {
                allow: Some(Vec::new()),
                deny: Vec::new(),
            }),
            (None, None) => None,
        };
        ClientPermissions {
            publish,
            subscribe: p.subscribe.as_ref().map(Rules::compile),
            allow_responses: p.allow_responses,
        }
    }

    /// May this connection publish to `subject` (a literal subject as published)?
    pub fn can_publish(&self, subject: &[u8]) -> bool {
        let Some(rules) = &self.publish else {
            return true;
        };
        if rules
            .deny
            .iter()
            .any(|r| subject::matches(&r.subject, subject))
        {
            return false;
        }
        match &rules.allow {
            None => true,
            Some(allow) => allow.iter().any(|r| subject::matches(&r.subject, subject)),
        }
    }

    /// May this connection subscribe to `subject` (possibly a wildcard) in `queue`?
    ///
    /// Stricter than nats-server on purpose: a subscription is allowed only when every
    /// subject it can match is allowed (`payments.>` is not within `payments.*`).
    pub fn check_subscribe(&self, subject: &[u8], queue: Option<&[u8]>) -> SubscribeCheck {
        let Some(rules) = &self.subscribe else {
            return SubscribeCheck::Allowed { filtered: false };
        };
        if let Some(allow) = &rules.allow {
            let allowed = allow
                .iter()
                .any(|r| r.queue_applies(queue) && subject::is_subset(subject, &r.subject));
            if !allowed {
                return SubscribeCheck::Denied;
            }
        }
        let mut filtered = false;
        for deny in rules.deny.iter().filter(|r| r.queue_applies(queue)) {
            if subject::is_subset(subject, &deny.subject) {
                return SubscribeCheck::Denied;
            }
            filtered |= subject::collide(subject, &deny.subject);
        }
        SubscribeCheck::Allowed { filtered }
    }

    /// Is a delivery of the literal `subject` blocked by the subscribe deny list?
    pub fn delivery_denied(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        self.subscribe.as_ref().is_some_and(|rules| {
            rules
                .deny
                .iter()
                .any(|r| r.queue_applies(queue) && subject::matches(&r.subject, subject))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[tokio::test]
    async fn password_cache_remembers_only_exact_successes() {
        let cache = PasswordCache::default();
        let stored = bcrypt::hash("right", 4).unwrap();
        let rotated = bcrypt::hash("right", 4).unwrap();
        assert!(cache.verify("u", "right", &stored).await);
        assert!(cache.verify("u", "right", &stored).await);
        assert!(!cache.verify("u", "wrong", &stored).await);
        assert!(!cache.verify("u", "", &stored).await);
        // Another user with the same hash, or a new hash, is verified afresh.
        assert!(cache.verify("v", "right", &stored).await);
        assert!(cache.verify("u", "right", &rotated).await);
        assert!(
            !cache
                .verify(
                    "u",
                    "right",
                    "$2a$04$notavalidhashatallxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                )
                .await
        );
        assert_eq!(cache.verified.lock().len(), 3);
        assert!(cache.in_flight.lock().is_empty());
        // Plain-text passwords never touch the cache.
        assert!(cache.verify("p", "plain", "plain").await);
        assert!(!cache.verify("p", "plainx", "plain").await);
        assert_eq!(cache.verified.lock().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_logins_share_one_check() {
        let cache = Arc::new(PasswordCache::default());
        let stored = bcrypt::hash("pw", 6).unwrap();
        let checks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, stored) = (cache.clone(), stored.clone());
                tokio::spawn(async move { cache.verify("u", "pw", &stored).await })
            })
            .collect();
        for c in checks {
            assert!(c.await.unwrap());
        }
        assert_eq!(cache.verified.lock().len(), 1);
        assert!(cache.in_flight.lock().is_empty());
    }

    #[tokio::test]
    async fn nkey_users_sign_the_nonce_and_never_log_in_by_password() {
        let key = nkeys::KeyPair::new_user();
        let mut opts = Options::default();
        opts.auth.users.push(crate::config::User {
            name: key.public_key(),
            password: String::new(),
            nkey: true,
            account: "A".into(),
            permissions: None,
        });
        let auth = Authenticator::from_options(&opts);
        assert!(auth.nonce_required() && auth.required());
        let cache = PasswordCache::default();
        let nonce = generate_nonce();
        assert_eq!(nonce.len(), 15);
        assert_ne!(nonce, generate_nonce());
        let sig = key.sign(nonce.as_bytes()).unwrap();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sig);
        let std = base64::engine::general_purpose::STANDARD.encode(&sig);
        let public = key.public_key();
        let creds = |sig: Option<&'static str>| Credentials {
            nkey: Some(public.as_str()),
            sig,
            nonce: nonce.as_bytes(),
            ..Credentials::default()
        };
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        for good in [leak(url), leak(std)] {
            let id = auth.authenticate(creds(Some(good)), &cache).await.unwrap();
            assert_eq!(id.account, "A");
        }
        assert!(auth.authenticate(creds(None), &cache).await.is_none());
        let other = nkeys::KeyPair::new_user().sign(nonce.as_bytes()).unwrap();
        let other = leak(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other));
        assert!(auth
            .authenticate(creds(Some(other)), &cache)
            .await
            .is_none());
        // The key as a user name with an empty password is no way in.
        let by_name = Credentials {
            user: Some(public.as_str()),
            pass: Some(""),
            ..Credentials::default()
        };
        assert!(auth.authenticate(by_name, &cache).await.is_none());
    }
}
