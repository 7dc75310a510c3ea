//! Signing and verifying bundles: the round trip, the pinned signed form, and each refusal.

use expect_test::expect;

use super::*;
use crate::v1::tests::bundle_payload;

const DEVICE: &str = "dev-3f9a";

fn key() -> SigningKey {
    SigningKey::from_seed(&[42; 32])
}

/// Signs arbitrary payload JSON with the trusted key, for payloads `sign_bundle` cannot make.
fn signed_json(json: &serde_json::Value) -> String {
    jws::sign(&serde_json::to_vec(json).unwrap(), &key())
}

fn refused(compact: &str, min_serial: Option<u64>) -> BundleError {
    verify_bundle(compact, &key().public_jwk(), DEVICE, min_serial)
        .expect_err("the bundle must be refused")
}

#[test]
fn round_trip() {
    let compact = sign_bundle(&bundle_payload(), &key());
    let verified = verify_bundle(&compact, &key().public_jwk(), DEVICE, None).unwrap();
    assert_eq!(verified, bundle_payload());
}

#[test]
fn signed_bundle_is_deterministic() {
    let compact = sign_bundle(&bundle_payload(), &key());
    assert_eq!(compact, sign_bundle(&bundle_payload(), &key()));
    expect!["eyJhbGciOiJFZERTQSIsImtpZCI6IlJkc0lkTzNDc01EekNqTlp2emg5b3FNbVRnTUFTZzNqZ29BaThkWFpMSVEiLCJ0eXAiOiJwb3N0d2FyZGVuLmJ1bmRsZStqd3MifQ.eyJzY2hlbWEiOiJwb3N0d2FyZGVuLmJ1bmRsZS92MSIsImRldmljZSI6ImRldi0zZjlhIiwic2VyaWFsIjo3LCJpc3N1ZWRfYXQiOiIyMDI2LTA1LTA0VDA5OjMwOjAwWiIsInByb2ZpbGUiOnsiaWQiOiJhY21lLW1haWwiLCJ2ZXJzaW9uIjozLCJ0b21sIjoiaWQgPSBcImFjbWUtbWFpbFwiXG52ZXJzaW9uID0gM1xudGl0bGUgPSBcIkFDTUUgbWFpbFwiXG4ifSwidmFyaWFibGVzIjp7ImFsaWNlIjp7InVzZXIuZW1haWwiOiJhbGljZUBleGFtcGxlLm9yZyJ9fX0.nsAxGL5wAlebqGgYku4pimh5hcRn7YAdf8SPf0v52Bv4GYpPVqaTxi1E-bQLIl_pGmMmldZi6LWxGpmMsd8gBQ"].assert_eq(&compact);
}

#[test]
fn equal_serial_is_accepted_and_newer_too() {
    let compact = sign_bundle(&bundle_payload(), &key());
    for cached in [0, 6, 7] {
        verify_bundle(&compact, &key().public_jwk(), DEVICE, Some(cached)).unwrap();
    }
}

#[test]
fn older_serial_is_refused() {
    let compact = sign_bundle(&bundle_payload(), &key());
    assert!(matches!(
        refused(&compact, Some(8)),
        BundleError::OlderSerial {
            serial: 7,
            cached: 8
        }
    ));
}

#[test]
fn other_device_is_refused() {
    let compact = sign_bundle(&bundle_payload(), &key());
    let err = verify_bundle(&compact, &key().public_jwk(), "dev-0000", None).unwrap_err();
    assert!(matches!(&err, BundleError::WrongDevice { found, expected }
        if found == DEVICE && expected == "dev-0000"));
}

#[test]
fn bad_signature_is_refused() {
    let other = SigningKey::from_seed(&[1; 32]);
    let compact = sign_bundle(&bundle_payload(), &other);
    assert!(matches!(
        refused(&compact, None),
        BundleError::Jws(JwsError::KidMismatch { .. })
    ));
    let compact = sign_bundle(&bundle_payload(), &key());
    let tampered = compact.replacen('.', ".e30", 1);
    assert!(matches!(
        refused(&tampered, None),
        BundleError::Jws(JwsError::BadSignature)
    ));
}

#[test]
fn other_schema_is_refused_before_its_fields() {
    let mut json = serde_json::to_value(bundle_payload()).unwrap();
    json["schema"] = serde_json::json!("postwarden.bundle/v2");
    json["rollout"] = serde_json::json!("canary");
    let err = refused(&signed_json(&json), None);
    assert!(matches!(&err, BundleError::Schema { found } if found == "\"postwarden.bundle/v2\""));
}

#[test]
fn unparseable_payload_names_the_field() {
    let mut json = serde_json::to_value(bundle_payload()).unwrap();
    json["serial"] = serde_json::json!("seven");
    let err = refused(&signed_json(&json), None);
    assert!(matches!(err, BundleError::Payload(_)));
    expect![[r#"bundle payload is not a valid postwarden.bundle/v1: invalid type: string "seven", expected u64 at line 1 column 69"#]].assert_eq(&err.to_string());

    let err = refused(&jws::sign(b"not json", &key()), None);
    assert!(matches!(err, BundleError::Payload(_)));
}

#[test]
fn error_messages() {
    let errors = [
        BundleError::Jws(JwsError::BadSignature),
        BundleError::Schema {
            found: "\"postwarden.bundle/v2\"".into(),
        },
        BundleError::WrongDevice {
            found: "dev-1".into(),
            expected: "dev-2".into(),
        },
        BundleError::OlderSerial {
            serial: 6,
            cached: 7,
        },
    ];
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    expect![[r#"
        bundle signature or format: jws signature does not verify with the trusted key
        bundle schema is "postwarden.bundle/v2", this agent reads "postwarden.bundle/v1"
        bundle is for device "dev-1", not this device "dev-2"
        bundle serial 6 is older than the cached serial 7"#]]
    .assert_eq(&messages.join("\n"));
}
