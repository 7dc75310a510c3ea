//! Signing a configuration profile: CMS `SignedData` (RFC 5652), DER, with the profile embedded
//! (not detached), as Apple's profile installer expects and as `openssl smime -sign -nodetach
//! -binary -outform der` or `security cms -S` produce.
//!
//! - `eContentType` is `id-data`; the content is the profile's bytes, unchanged.
//! - Digest SHA-256. Signed attributes: `content-type` and `message-digest`. There is no
//!   `signing-time`: it is optional, and without it the output is a function of the inputs
//!   (RSA PKCS #1 v1.5 and ECDSA with RFC 6979 nonces are deterministic), so signing the same
//!   profile again gives the same bytes.
//! - The signer is identified by issuer and serial number (`SignerInfo` version 1).
//! - The signer certificate and every chain certificate are included, so a device can build
//!   the path to a root it trusts.
//! - Keys: RSA (at least 2048 bits; PKCS #1 v1.5 with SHA-256) and ECDSA on P-256
//!   (`ecdsa-with-SHA256`), as PEM: PKCS #8 `PRIVATE KEY`, PKCS #1 `RSA PRIVATE KEY` or SEC1
//!   `EC PRIVATE KEY`. The key must belong to the certificate; this is checked before signing.
//!
//! Pure: PEM text in, DER bytes out; the CLI reads the files and adds their names to errors.

use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

/// `id-data` (RFC 5652 § 4): the profile is opaque data.
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// `id-signedData` (RFC 5652 § 5): the outer `ContentInfo`'s type.
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `id-sha256` (RFC 5754).
pub const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Which of the inputs of [`sign`] an error is about; the CLI maps it to a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemInput {
    /// `cert_pem`: the signer certificate.
    Certificate,
    /// `key_pem`: the signer's private key.
    PrivateKey,
    /// `chain_pem`: the intermediate certificates.
    Chain,
}

impl std::fmt::Display for PemInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemInput::Certificate => "signer certificate",
            PemInput::PrivateKey => "private key",
            PemInput::Chain => "certificate chain",
        })
    }
}

/// Why a profile could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The input is not PEM of the expected kind, or its content does not decode.
    #[error("the {input} is not readable PEM: {message}")]
    Pem { input: PemInput, message: String },
    /// The private key is encrypted (`ENCRYPTED PRIVATE KEY`, or a legacy `Proc-Type:
    /// 4,ENCRYPTED` header).
    #[error(
        "the private key is encrypted; give it unencrypted \
         (for example: openssl pkey -in KEY.pem -out plain-key.pem)"
    )]
    EncryptedKey,
    /// A key type Postwarden cannot sign with.
    #[error("unsupported key type: {0}; use an RSA (2048 bits or more) or ECDSA P-256 key")]
    UnsupportedKey(String),
    /// The private key is not the one the signer certificate certifies.
    #[error(
        "the private key does not match the signer certificate (subject {subject}): \
         the certificate's public key is {certificate_key}, the private key's is {private_key}"
    )]
    KeyMismatch {
        subject: String,
        certificate_key: String,
        private_key: String,
    },
    /// Building or encoding the CMS structure failed (a bug, or a certificate we cannot
    /// re-encode).
    #[error("cannot build the CMS signature: {0}")]
    Cms(String),
}

/// A private key we can sign with.
enum SigningKey {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::SecretKey),
}

impl SigningKey {
    fn describe(&self) -> String {
        match self {
            SigningKey::Rsa(k) => format!("an RSA {}-bit key", k.size() * 8),
            SigningKey::P256(_) => "an ECDSA P-256 key".to_owned(),
        }
    }
}

