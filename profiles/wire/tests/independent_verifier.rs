//! An independent verifier checks what we sign: Python's `joserfc` (a JOSE implementation) and
//! `cryptography` (Ed25519 from OpenSSL, over the raw `header.payload` bytes) read a signed bundle
//! and the public JWK from files, and must accept it, and refuse it once the payload is changed.
//!
//! A missing `python3`, `joserfc` or `cryptography` fails the test; nothing is skipped.
//! `scripts/install-test-deps.sh` installs them.

// This test is an edge of its own: it writes files and runs a program, which the pure crate's
// clippy.toml bans in library code.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use postwarden_wire::v1::{BundlePayload, BundleProfile, BundleSchema, DeviceId};
use postwarden_wire::{sign_bundle, SigningKey};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const VERIFIER: &str = r#"
import base64, json, sys, warnings

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import OKPKey

# joserfc warns that "EdDSA" is deprecated by RFC 9864 ("Ed25519"); a warning is not a verdict.
warnings.filterwarnings("ignore", message=".*RFC 9864.*")

def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

directory = sys.argv[1]
with open(directory + "/bundle.jws") as f:
    compact = f.read()
with open(directory + "/signing-key.json") as f:
    jwk = json.load(f)

result = {}
key = OKPKey.import_key(jwk)
result["thumbprint"] = key.thumbprint()
try:
    signed = jws.deserialize_compact(compact, key, algorithms=["EdDSA"])
    result["joserfc"] = {"valid": True, "header": signed.headers(),
                         "payload": json.loads(signed.payload)}
except BadSignatureError:
    result["joserfc"] = {"valid": False}

header, payload, signature = compact.split(".")
public = Ed25519PublicKey.from_public_bytes(b64url(jwk["x"]))
try:
    public.verify(b64url(signature), (header + "." + payload).encode("ascii"))
    result["cryptography"] = {"valid": True}
except InvalidSignature:
    result["cryptography"] = {"valid": False}

json.dump(result, sys.stdout)
"#;

fn key() -> SigningKey {
    SigningKey::from_seed(&[0x5a; 32])
}

fn payload() -> BundlePayload {
    BundlePayload {
        schema: BundleSchema,
        device: DeviceId("dev-3f9a".into()),
        serial: 12,
        issued_at: OffsetDateTime::parse("2026-05-04T09:30:00Z", &Rfc3339).unwrap(),
        profile: BundleProfile {
            id: "acme-mail".into(),
            version: 3,
            toml: "id = \"acme-mail\"\nversion = 3\ntitle = \"ACME mail – Straße\"\n".into(),
        },
        variables: BTreeMap::from([(
            "alice".to_owned(),
            BTreeMap::from([("user.email".to_owned(), "alice@example.org".to_owned())]),
        )]),
        preview: None,
    }
}

/// Writes the bundle and the public JWK into a fresh directory and runs the Python verifier.
fn python_verdict(compact: &str) -> Value {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("bundle.jws"), compact).unwrap();
    let jwk = serde_json::to_string(&key().public_jwk()).unwrap();
    std::fs::write(dir.path().join("signing-key.json"), jwk).unwrap();
    run_python(dir.path())
}

fn run_python(dir: &Path) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(VERIFIER)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): the independent JWS verifier needs Python 3 on PATH \
                 (scripts/install-test-deps.sh installs it)"
            )
        });
    assert!(
        out.status.success(),
        "the Python verifier failed ({}); are joserfc and cryptography installed? \
         (scripts/install-test-deps.sh installs them)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the Python verifier prints JSON")
}

#[test]
fn joserfc_and_cryptography_verify_a_signed_bundle() {
    let compact = sign_bundle(&payload(), &key());
    let verdict = python_verdict(&compact);
    let kid = key().public_jwk().thumbprint();
    assert_eq!(verdict["thumbprint"], json!(kid), "RFC 7638 thumbprint");
    assert_eq!(verdict["cryptography"], json!({"valid": true}));
    assert_eq!(
        verdict["joserfc"],
        json!({
            "valid": true,
            "header": {"alg": "EdDSA", "kid": kid, "typ": "postwarden.bundle+jws"},
            "payload": serde_json::to_value(payload()).unwrap(),
        })
    );
}

#[test]
fn joserfc_and_cryptography_refuse_a_tampered_bundle() {
    let compact = sign_bundle(&payload(), &key());
    let forged = sign_bundle(
        &BundlePayload {
            serial: 13,
            ..payload()
        },
        &key(),
    );
    // The signed header and signature of the real bundle around the payload of another.
    let parts: Vec<&str> = compact.split('.').collect();
    let forged_payload = forged.split('.').nth(1).unwrap();
    let tampered = [parts[0], forged_payload, parts[2]].join(".");
    let verdict = python_verdict(&tampered);
    assert_eq!(verdict["joserfc"], json!({"valid": false}));
    assert_eq!(verdict["cryptography"], json!({"valid": false}));
}
