//! Ed25519 JSON Web Keys and compact JSON Web Signatures: RFC 7515 (JWS), RFC 7638 (JWK
//! thumbprint), RFC 8037 (`OKP` keys, `EdDSA`), RFC 9864 (`Ed25519` as the fully-specified
//! algorithm name).
//!
//! Deliberately narrow, because every choice a general JOSE library negotiates is an attack
//! surface: the verifier holds one trusted key and one algorithm. It refuses any other `alg`
//! (`none`, `HS256` with the public key as HMAC secret, …), a `crit` header, unencoded payloads
//! (`b64: false`), a `kid` that is not the trusted key's thumbprint, duplicate header members,
//! padded or non-URL-safe base64, and inputs over [`MAX_JWS_LEN`]. Keys the header could name
//! (`jwk`, `jku`, `x5u`, `x5c`) are ignored: only the caller's trusted key counts.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// The largest compact JWS [`verify`] reads, checked before anything is decoded. A bundle holds
/// one profile and the variables of a device's users: kilobytes, far below this.
pub const MAX_JWS_LEN: usize = 4 * 1024 * 1024;

/// The `alg` that [`sign`] writes (RFC 8037). [`verify`] also accepts `Ed25519` (RFC 9864).
pub const ALG: &str = "EdDSA";

/// The fully-specified name of the same algorithm (RFC 9864), accepted by [`verify`].
pub const ALG_ED25519: &str = "Ed25519";

/// The `typ` that [`sign`] writes: what the signed object is, so a Postwarden signature cannot be
/// mistaken for some other JOSE object. [`verify`] does not require it (the payload's own
/// `schema` says what it is).
pub const JWS_TYP: &str = "postwarden.bundle+jws";

const KTY: &str = "OKP";
const CRV: &str = "Ed25519";
const USE_SIG: &str = "sig";

/// A part of a compact JWS, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// A JWK that is not a valid Ed25519 key of ours.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwkError {
    #[error("jwk is not valid: {0}")]
    Json(String),
    #[error("jwk kty is {0:?}, expected \"OKP\"")]
    Kty(String),
    #[error("jwk crv is {0:?}, expected \"Ed25519\"")]
    Crv(String),
    #[error("jwk {member} is not strict base64url without padding: {reason}")]
    Base64 {
        member: &'static str,
        reason: String,
    },
    #[error("jwk {member} decodes to {len} bytes, expected 32")]
    Length { member: &'static str, len: usize },
    #[error("jwk x is not a valid Ed25519 public key (not a curve point)")]
    InvalidPoint,
    #[error("jwk x is a weak Ed25519 public key (a point of small order)")]
    WeakKey,
    #[error("jwk kid {found:?} is not the key's RFC 7638 thumbprint {expected:?}")]
    Kid { found: String, expected: String },
    #[error("jwk alg is {0:?}, expected \"EdDSA\" or \"Ed25519\"")]
    Alg(String),
    #[error("jwk use is {0:?}, expected \"sig\"")]
    Use(String),
    #[error("private jwk x is not the public key of its d")]
    PrivateMismatch,
}

/// Why a compact JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwsError {
    #[error("jws is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("jws has {0} dot-separated parts, expected 3 (header.payload.signature)")]
    PartCount(usize),
    #[error("jws {part} is not strict base64url without padding: {reason}")]
    Base64 { part: Part, reason: String },
    #[error("jws header is not valid JSON: {0}")]
    HeaderJson(String),
    #[error("jws header is not a JSON object")]
    HeaderNotObject,
    #[error("jws header has no alg")]
    MissingAlg,
    /// The value as JSON text, e.g. `"none"` or `"HS256"`.
    #[error("jws alg {0} is refused: only \"EdDSA\" or \"Ed25519\" is accepted")]
    UnsupportedAlg(String),
    #[error("jws header has crit {0}: no critical extension is understood")]
    Crit(String),
    #[error("jws header has b64 {0}: only base64url-encoded payloads are accepted")]
    UnencodedPayload(String),
    #[error("jws kid {kid} is not the trusted key's thumbprint {expected:?}")]
    KidMismatch { kid: String, expected: String },
    #[error("jws signature is {0} bytes, expected 64")]
    SignatureLength(usize),
    #[error("jws signature does not verify with the trusted key")]
    BadSignature,
}

/// An Ed25519 public key as a JWK: always a valid, non-weak curve point.
///
/// Serializes as `{"kty":"OKP","crv":"Ed25519","x":…,"kid":<thumbprint>,"alg":"EdDSA","use":"sig"}`.
/// On input `kid`, `alg` and `use` are optional, but when present they must agree (kid = the
/// thumbprint, alg = EdDSA or Ed25519, use = sig); anything else, `d` included, is refused.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawJwk", into = "RawJwk")]
pub struct Jwk {
    key: VerifyingKey,
}

/// The JSON members of a public JWK, in the order we write them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwk {
    kty: String,
    crv: String,
    x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
}