/// Signs `content` (the profile's bytes, usually XML from
/// [`super::mobileconfig::to_xml`]) with the key `key_pem` of the certificate `cert_pem`,
/// including that certificate and every certificate of `chain_pem`. Returns the DER of a CMS
/// `ContentInfo` of type `signedData` with the content embedded.
///
/// `cert_pem` may hold more than one certificate (a "full chain" file): the first is the
/// signer's, the others are included like `chain_pem`'s.
pub fn sign(
    content: &[u8],
    cert_pem: &str,
    key_pem: &str,
    chain_pem: Option<&str>,
) -> Result<Vec<u8>, SignError> {
    let mut certs = read_certificates(cert_pem, PemInput::Certificate)?;
    let signer_cert = certs.remove(0);
    let mut extra = certs;
    if let Some(chain) = chain_pem {
        extra.extend(read_certificates(chain, PemInput::Chain)?);
    }
    let key = read_private_key(key_pem)?;
    check_key_matches(&signer_cert, &key)?;

    let econtent =
        Any::encode_from(&OctetString::new(content).map_err(cms_error)?).map_err(cms_error)?;
    let encap = EncapsulatedContentInfo {
        econtent_type: ID_DATA,
        econtent: Some(econtent),
    };
    let digest_algorithm = AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    };
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: signer_cert.tbs_certificate.issuer.clone(),
        serial_number: signer_cert.tbs_certificate.serial_number.clone(),
    });

    let mut builder = SignedDataBuilder::new(&encap);
    builder
        .add_digest_algorithm(digest_algorithm.clone())
        .map_err(cms_error)?;
    // Each certificate once: a chain file that repeats the signer or an intermediate is common,
    // and a CMS certificate set holds no duplicates.
    let mut included: Vec<Certificate> = Vec::new();
    for cert in std::iter::once(signer_cert.clone()).chain(extra) {
        if !included.contains(&cert) {
            builder
                .add_certificate(CertificateChoices::Certificate(cert.clone()))
                .map_err(cms_error)?;
            included.push(cert);
        }
    }

    match &key {
        SigningKey::Rsa(k) => {
            let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone());
            let info = SignerInfoBuilder::new(&signer, sid, digest_algorithm, &encap, None)
                .map_err(cms_error)?;
            builder
                .add_signer_info::<_, rsa::pkcs1v15::Signature>(info)
                .map_err(cms_error)?;
        }
        SigningKey::P256(k) => {
            let signer = p256::ecdsa::SigningKey::from(k);
            let info = SignerInfoBuilder::new(&signer, sid, digest_algorithm, &encap, None)
                .map_err(cms_error)?;
            builder
                .add_signer_info::<_, p256::ecdsa::DerSignature>(info)
                .map_err(cms_error)?;
        }
    }

    let content_info: ContentInfo = builder.build().map_err(cms_error)?;
    content_info.to_der().map_err(cms_error)
}

fn cms_error(e: impl std::fmt::Display) -> SignError {
    SignError::Cms(e.to_string())
}

/// The PEM blocks of `text`, in order (the `pem` crate: RFC 7468 framing, headers kept).
fn pem_blocks(text: &str, input: PemInput) -> Result<Vec<pem::Pem>, SignError> {
    pem::parse_many(text).map_err(|e| SignError::Pem {
        input,
        message: e.to_string(),
    })
}

fn read_certificates(text: &str, input: PemInput) -> Result<Vec<Certificate>, SignError> {
    let pem = |message: String| SignError::Pem { input, message };
    let blocks = pem_blocks(text, input)?;
    if blocks.is_empty() {
        return Err(pem(
            "no PEM block (-----BEGIN CERTIFICATE-----) found".into()
        ));
    }
    let mut certs = Vec::new();
    for (n, block) in blocks.iter().enumerate() {
        if block.tag() != "CERTIFICATE" {
            return Err(pem(format!(
                "PEM block {} is a {:?}, expected a CERTIFICATE",
                n + 1,
                block.tag()
            )));
        }
        let cert = Certificate::from_der(block.contents()).map_err(|e| {
            pem(format!(
                "PEM block {} is not an X.509 certificate: {e}",
                n + 1
            ))
        })?;
        certs.push(cert);
    }
    Ok(certs)
}

fn read_private_key(text: &str) -> Result<SigningKey, SignError> {
    let pem = |message: String| SignError::Pem {
        input: PemInput::PrivateKey,
        message,
    };
    // `openssl ecparam -genkey` writes an EC PARAMETERS block before the key.
    let blocks: Vec<pem::Pem> = pem_blocks(text, PemInput::PrivateKey)?
        .into_iter()
        .filter(|b| b.tag() != "EC PARAMETERS")
        .collect();
    let block = match blocks.as_slice() {
        [] => {
            return Err(pem(
                "no PEM block (-----BEGIN PRIVATE KEY-----) found".into()
            ))
        }
        [one] => one,
        more => {
            return Err(pem(format!(
                "{} PEM blocks found, expected exactly one private key",
                more.len()
            )))
        }
    };
    let label = block.tag();
    let legacy_encrypted = block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"));
    if label == "ENCRYPTED PRIVATE KEY" || legacy_encrypted {
        return Err(SignError::EncryptedKey);
    }
    let der = block.contents();
    let key = match label {
        "PRIVATE KEY" => pkcs8_key(der).map_err(|e| match e {
            KeyError::Unreadable(m) => pem(format!("PRIVATE KEY {m}")),
            KeyError::Unsupported(m) => SignError::UnsupportedKey(m),
        })?,
        "RSA PRIVATE KEY" => {
            let key = RsaPrivateKey::from_pkcs1_der(der)
                .map_err(|e| pem(format!("RSA PRIVATE KEY is not a valid PKCS #1 key: {e}")))?;
            SigningKey::Rsa(Box::new(key))
        }
        "EC PRIVATE KEY" => {
            // Name the curve when it is not P-256.
            let sec1 = sec1::EcPrivateKey::from_der(der)
                .map_err(|e| pem(format!("EC PRIVATE KEY is not SEC1: {e}")))?;
            let named = sec1.parameters.and_then(|p| p.named_curve());
            if let Some(curve) = named {
                if curve != SECP256R1 {
                    return Err(SignError::UnsupportedKey(format!(
                        "ECDSA on the curve {}",
                        oid_name(curve)
                    )));
                }
            }
            let key = p256::SecretKey::from_sec1_der(der)
                .map_err(|e| pem(format!("EC PRIVATE KEY is not a valid P-256 key: {e}")))?;
            SigningKey::P256(key)
        }
        other => {
            return Err(pem(format!(
                "found a {other:?} PEM block, expected PRIVATE KEY, RSA PRIVATE KEY or \
                 EC PRIVATE KEY"
            )))
        }
    };
    if let SigningKey::Rsa(k) = &key {
        k.validate()
            .map_err(|e| pem(format!("the RSA key is inconsistent: {e}")))?;
        let bits = k.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(SignError::UnsupportedKey(format!(
                "RSA with a {bits}-bit modulus (too weak)"
            )));
        }
    }
    Ok(key)
}

