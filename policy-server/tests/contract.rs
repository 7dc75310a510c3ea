//! What others rely on: the OpenAPI document lists every route the issue names (and the server
//! answers each of them), the ready file and `init` agree with the served certificate, and an
//! independent verifier (Python `joserfc` and `cryptography`) accepts a served bundle and
//! refuses it once tampered with.

mod common;

use std::process::Command;

use common::{baseline_toml, Db, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The interface of the issue, exactly: (method, path template).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/profiles"),
    ("get", "/api/v1/profiles"),
    ("get", "/api/v1/profiles/{id}/{version}"),
    ("get", "/api/v1/profiles/{id}/diff"),
    ("put", "/api/v1/groups/{group}"),
    ("get", "/api/v1/groups"),
    ("post", "/api/v1/enrollment-tokens"),
    ("delete", "/api/v1/enrollment-tokens/{id}"),
    ("put", "/api/v1/users/{user}/variables"),
    ("post", "/api/v1/users/variables"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices/{id}"),
    ("delete", "/api/v1/devices/{id}"),
    ("get", "/api/v1/compliance/summary"),
    ("get", "/api/v1/compliance/controls/{control}"),
    ("get", "/api/v1/compliance/history"),
    ("get", "/api/v1/compliance/time-to-repair"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/audit-log"),
    ("post", "/api/v1/enroll"),
    ("get", "/api/v1/bundle"),
    ("get", "/api/v1/signing-key"),
    ("post", "/api/v1/users"),
    ("post", "/api/v1/reports"),
    ("get", "/metrics"),
    ("post", "/api/v1/rollouts"),
    ("get", "/api/v1/rollouts"),
    ("get", "/api/v1/rollouts/{id}"),
    ("post", "/api/v1/rollouts/{id}/promote"),
    ("post", "/api/v1/rollouts/{id}/halt"),
    ("post", "/api/v1/rollouts/{id}/rollback"),
];

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_served() {
    let s = Server::start(Db::Sqlite);
    let r = s
        .request(Method::GET, "/api/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented += 1;
            assert!(
                ROUTES.contains(&(method.as_str(), path.as_str())) || path == "/healthz",
                "{method} {path} is documented but not in the issue's interface list"
            );
        }
    }
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is missing from /api/openapi.json"
        );
        // The server routes it: concrete values for the placeholders, no credentials.
        let concrete = path
            .replace("{id}", "dev_aaaaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{version}", "1")
            .replace("{group}", "office")
            .replace("{user}", "alice")
            .replace("{control}", "require-tls");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = s.request(m, &concrete).send().await.unwrap();
        assert!(
            ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&r.status()),
            "{method} {concrete}: {} (without credentials every route answers 401, 400, 415 \
             or 200, never a routing error)",
            r.status()
        );
    }
    assert_eq!(documented, ROUTES.len() + 1, "plus /healthz");
    // Security schemes are declared for both kinds of caller.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("admin_token") && schemes.contains_key("device_credential"));
}

#[tokio::test]
async fn the_pin_matches_the_served_certificate_and_a_wrong_pin_fails() {
    let s = Server::start(Db::Sqlite);
    // curl accepts the very same string (`--pinnedpubkey`) and refuses another one. curl is a
    // test dependency (scripts/install-test-deps.sh): a missing curl fails, nothing is skipped.
    let curl = |pin: &str| {
        Command::new("curl")
            .args(["-sS", "-k", "--pinnedpubkey", pin])
            .arg(format!("{}/api/v1/signing-key", s.url))
            .output()
            .expect("curl runs (scripts/install-test-deps.sh installs it)")
    };
    let out = curl(&s.pin);
    assert!(
        out.status.success(),
        "curl --pinnedpubkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, s.jwk);
    assert!(
        !curl("sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .status
            .success(),
        "curl accepted a wrong pin"
    );
    let wrong = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned();
    let client = postwarden_transport::client(
        &postwarden_transport::Trust::Pins(vec![wrong]),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let err = client
        .get(format!("{}/api/v1/signing-key", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // `init` on the same data directory prints the same pin and key (it loads, not recreates).
    let out = Command::new(postwarden_test_support::bin::server())
        .args(["init", "--data-dir"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(init["pin_sha256"], s.pin.as_str());
    assert_eq!(init["signing_key"], s.jwk);
}

const VERIFIER: &str = r#"
import base64, json, sys, warnings
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import OKPKey
warnings.filterwarnings("ignore", message=".*RFC 9864.*")

def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

compact, jwk = sys.stdin.read().split("\n", 1)
jwk = json.loads(jwk)
out = {}
try:
    signed = jws.deserialize_compact(compact, OKPKey.import_key(jwk), algorithms=["EdDSA"])
    out["joserfc"] = True
    out["payload"] = json.loads(signed.payload)
    out["header"] = signed.headers()
except BadSignatureError:
    out["joserfc"] = False
header, payload, signature = compact.split(".")
try:
    Ed25519PublicKey.from_public_bytes(b64url(jwk["x"])).verify(
        b64url(signature), (header + "." + payload).encode("ascii"))
    out["cryptography"] = True
except InvalidSignature:
    out["cryptography"] = False
print(json.dumps(out))
"#;

fn python_verify(compact: &str, jwk: &Value) -> Value {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", VERIFIER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/install-test-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{compact}\n{jwk}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn an_independent_verifier_accepts_the_served_bundle_and_refuses_a_tampered_one() {
    let s = Server::start(Db::Sqlite);
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    let token = s.enrollment_token("office", 1).await;
    let (device, credential) = s.enroll(&token, &["alice"]).await;
    let (_, serial, compact) = s.bundle(&credential, None, None).await;

    let v = python_verify(&compact, &s.jwk);
    assert_eq!(v["joserfc"], true, "{v}");
    assert_eq!(v["cryptography"], true, "{v}");
    assert_eq!(v["header"]["alg"], "EdDSA");
    let kid = serde_json::from_value::<postwarden_wire::Jwk>(s.jwk.clone())
        .unwrap()
        .thumbprint();
    assert_eq!(v["header"]["kid"], kid.as_str());
    assert_eq!(v["payload"]["schema"], "postwarden.bundle/v1");
    assert_eq!(v["payload"]["device"], device.as_str());
    assert_eq!(v["payload"]["serial"], serial.unwrap());

    // Tamper: another serial in the payload, same signature.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = compact.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["serial"] = Value::from(serial.unwrap() + 1000);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    let v = python_verify(&forged, &s.jwk);
    assert_eq!(v["joserfc"], false, "{v}");
    assert_eq!(v["cryptography"], false, "{v}");
}