impl Jwk {
    /// The public key, base64url without padding (the JWK's `x`).
    pub fn x(&self) -> String {
        b64(self.key.as_bytes())
    }

    /// The raw 32-byte public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The RFC 7638 thumbprint: SHA-256 over `{"crv":"Ed25519","kty":"OKP","x":…}` (required
    /// members only, sorted, no whitespace), base64url without padding. Used as `kid`.
    pub fn thumbprint(&self) -> String {
        // `x` is base64url, so it needs no JSON escaping.
        let canonical = format!(r#"{{"crv":"{CRV}","kty":"{KTY}","x":"{}"}}"#, self.x());
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    fn from_key(key: VerifyingKey) -> Result<Jwk, JwkError> {
        // `verify_strict` refuses weak keys anyway; refusing them here says why at load time.
        if key.is_weak() {
            return Err(JwkError::WeakKey);
        }
        Ok(Jwk { key })
    }
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("x", &self.x())
            .field("kid", &self.thumbprint())
            .finish()
    }
}

impl TryFrom<RawJwk> for Jwk {
    type Error = JwkError;

    fn try_from(raw: RawJwk) -> Result<Jwk, JwkError> {
        if raw.kty != KTY {
            return Err(JwkError::Kty(raw.kty));
        }
        if raw.crv != CRV {
            return Err(JwkError::Crv(raw.crv));
        }
        let bytes = decode_key_bytes("x", &raw.x)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| JwkError::InvalidPoint)?;
        let jwk = Jwk::from_key(key)?;
        check_optional_members(&jwk, raw.kid, raw.alg, raw.use_)?;
        Ok(jwk)
    }
}

impl From<Jwk> for RawJwk {
    fn from(jwk: Jwk) -> RawJwk {
        RawJwk {
            kty: KTY.to_owned(),
            crv: CRV.to_owned(),
            x: jwk.x(),
            kid: Some(jwk.thumbprint()),
            alg: Some(ALG.to_owned()),
            use_: Some(USE_SIG.to_owned()),
        }
    }
}

fn check_optional_members(
    jwk: &Jwk,
    kid: Option<String>,
    alg: Option<String>,
    use_: Option<String>,
) -> Result<(), JwkError> {
    if let Some(kid) = kid {
        let expected = jwk.thumbprint();
        if kid != expected {
            return Err(JwkError::Kid {
                found: kid,
                expected,
            });
        }
    }
    if let Some(alg) = alg.filter(|a| a != ALG && a != ALG_ED25519) {
        return Err(JwkError::Alg(alg));
    }
    if let Some(use_) = use_.filter(|u| u != USE_SIG) {
        return Err(JwkError::Use(use_));
    }
    Ok(())
}

fn decode_key_bytes(member: &'static str, text: &str) -> Result<[u8; 32], JwkError> {
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|e| JwkError::Base64 {
        member,
        reason: e.to_string(),
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| JwkError::Length {
        member,
        len: bytes.len(),
    })
}

/// The server's Ed25519 signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

/// A private JWK (RFC 8037 §2): the public members plus `d`, the 32-byte seed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivateJwk {
    kty: String,
    crv: String,
    x: String,
    d: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
}

impl SigningKey {
    /// The key whose RFC 8032 secret (the JWK's `d`) is `seed`. The caller draws the seed from a
    /// CSPRNG; this crate has no randomness of its own.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// The public key, served at `GET /api/v1/signing-key` and pinned by agents at enrollment.
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            key: self.inner.verifying_key(),
        }
    }

    /// The key at rest: a private JWK with `d`, `{"kty":"OKP","crv":"Ed25519","x":…,"d":…,
    /// "kid":…,"alg":"EdDSA","use":"sig"}`. The returned string IS the secret: store it with
    /// owner-only permissions and never log it.
    pub fn to_private_jwk_json(&self) -> String {
        let public = RawJwk::from(self.public_jwk());
        let private = RawPrivateJwk {
            kty: public.kty,
            crv: public.crv,
            x: public.x,
            d: b64(self.inner.as_bytes()),
            kid: public.kid,
            alg: public.alg,
            use_: public.use_,
        };
        serde_json::to_string(&private).expect("a struct of strings serializes")
    }

    /// Reads what [`SigningKey::to_private_jwk_json`] wrote (or any Ed25519 private JWK whose
    /// `x` is the public key of its `d`).
    pub fn from_private_jwk_json(json: &str) -> Result<SigningKey, JwkError> {
        let raw: RawPrivateJwk =
            serde_json::from_str(json).map_err(|e| JwkError::Json(e.to_string()))?;
        let public = Jwk::try_from(RawJwk {
            kty: raw.kty,
            crv: raw.crv,
            x: raw.x,
            kid: raw.kid,
            alg: raw.alg,
            use_: raw.use_,
        })?;
        let key = SigningKey::from_seed(&decode_key_bytes("d", &raw.d)?);
        if key.public_jwk() != public {
            return Err(JwkError::PrivateMismatch);
        }
        Ok(key)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public_jwk().thumbprint())
            .field("d", &format_args!("<redacted>"))
            .finish()
    }
}