enum KeyError {
    Unreadable(String),
    Unsupported(String),
}

/// A PKCS #8 `PrivateKeyInfo`: RSA or EC on P-256.
fn pkcs8_key(der: &[u8]) -> Result<SigningKey, KeyError> {
    let info = rsa::pkcs8::PrivateKeyInfo::from_der(der)
        .map_err(|e| KeyError::Unreadable(format!("is not PKCS #8: {e}")))?;
    let algorithm = info.algorithm.oid;
    if algorithm == RSA_ENCRYPTION {
        let key = RsaPrivateKey::try_from(info)
            .map_err(|e| KeyError::Unreadable(format!("is not a valid RSA key: {e}")))?;
        Ok(SigningKey::Rsa(Box::new(key)))
    } else if algorithm == ID_EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| KeyError::Unreadable("is an EC key without a named curve".into()))?;
        if curve != SECP256R1 {
            return Err(KeyError::Unsupported(format!(
                "ECDSA on the curve {}",
                oid_name(curve)
            )));
        }
        let key = p256::SecretKey::try_from(info)
            .map_err(|e| KeyError::Unreadable(format!("is not a valid P-256 key: {e}")))?;
        Ok(SigningKey::P256(key))
    } else {
        Err(KeyError::Unsupported(oid_name(algorithm)))
    }
}

fn oid_name(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.3.132.0.34" => Some("P-384 (secp384r1)"),
        "1.3.132.0.35" => Some("P-521 (secp521r1)"),
        "1.3.132.0.10" => Some("secp256k1"),
        "1.3.101.112" => Some("Ed25519"),
        "1.3.101.113" => Some("Ed448"),
        "1.2.840.10040.4.1" => Some("DSA"),
        "1.2.840.113549.1.1.10" => Some("RSASSA-PSS"),
        "1.2.840.10045.2.1" => Some("EC"),
        "1.2.840.113549.1.1.1" => Some("RSA"),
        _ => None,
    };
    match name {
        Some(name) => format!("{name} ({oid})"),
        None => format!("algorithm {oid}"),
    }
}

/// The certificate's public key must be the private key's.
fn check_key_matches(cert: &Certificate, key: &SigningKey) -> Result<(), SignError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let spki_der = spki.to_der().map_err(|e| SignError::Pem {
        input: PemInput::Certificate,
        message: format!("its public key does not re-encode: {e}"),
    })?;
    let certificate_key = if spki.algorithm.oid == RSA_ENCRYPTION {
        match RsaPublicKey::from_public_key_der(&spki_der) {
            Ok(public) => {
                if let SigningKey::Rsa(k) = key {
                    if RsaPublicKey::from(&**k) == public {
                        return Ok(());
                    }
                }
                format!("a different RSA {}-bit key", public.size() * 8)
            }
            Err(e) => format!("an unreadable RSA key ({e})"),
        }
    } else if spki.algorithm.oid == ID_EC_PUBLIC_KEY {
        match p256::PublicKey::from_public_key_der(&spki_der) {
            Ok(public) => {
                if let SigningKey::P256(k) = key {
                    if k.public_key() == public {
                        return Ok(());
                    }
                }
                "a different ECDSA P-256 key".to_owned()
            }
            Err(_) => match spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            {
                Some(curve) => format!("an EC key on the curve {}", oid_name(curve)),
                None => "an EC key without a named curve".to_owned(),
            },
        }
    } else {
        format!("a key of type {}", oid_name(spki.algorithm.oid))
    };
    Err(SignError::KeyMismatch {
        subject: cert.tbs_certificate.subject.to_string(),
        certificate_key,
        private_key: key.describe(),
    })
}

#[cfg(test)]
mod tests;
