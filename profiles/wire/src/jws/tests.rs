//! JWKs and JWS: the RFC 8037 vectors, the pinned serialized forms, and one test per refusal.
//! Each refusal is built with a valid signature where it can be, so the test shows the check
//! itself refuses it, not the signature.
//! Update snapshots deliberately with `UPDATE_EXPECT=1 cargo test -p postwarden-wire`.

use expect_test::expect;

use super::*;

/// RFC 8037 appendix A.1: the private key `d` and its public key `x`.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// RFC 8037 appendix A.3: the thumbprint of that public key.
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
/// RFC 8037 appendix A.4: "Example of Ed25519 signing" under `{"alg":"EdDSA"}`.
const RFC8037_PAYLOAD: &[u8] = b"Example of Ed25519 signing";
const RFC8037_SIGNATURE: &str =
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
const RFC8037_COMPACT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
     hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn rfc_key() -> SigningKey {
    let seed = decode_key_bytes("d", RFC8037_D).unwrap();
    SigningKey::from_seed(&seed)
}

fn rfc_public_jwk() -> Jwk {
    jwk(&format!(
        r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#
    ))
    .unwrap()
}

fn other_key() -> SigningKey {
    SigningKey::from_seed(&[7; 32])
}

fn jwk(json: &str) -> Result<Jwk, String> {
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// A compact JWS over exactly this header text and payload, validly signed by the RFC key.
fn signed(header: &str, payload: &[u8]) -> String {
    sign_with_header(header.as_bytes(), payload, &rfc_key())
}

/// Signs `header_b64.payload_b64` as given, so malformed encodings still carry a valid signature.
fn signed_raw(header_b64: &str, payload_b64: &str) -> String {
    let input = format!("{header_b64}.{payload_b64}");
    let signature = rfc_key().inner.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn refused(compact: &str) -> JwsError {
    verify(compact, &rfc_public_jwk()).expect_err("the jws must be refused")
}

fn kid_header() -> String {
    format!(r#"{{"alg":"EdDSA","kid":"{RFC8037_THUMBPRINT}"}}"#)
}

fn replace_part(compact: &str, index: usize, part: &str) -> String {
    let mut parts: Vec<&str> = compact.split('.').collect();
    parts[index] = part;
    parts.join(".")
}

// --- RFC 8037 vectors ---

#[test]
fn rfc8037_a3_thumbprint() {
    assert_eq!(rfc_public_jwk().thumbprint(), RFC8037_THUMBPRINT);
}

#[test]
fn rfc8037_a1_public_key_is_derived_from_the_private_key() {
    assert_eq!(rfc_key().public_jwk().x(), RFC8037_X);
}

#[test]
fn rfc8037_a4_signature_is_reproduced() {
    let compact = signed(r#"{"alg":"EdDSA"}"#, RFC8037_PAYLOAD);
    assert_eq!(compact, RFC8037_COMPACT);
    assert_eq!(compact.rsplit('.').next(), Some(RFC8037_SIGNATURE));
}

#[test]
fn rfc8037_a4_verifies() {
    assert_eq!(
        verify(RFC8037_COMPACT, &rfc_public_jwk()).unwrap(),
        RFC8037_PAYLOAD
    );
}

// --- serialized forms ---

#[test]
fn public_jwk_json() {
    let json = serde_json::to_string(&rfc_key().public_jwk()).unwrap();
    expect![[r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","alg":"EdDSA","use":"sig"}"#]].assert_eq(&json);
    assert_eq!(jwk(&json).unwrap(), rfc_key().public_jwk());
}

#[test]
fn private_jwk_json_round_trips() {
    let json = rfc_key().to_private_jwk_json();
    expect![[r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","alg":"EdDSA","use":"sig"}"#]].assert_eq(&json);
    let back = SigningKey::from_private_jwk_json(&json).unwrap();
    assert_eq!(back.public_jwk(), rfc_key().public_jwk());
    assert_eq!(sign(b"x", &back), sign(b"x", &rfc_key()));
}

#[test]
fn rfc8037_a1_private_jwk_is_read() {
    let json = format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{RFC8037_D}","x":"{RFC8037_X}"}}"#);
    let key = SigningKey::from_private_jwk_json(&json).unwrap();
    assert_eq!(key.public_jwk().thumbprint(), RFC8037_THUMBPRINT);
}

#[test]
fn signed_header_json() {
    let compact = sign(b"{}", &rfc_key());
    let header = decode(Part::Header, compact.split('.').next().unwrap()).unwrap();
    expect![[r#"{"alg":"EdDSA","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","typ":"postwarden.bundle+jws"}"#]]
        .assert_eq(std::str::from_utf8(&header).unwrap());
    expect!["eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiLCJ0eXAiOiJwb3N0d2FyZGVuLmJ1bmRsZStqd3MifQ.e30.KIAp4irjdo5WYfKf2tdNy1eG9uRHFO65s-kZxFRXIC2P0Yeol2FFo3jHAfZ5I1WgQ-K3lvX3yDXi8zkV7qcOAA"]
        .assert_eq(&compact);
}

#[test]
fn debug_never_shows_the_private_key() {
    let debug = format!("{:?}", rfc_key());
    assert!(!debug.contains(RFC8037_D), "{debug}");
    expect![[
        r#"SigningKey { kid: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", d: <redacted> }"#
    ]]
    .assert_eq(&debug);
}

// --- JWK validation ---

fn jwk_with_x(x: &[u8]) -> String {
    format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, b64(x))
}

#[test]
fn jwk_without_optional_members_is_read_and_written_in_full() {
    let read = rfc_public_jwk();
    assert_eq!(read, rfc_key().public_jwk());
    assert!(serde_json::to_string(&read).unwrap().contains(r#""kid":"#));
}

#[test]
fn jwk_refusals() {
    let mut y_not_on_curve = [0u8; 32];
    // y = 2 gives x² = 3 / (2²·d + 1), which has no square root mod 2²⁵⁵ - 19.
    y_not_on_curve[0] = 2;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let x = RFC8037_X;
    let cases = [
        format!(r#"{{"kty":"EC","crv":"Ed25519","x":"{x}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"X25519","x":"{x}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}="}}"#),
        format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            x.replace('_', "/")
        ),
        jwk_with_x(&[9; 31]),
        jwk_with_x(&y_not_on_curve),
        jwk_with_x(&identity),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"other"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"ES256"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","use":"enc"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","d":"{RFC8037_D}"}}"#),
        r#"{"kty":"OKP","crv":"Ed25519"}"#.to_owned(),
    ];
    let errors: Vec<String> = cases.iter().map(|c| jwk(c).unwrap_err()).collect();
    expect![[r#"
        jwk kty is "EC", expected "OKP"
        jwk crv is "X25519", expected "Ed25519"
        jwk x is not strict base64url without padding: Invalid padding
        jwk x is not strict base64url without padding: Invalid symbol 47, offset 13.
        jwk x decodes to 31 bytes, expected 32
        jwk x is not a valid Ed25519 public key (not a curve point)
        jwk x is a weak Ed25519 public key (a point of small order)
        jwk kid "other" is not the key's RFC 7638 thumbprint "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        jwk alg is "ES256", expected "EdDSA" or "Ed25519"
        jwk use is "enc", expected "sig"
        unknown field `d`, expected one of `kty`, `crv`, `x`, `kid`, `alg`, `use` at line 1 column 82
        missing field `x` at line 1 column 29"#]]
    .assert_eq(&errors.join("\n"));
}

#[test]
fn private_jwk_refusals() {
    let other_x = other_key().public_jwk().x();
    let cases = [
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{other_x}","d":"{RFC8037_D}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","d":"AAAA"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","d":"{RFC8037_D}","p":"x"}}"#),
    ];
    let errors: Vec<JwkError> = cases
        .iter()
        .map(|c| SigningKey::from_private_jwk_json(c).unwrap_err())
        .collect();
    assert_eq!(errors[0], JwkError::PrivateMismatch);
    assert_eq!(
        errors[1],
        JwkError::Length {
            member: "d",
            len: 3
        }
    );
    assert!(matches!(&errors[2], JwkError::Json(m) if m.contains("missing field `d`")));
    assert!(matches!(&errors[3], JwkError::Json(m) if m.contains("unknown field `p`")));
}

// --- signing and verifying ---

#[test]
fn sign_verify_round_trip() {
    let key = other_key();
    let compact = sign(b"payload bytes", &key);
    assert_eq!(
        verify(&compact, &key.public_jwk()).unwrap(),
        b"payload bytes"
    );
}

#[test]
fn rfc9864_alg_ed25519_is_accepted() {
    let compact = signed(r#"{"alg":"Ed25519"}"#, b"p");
    assert_eq!(verify(&compact, &rfc_public_jwk()).unwrap(), b"p");
}

#[test]
fn b64_true_is_the_default_and_accepted() {
    let compact = signed(r#"{"alg":"EdDSA","b64":true}"#, b"p");
    assert_eq!(verify(&compact, &rfc_public_jwk()).unwrap(), b"p");
}

#[test]
fn tampered_payload() {
    let compact = sign(b"serial 7", &rfc_key());
    let tampered = replace_part(&compact, 1, &b64(b"serial 8"));
    assert_eq!(refused(&tampered), JwsError::BadSignature);
}

#[test]
fn tampered_header() {
    let compact = signed(&kid_header(), b"p");
    let header = format!(r#"{{"alg":"EdDSA","kid":"{RFC8037_THUMBPRINT}","typ":"x"}}"#);
    let tampered = replace_part(&compact, 0, &b64(header.as_bytes()));
    assert_eq!(refused(&tampered), JwsError::BadSignature);
}

#[test]
fn tampered_signature() {
    let compact = sign(b"p", &rfc_key());
    let mut signature = decode(Part::Signature, compact.rsplit('.').next().unwrap()).unwrap();
    signature[10] ^= 1;
    let tampered = replace_part(&compact, 2, &b64(&signature));
    assert_eq!(refused(&tampered), JwsError::BadSignature);
}

#[test]
fn malleated_signature_is_refused() {
    // S + L (the group order) verifies with lax Ed25519 checks; verify_strict refuses it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut signature = decode(Part::Signature, RFC8037_SIGNATURE).unwrap();
    let mut carry = 0u16;
    for (s, l) in signature[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let malleated = replace_part(RFC8037_COMPACT, 2, &b64(&signature));
    assert_eq!(refused(&malleated), JwsError::BadSignature);
}

#[test]
fn wrong_key_without_kid() {
    let compact = sign_with_header(br#"{"alg":"EdDSA"}"#, b"p", &other_key());
    assert_eq!(refused(&compact), JwsError::BadSignature);
}

#[test]
fn wrong_key_with_kid() {
    let compact = sign(b"p", &other_key());
    assert_eq!(
        refused(&compact),
        JwsError::KidMismatch {
            kid: format!("{:?}", other_key().public_jwk().thumbprint()),
            expected: RFC8037_THUMBPRINT.to_owned(),
        }
    );
}

#[test]
fn kid_that_is_not_a_string() {
    let compact = signed(r#"{"alg":"EdDSA","kid":1}"#, b"p");
    assert_eq!(
        refused(&compact),
        JwsError::KidMismatch {
            kid: "1".to_owned(),
            expected: RFC8037_THUMBPRINT.to_owned(),
        }
    );
}

#[test]
fn alg_none() {
    let compact = signed(r#"{"alg":"none"}"#, b"p");
    assert_eq!(
        refused(&compact),
        JwsError::UnsupportedAlg(r#""none""#.into())
    );
    // The classic form: no signature at all.
    let unsigned = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(b"p"));
    assert_eq!(
        refused(&unsigned),
        JwsError::UnsupportedAlg(r#""none""#.into())
    );
}

#[test]
fn alg_hs256() {
    let compact = signed(r#"{"alg":"HS256"}"#, b"p");
    assert_eq!(
        refused(&compact),
        JwsError::UnsupportedAlg(r#""HS256""#.into())
    );
}

#[test]
fn alg_other_spellings() {
    for (alg, shown) in [
        (r#""eddsa""#, r#""eddsa""#),
        (r#""ED25519""#, r#""ED25519""#),
        (r#"["EdDSA"]"#, r#"["EdDSA"]"#),
        ("null", "null"),
    ] {
        let compact = signed(&format!(r#"{{"alg":{alg}}}"#), b"p");
        assert_eq!(
            refused(&compact),
            JwsError::UnsupportedAlg(shown.into()),
            "{alg}"
        );
    }
}

#[test]
fn alg_missing() {
    let compact = signed(r#"{"typ":"JWT"}"#, b"p");
    assert_eq!(refused(&compact), JwsError::MissingAlg);
}

#[test]
fn crit_present() {
    let compact = signed(r#"{"alg":"EdDSA","crit":["exp"],"exp":1}"#, b"p");
    assert_eq!(refused(&compact), JwsError::Crit(r#"["exp"]"#.into()));
}

#[test]
fn unencoded_payload() {
    let compact = signed(r#"{"alg":"EdDSA","b64":false}"#, b"p");
    assert_eq!(
        refused(&compact),
        JwsError::UnencodedPayload("false".into())
    );
}

#[test]
fn duplicate_header_member() {
    // A reader keeping the last member would see EdDSA; one keeping the first would see none.
    let compact = signed(r#"{"alg":"none","alg":"EdDSA"}"#, b"p");
    assert_eq!(
        refused(&compact),
        JwsError::HeaderJson(r#"duplicate member "alg" at line 1 column 28"#.into())
    );
}

#[test]
fn header_not_an_object() {
    let compact = signed(r#"["alg","EdDSA"]"#, b"p");
    assert_eq!(refused(&compact), JwsError::HeaderNotObject);
}

#[test]
fn header_not_json() {
    let compact = signed("alg=EdDSA", b"p");
    assert!(matches!(refused(&compact), JwsError::HeaderJson(_)));
}

#[test]
fn padded_base64() {
    let compact = signed_raw(&b64(kid_header().as_bytes()), "YWI=");
    assert!(matches!(
        refused(&compact),
        JwsError::Base64 {
            part: Part::Payload,
            ..
        }
    ));
    let compact = format!("{}==", sign(b"p", &rfc_key()));
    assert!(matches!(
        refused(&compact),
        JwsError::Base64 {
            part: Part::Signature,
            ..
        }
    ));
    let header = format!("{}=", b64(br#"{"alg":"EdDSA"}"#));
    assert!(matches!(
        refused(&signed_raw(&header, "cA")),
        JwsError::Base64 {
            part: Part::Header,
            ..
        }
    ));
}

#[test]
fn standard_alphabet_base64() {
    // 0xfb 0xff is "-_8" in base64url and "+/8" in standard base64.
    assert_eq!(b64(&[0xfb, 0xff]), "-_8");
    let compact = signed_raw(&b64(kid_header().as_bytes()), "+/8");
    assert!(matches!(
        refused(&compact),
        JwsError::Base64 {
            part: Part::Payload,
            ..
        }
    ));
}

#[test]
fn non_canonical_trailing_bits() {
    // "cB" has the same first byte as "cA" ("p") but stray low bits.
    let compact = signed_raw(&b64(kid_header().as_bytes()), "cB");
    assert!(matches!(
        refused(&compact),
        JwsError::Base64 {
            part: Part::Payload,
            ..
        }
    ));
}

#[test]
fn part_counts() {
    let compact = sign(b"p", &rfc_key());
    let (first_two, _) = compact.rsplit_once('.').unwrap();
    assert_eq!(refused(first_two), JwsError::PartCount(2));
    assert_eq!(refused(&format!("{compact}.")), JwsError::PartCount(4));
    assert_eq!(refused(&format!("{compact}.x")), JwsError::PartCount(4));
    assert_eq!(refused(""), JwsError::PartCount(1));
}

#[test]
fn signature_length() {
    let compact = signed(&kid_header(), b"p");
    let short = replace_part(&compact, 2, &b64(&[0; 63]));
    assert_eq!(refused(&short), JwsError::SignatureLength(63));
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let huge = "a".repeat(MAX_JWS_LEN + 1);
    assert_eq!(
        refused(&huge),
        JwsError::TooLarge {
            len: MAX_JWS_LEN + 1,
            max: MAX_JWS_LEN
        }
    );
    // At the limit the size is fine and the next check speaks.
    assert_eq!(refused(&huge[1..]), JwsError::PartCount(1));
}

#[test]
fn error_messages() {
    let errors = [
        JwsError::TooLarge { len: 5, max: 4 },
        JwsError::PartCount(2),
        JwsError::Base64 {
            part: Part::Payload,
            reason: "Invalid padding".into(),
        },
        JwsError::HeaderJson("expected value at line 1 column 1".into()),
        JwsError::HeaderNotObject,
        JwsError::MissingAlg,
        JwsError::UnsupportedAlg(r#""none""#.into()),
        JwsError::Crit(r#"["exp"]"#.into()),
        JwsError::UnencodedPayload("false".into()),
        JwsError::KidMismatch {
            kid: r#""abc""#.into(),
            expected: "def".into(),
        },
        JwsError::SignatureLength(63),
        JwsError::BadSignature,
    ];
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    expect![[r#"
        jws is 5 bytes, more than the limit of 4
        jws has 2 dot-separated parts, expected 3 (header.payload.signature)
        jws payload is not strict base64url without padding: Invalid padding
        jws header is not valid JSON: expected value at line 1 column 1
        jws header is not a JSON object
        jws header has no alg
        jws alg "none" is refused: only "EdDSA" or "Ed25519" is accepted
        jws header has crit ["exp"]: no critical extension is understood
        jws header has b64 false: only base64url-encoded payloads are accepted
        jws kid "abc" is not the trusted key's thumbprint "def"
        jws signature is 63 bytes, expected 64
        jws signature does not verify with the trusted key"#]]
    .assert_eq(&messages.join("\n"));
}
