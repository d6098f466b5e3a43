//! The Auth domain's services: an Ed25519 key pair made at start that signs JWTs, an RFC 7662
//! token introspection registry (served over HTTP by the service in `http`), and an RBAC
//! policy store (a role per user, permissions per role).

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::data::USERS;

/// A JWT's claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// The user's role when the token was issued.
    pub role: String,
    /// The token's id.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

/// One key pair: the issuer signs with it, the JWT agent verifies with it.
pub struct Keys {
    /// The key's id (the JWT header's `kid`).
    pub kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    /// A fresh Ed25519 key pair.
    fn generate(kid: String) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("random key: {e}"))?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().map_err(|e| format!("PKCS#8: {e}"))?;
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(signing.verifying_key().as_bytes()),
        })
    }
}

/// What introspection knows of an issued token.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The token's user.
    pub sub: String,
    /// Its scopes (the role's permissions).
    pub scope: Vec<String>,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

/// The Auth domain's state.
pub struct Auth {
    /// The key the issuer signs with.
    keys: RwLock<Arc<Keys>>,
    /// The key the JWT agent trusts: the issuer's, but while a key expires.
    trusted: RwLock<Arc<Keys>>,
    /// How many key pairs have been made.
    generation: std::sync::atomic::AtomicU64,
    /// Tokens handed to clients, by user (cleared when clients refresh theirs).
    tokens: RwLock<HashMap<String, Arc<str>>>,
    /// Every token issued, for introspection.
    issued: RwLock<HashMap<Arc<str>, Issued>>,
    /// The RBAC policy store: each user's role; `None` while it is offline.
    roles: RwLock<Option<HashMap<String, String>>>,
    /// The policy, kept to bring the store back.
    policy: HashMap<String, String>,
}

/// The permissions of a role.
pub fn permissions(role: &str) -> &'static [&'static str] {
    match role {
        "admin" => &["read", "write", "report"],
        "reader" => &["read", "write"],
        _ => &[],
    }
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Auth {
    /// A key pair and the RBAC policy: users `u0`..`u4` are admins, `u45`..`u49` guests, the
    /// rest readers.
    pub fn new() -> Result<Self, String> {
        let roles = (0..USERS)
            .map(|u| {
                let role = if u < 5 {
                    "admin"
                } else if u >= USERS - 5 {
                    "guest"
                } else {
                    "reader"
                };
                (format!("u{u}"), role.to_owned())
            })
            .collect();
        let policy: HashMap<String, String> = roles;
        let keys = Arc::new(Keys::generate("k1".into())?);
        Ok(Self {
            trusted: RwLock::new(keys.clone()),
            keys: RwLock::new(keys),
            roles: RwLock::new(Some(policy.clone())),
            policy,
            generation: 1.into(),
            tokens: RwLock::default(),
            issued: RwLock::default(),
        })
    }

    /// `user`'s role in the RBAC policy store (`Ok(None)`: no role), or why the store cannot
    /// answer.
    pub fn role_of(&self, user: &str) -> Result<Option<String>, &'static str> {
        Ok(self.roles.read().expect("roles").as_ref().ok_or("the RBAC policy store is offline")?.get(user).cloned())
    }

    /// The RBAC policy: each user's role.
    pub fn policy(&self) -> &HashMap<String, String> {
        &self.policy
    }

    /// Takes the RBAC policy store offline, or brings it back.
    pub fn set_policy_online(&self, online: bool) {
        *self.roles.write().expect("roles") = online.then(|| self.policy.clone());
    }

    /// The token a client of `user` holds: issued (signed with the current key and
    /// registered for introspection) on first use, then the same until clients refresh.
    pub fn token_for(&self, user: &str) -> Result<Arc<str>, String> {
        if let Some(t) = self.tokens.read().expect("tokens").get(user) {
            return Ok(t.clone());
        }
        let role = self.policy.get(user).cloned().unwrap_or_else(|| "guest".into());
        let keys = self.keys.read().expect("keys").clone();
        let iat = now_s();
        let claims =
            Claims { sub: user.into(), role: role.clone(), jti: format!("{}-{user}", keys.kid), iat, exp: iat + 3600 };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        let token: Arc<str> = jsonwebtoken::encode(&header, &claims, &keys.encoding).map_err(|e| e.to_string())?.into();
        let scope = permissions(&role).iter().map(|p| (*p).to_owned()).collect();
        self.issued.write().expect("issued").insert(token.clone(), Issued { sub: user.into(), scope, exp: claims.exp });
        self.tokens.write().expect("tokens").insert(user.into(), token.clone());
        Ok(token)
    }

    /// Every user's current token ([`token_for`](Self::token_for) each), by user.
    pub fn tokens(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        (0..USERS).map(|u| format!("u{u}")).map(|u| Ok((u.clone(), self.token_for(&u)?.to_string()))).collect()
    }

    /// Verifies `token` against the trusted key: its claims, or why not.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let keys = self.trusted.read().expect("trusted").clone();
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &keys.decoding, &v).map(|d| d.claims).map_err(|e| e.to_string())
    }

    /// The key the verifier trusts, as a JWK set (RFC 7517): what `/.well-known/jwks.json`
    /// serves to verifiers in other processes.
    pub fn jwks(&self) -> Result<JwkSet, String> {
        let keys = self.trusted.read().expect("trusted").clone();
        let mut jwk = Jwk::from_decoding_key(&keys.decoding, Some(Algorithm::EdDSA)).map_err(|e| e.to_string())?;
        jwk.common.key_id = Some(keys.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(JwkSet { keys: vec![jwk] })
    }

    /// What introspection says of `token`: `None` when it was never issued or has expired.
    pub fn introspect(&self, token: &str) -> Option<Issued> {
        self.issued.read().expect("issued").get(token).filter(|i| i.exp > now_s()).cloned()
    }

    /// The key pair expires: the JWT agent trusts a new one at once, while the issuer still
    /// signs with the old one (and clients hold tokens signed with it), so no token verifies
    /// (introspection still knows them) until [`rotate_issuer`](Self::rotate_issuer).
    pub fn expire_keys(&self) -> Result<(), String> {
        let g = self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        *self.trusted.write().expect("trusted") = Arc::new(Keys::generate(format!("k{g}"))?);
        Ok(())
    }

    /// The issuer signs with the trusted key, and clients fetch new tokens on their next
    /// request.
    pub fn rotate_issuer(&self) {
        *self.keys.write().expect("keys") = self.trusted.read().expect("trusted").clone();
        self.tokens.write().expect("tokens").clear();
    }
}
