use super::*;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sha2::Digest;

const RSA_KEY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/apple/signing/rsa-2048.key.pem"
));
const RSA_WEAK_KEY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/apple/signing/rsa-1024-weak.key.pem"
));
const ENCRYPTED_KEY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/apple/signing/p256-encrypted.key.pem"
));

const CONTENT: &[u8] = b"<?xml version=\"1.0\"?>\n<plist version=\"1.0\"><dict/></plist>\n";

const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";

/// A test CA and a signer certificate it issued for `signer_key`.
struct Pki {
    ca_pem: String,
    signer_pem: String,
    signer_key_pem: String,
}

fn pki(signer_key: KeyPair) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Postwarden test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Postwarden test profile signer");
    let signer = params.signed_by(&signer_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        signer_pem: signer.pem(),
        signer_key_pem: signer_key.serialize_pem(),
    }
}

fn ecdsa_pki() -> Pki {
    pki(KeyPair::generate().unwrap())
}

fn rsa_pki() -> Pki {
    pki(KeyPair::from_pem(RSA_KEY).unwrap())
}

fn signed_data(der: &[u8]) -> SignedData {
    let info = ContentInfo::from_der(der).expect("a DER ContentInfo");
    assert_eq!(info.content_type, ID_SIGNED_DATA);
    info.content.decode_as::<SignedData>().expect("SignedData")
}

fn cert(pem: &str) -> Certificate {
    Certificate::load_pem_chain(pem.as_bytes())
        .unwrap()
        .remove(0)
}

/// Structure common to both key types; returns the signature algorithm OID, the DER of the
/// signed attributes (what the signature covers) and the signature.
fn check_structure(der: &[u8], signer_pem: &str) -> (String, Vec<u8>, Vec<u8>) {
    let sd = signed_data(der);
    assert_eq!(sd.encap_content_info.econtent_type, ID_DATA);
    let econtent = sd
        .encap_content_info
        .econtent
        .as_ref()
        .expect("content embedded, not detached");
    let content = econtent.decode_as::<OctetString>().unwrap();
    assert_eq!(content.as_bytes(), CONTENT);

    let digests: Vec<_> = sd.digest_algorithms.iter().map(|a| a.oid).collect();
    assert_eq!(digests, [ID_SHA256]);

    let signer_cert = cert(signer_pem);
    let certs: Vec<_> = sd
        .certificates
        .as_ref()
        .expect("certificates included")
        .0
        .iter()
        .cloned()
        .collect();
    assert!(certs.contains(&CertificateChoices::Certificate(signer_cert.clone())));

    let infos: Vec<_> = sd.signer_infos.0.iter().collect();
    assert_eq!(infos.len(), 1);
    let si = infos[0];
    assert_eq!(si.digest_alg.oid, ID_SHA256);
    match &si.sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            assert_eq!(ias.issuer, signer_cert.tbs_certificate.issuer);
            assert_eq!(ias.serial_number, signer_cert.tbs_certificate.serial_number);
        }
        other => panic!("{other:?}"),
    }
    let attrs = si.signed_attrs.as_ref().expect("signed attributes");
    let value_of = |oid: &str| {
        let oid = ObjectIdentifier::new_unwrap(oid);
        let attr = attrs
            .iter()
            .find(|a| a.oid == oid)
            .unwrap_or_else(|| panic!("no attribute {oid}"));
        assert_eq!(attr.values.len(), 1);
        attr.values.iter().next().unwrap().clone()
    };
    let content_type = value_of("1.2.840.113549.1.9.3");
    assert_eq!(
        content_type.decode_as::<ObjectIdentifier>().unwrap(),
        ID_DATA
    );
    let digest = value_of("1.2.840.113549.1.9.4");
    assert_eq!(
        digest.decode_as::<OctetString>().unwrap().as_bytes(),
        Sha256::digest(CONTENT).as_slice()
    );
    (
        si.signature_algorithm.oid.to_string(),
        attrs.to_der().unwrap(),
        si.signature.as_bytes().to_vec(),
    )
}

#[test]
fn ecdsa_p256_signature_embeds_the_content_and_verifies() {
    use p256::ecdsa::signature::Verifier;
    let pki = ecdsa_pki();
    let der = sign(CONTENT, &pki.signer_pem, &pki.signer_key_pem, None).unwrap();
    let (alg, signed, signature) = check_structure(&der, &pki.signer_pem);
    assert_eq!(alg, ECDSA_WITH_SHA256);
    let spki = cert(&pki.signer_pem)
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
    let signature = p256::ecdsa::DerSignature::from_bytes(&signature).unwrap();
    key.verify(&signed, &signature).unwrap();
}

#[test]
fn rsa_signature_embeds_the_content_and_verifies() {
    use rsa::signature::Verifier;
    let pki = rsa_pki();
    let der = sign(CONTENT, &pki.signer_pem, RSA_KEY, None).unwrap();
    let (alg, signed, signature) = check_structure(&der, &pki.signer_pem);
    assert_eq!(alg, SHA256_WITH_RSA);
    let public = RsaPublicKey::from(RsaPrivateKey::from_pkcs8_pem(RSA_KEY).unwrap());
    let key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public);
    let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice()).unwrap();
    key.verify(&signed, &signature).unwrap();
}

use rsa::pkcs8::DecodePrivateKey;