/// The protected header [`sign`] writes, in this member order.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// Signs `payload` as a compact JWS with the protected header
/// `{"alg":"EdDSA","kid":<thumbprint>,"typ":"postwarden.bundle+jws"}`.
///
/// Ed25519 is deterministic: the same payload and key give the same string. The caller keeps the
/// result under [`MAX_JWS_LEN`] (about 3 MiB of payload), or [`verify`] refuses it.
pub fn sign(payload: &[u8], key: &SigningKey) -> String {
    let kid = key.public_jwk().thumbprint();
    let header = Header {
        alg: ALG,
        kid: &kid,
        typ: JWS_TYP,
    };
    let header = serde_json::to_vec(&header).expect("a struct of strings serializes");
    sign_with_header(&header, payload, key)
}

/// Signs with exactly the header bytes given (the RFC 8037 test vector needs `{"alg":"EdDSA"}`).
pub(crate) fn sign_with_header(header: &[u8], payload: &[u8], key: &SigningKey) -> String {
    let mut compact = b64(header);
    compact.push('.');
    compact.push_str(&b64(payload));
    let signature = key.inner.sign(compact.as_bytes());
    compact.push('.');
    compact.push_str(&b64(&signature.to_bytes()));
    compact
}

/// Verifies a compact JWS with the `trusted` key and returns the payload bytes.
///
/// Checks, in order: the size bound, three parts, strict base64url, the header (a JSON object
/// without duplicate members; `alg` EdDSA or Ed25519; no `crit`; no `b64` other than `true`; a
/// `kid`, if any, equal to the trusted key's thumbprint), then the signature with
/// `verify_strict` (which also refuses non-canonical signatures and weak keys).
pub fn verify(compact: &str, trusted: &Jwk) -> Result<Vec<u8>, JwsError> {
    if compact.len() > MAX_JWS_LEN {
        return Err(JwsError::TooLarge {
            len: compact.len(),
            max: MAX_JWS_LEN,
        });
    }
    let parts: Vec<&str> = compact.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(JwsError::PartCount(parts.len()));
    };
    check_header(&decode(Part::Header, header_b64)?, trusted)?;
    let signature = decode(Part::Signature, signature_b64)?;
    let signature = <[u8; 64]>::try_from(signature.as_slice())
        .map_err(|_| JwsError::SignatureLength(signature.len()))?;
    // The signing input is the ASCII text `header.payload`, exactly as received.
    let signing_input = &compact[..header_b64.len() + 1 + payload_b64.len()];
    trusted
        .verifying_key()
        .verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| JwsError::BadSignature)?;
    decode(Part::Payload, payload_b64)
}

fn check_header(header: &[u8], trusted: &Jwk) -> Result<(), JwsError> {
    let value: Value =
        serde_json::from_slice(header).map_err(|e| JwsError::HeaderJson(e.to_string()))?;
    if !value.is_object() {
        return Err(JwsError::HeaderNotObject);
    }
    // `Value` keeps the last of duplicate members; RFC 7515 §5.2 lets a verifier refuse them,
    // and a header that says two things must not be read as one of them.
    let UniqueObject(header) =
        serde_json::from_slice(header).map_err(|e| JwsError::HeaderJson(e.to_string()))?;

    match header.get("alg") {
        None => return Err(JwsError::MissingAlg),
        Some(Value::String(alg)) if alg == ALG || alg == ALG_ED25519 => {}
        Some(other) => return Err(JwsError::UnsupportedAlg(other.to_string())),
    }
    if let Some(crit) = header.get("crit") {
        return Err(JwsError::Crit(crit.to_string()));
    }
    if let Some(b64) = header.get("b64").filter(|v| **v != Value::Bool(true)) {
        return Err(JwsError::UnencodedPayload(b64.to_string()));
    }
    if let Some(kid) = header.get("kid") {
        let expected = trusted.thumbprint();
        if kid.as_str() != Some(expected.as_str()) {
            return Err(JwsError::KidMismatch {
                kid: kid.to_string(),
                expected,
            });
        }
    }
    Ok(())
}

/// A JSON object that refuses duplicate member names.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
        let mut object = Map::new();
        while let Some((name, value)) = map.next_entry::<String, Value>()? {
            if object.contains_key(&name) {
                return Err(A::Error::custom(format!("duplicate member {name:?}")));
            }
            object.insert(name, value);
        }
        Ok(UniqueObject(object))
    }
}

/// Strict base64url: the URL-safe alphabet only, no padding, no stray trailing bits.
fn decode(part: Part, text: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|e| JwsError::Base64 {
        part,
        reason: e.to_string(),
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