#[test]
fn pkcs1_rsa_and_sec1_ec_keys_are_accepted() {
    use p256::pkcs8::LineEnding;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let pki = rsa_pki();
    let pkcs1 = RsaPrivateKey::from_pkcs8_pem(RSA_KEY)
        .unwrap()
        .to_pkcs1_pem(LineEnding::LF)
        .unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let a = sign(CONTENT, &pki.signer_pem, &pkcs1, None).unwrap();
    let b = sign(CONTENT, &pki.signer_pem, RSA_KEY, None).unwrap();
    assert_eq!(a, b, "the same key in either form signs the same");

    let pki = ecdsa_pki();
    let sec1 = p256::SecretKey::from_pkcs8_pem(&pki.signer_key_pem)
        .unwrap()
        .to_sec1_pem(LineEnding::LF)
        .unwrap();
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    // As `openssl ecparam -genkey` writes it: the parameters first.
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        &*sec1
    );
    let a = sign(CONTENT, &pki.signer_pem, &with_params, None).unwrap();
    let b = sign(CONTENT, &pki.signer_pem, &pki.signer_key_pem, None).unwrap();
    assert_eq!(a, b);
}

#[test]
fn signing_is_deterministic() {
    for pki in [ecdsa_pki(), rsa_pki()] {
        let a = sign(CONTENT, &pki.signer_pem, &pki.signer_key_pem, None).unwrap();
        let b = sign(CONTENT, &pki.signer_pem, &pki.signer_key_pem, None).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn chain_certificates_are_included_once() {
    let pki = ecdsa_pki();
    let chain = format!("{}{}{}", pki.ca_pem, pki.signer_pem, pki.ca_pem);
    let der = sign(CONTENT, &pki.signer_pem, &pki.signer_key_pem, Some(&chain)).unwrap();
    let certs = signed_data(&der).certificates.unwrap();
    assert_eq!(certs.0.len(), 2, "signer and CA, neither repeated");
    assert!(certs
        .0
        .iter()
        .any(|c| c == &CertificateChoices::Certificate(cert(&pki.ca_pem))));

    // A full-chain file as the certificate: the first is the signer, the rest is the chain.
    let full = format!("{}{}", pki.signer_pem, pki.ca_pem);
    let der = sign(CONTENT, &full, &pki.signer_key_pem, None).unwrap();
    assert_eq!(signed_data(&der).certificates.unwrap().0.len(), 2);
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let a = ecdsa_pki();
    let b = ecdsa_pki();
    let err = sign(CONTENT, &a.signer_pem, &b.signer_key_pem, None).unwrap_err();
    assert!(matches!(err, SignError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the private key does not match the signer certificate (subject \
         CN=Postwarden test profile signer): the certificate's public key is a different \
         ECDSA P-256 key, the private key's is an ECDSA P-256 key"
    );

    let rsa = rsa_pki();
    let err = sign(CONTENT, &rsa.signer_pem, &a.signer_key_pem, None).unwrap_err();
    assert!(
        err.to_string().contains(
            "the certificate's public key is a different RSA 2048-bit key, \
             the private key's is an ECDSA P-256 key"
        ),
        "{err}"
    );
    let err = sign(CONTENT, &a.signer_pem, RSA_KEY, None).unwrap_err();
    assert!(
        err.to_string().contains(
            "the certificate's public key is a different ECDSA P-256 key, \
             the private key's is an RSA 2048-bit key"
        ),
        "{err}"
    );
}

#[test]
fn unsupported_and_encrypted_keys_are_named() {
    let pki = ecdsa_pki();
    let err = sign(CONTENT, &pki.signer_pem, ENCRYPTED_KEY, None).unwrap_err();
    assert_eq!(err, SignError::EncryptedKey);
    assert!(err.to_string().contains("encrypted"), "{err}");

    let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    let err = sign(CONTENT, &pki.signer_pem, &ed25519, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported key type: Ed25519 (1.3.101.112); use an RSA (2048 bits or more) or \
         ECDSA P-256 key"
    );

    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_pem();
    let err = sign(CONTENT, &pki.signer_pem, &p384, None).unwrap_err();
    assert!(
        matches!(&err, SignError::UnsupportedKey(m) if m.contains("P-384")),
        "{err:?}"
    );

    let err = sign(CONTENT, &pki.signer_pem, RSA_WEAK_KEY, None).unwrap_err();
    assert!(
        matches!(&err, SignError::UnsupportedKey(m) if m.contains("1024-bit")),
        "{err:?}"
    );
}

#[test]
fn unreadable_pem_names_the_input() {
    let pki = ecdsa_pki();
    let key = &pki.signer_key_pem;
    let cert = &pki.signer_pem;

    let err = sign(CONTENT, "not a certificate", key, None).unwrap_err();
    assert!(
        matches!(
            &err,
            SignError::Pem {
                input: PemInput::Certificate,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the signer certificate is not readable PEM: no PEM block"),
        "{err}"
    );

    let err = sign(CONTENT, key, key, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("is a \"PRIVATE KEY\", expected a CERTIFICATE"),
        "{err}"
    );

    let err = sign(CONTENT, cert, cert, None).unwrap_err();
    assert!(
        matches!(
            &err,
            SignError::Pem {
                input: PemInput::PrivateKey,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the private key is not readable PEM"),
        "{err}"
    );

    let err = sign(CONTENT, cert, "", None).unwrap_err();
    assert!(
        matches!(
            &err,
            SignError::Pem {
                input: PemInput::PrivateKey,
                ..
            }
        ),
        "{err:?}"
    );

    let damaged = cert.replacen("MII", "M!I", 1);
    let err = sign(CONTENT, &damaged, key, None).unwrap_err();
    assert!(
        matches!(
            &err,
            SignError::Pem {
                input: PemInput::Certificate,
                ..
            }
        ),
        "{err:?}"
    );

    let err = sign(CONTENT, cert, key, Some("garbage")).unwrap_err();
    assert!(
        matches!(
            &err,
            SignError::Pem {
                input: PemInput::Chain,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("the certificate chain is not readable PEM"));
}
