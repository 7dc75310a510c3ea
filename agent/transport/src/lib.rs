//! HTTPS to the policy server, trusting exactly what the administrator said: a pinned public
//! key (`sha256//BASE64` of the certificate's SubjectPublicKeyInfo, the format of curl's
//! `--pinnedpubkey` and of the server's ready file) or the certificates of a CA file.
//!
//! reqwest has no pinning API, so the pin is a rustls certificate verifier. It accepts the
//! certificate only when its key matches a pin, and still checks every handshake signature with
//! the provider's algorithms (a pin says whose key it is; the signature proves the peer holds
//! it). One crypto provider: *ring*, passed explicitly, never a process-wide default.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use der::{Decode, Encode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What the client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// One or more pins `sha256//BASE64` (e.g. the current key and the next one, for rotation).
    Pins(Vec<String>),
    /// The certificates (PEM) of a CA; the server's name is checked as usual.
    Ca(Vec<u8>),
}

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("{pin:?} is not a pin: expected `sha256//` and the base64 of 32 bytes")]
    BadPin { pin: String },
    #[error("the CA file holds no PEM certificate")]
    EmptyCa,
    #[error("the CA file: {0}")]
    Ca(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Parses `sha256//BASE64` into the 32-byte digest.
pub fn parse_pin(pin: &str) -> Result<[u8; 32], TransportError> {
    let bad = || TransportError::BadPin {
        pin: pin.to_owned(),
    };
    let b64 = pin.strip_prefix("sha256//").ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// The pin of a DER certificate: SHA-256 of its SubjectPublicKeyInfo, as `sha256//BASE64`.
pub fn pin_of(cert_der: &[u8]) -> Option<String> {
    spki_digest(cert_der).map(|d| {
        format!(
            "sha256//{}",
            base64::engine::general_purpose::STANDARD.encode(d)
        )
    })
}

fn spki_digest(cert_der: &[u8]) -> Option<[u8; 32]> {
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
    Some(Sha256::digest(&spki).into())
}

#[derive(Debug)]
struct PinVerifier {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match spki_digest(end_entity) {
            Some(d) if self.pins.contains(&d) => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::General(
                "the server's key does not match the pinned key".into(),
            )),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls client configuration for `trust`, offering HTTP/2 and HTTP/1.1.
pub fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match trust {
        Trust::Pins(pins) => {
            let pins = pins
                .iter()
                .map(|p| parse_pin(p))
                .collect::<Result<Vec<_>, _>>()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier { pins, provider }))
                .with_no_client_auth()
        }
        Trust::Ca(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TransportError::Ca(e.to_string()))?;
                roots.add(cert)?;
            }
            if roots.is_empty() {
                return Err(TransportError::EmptyCa);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client that trusts only `trust`, with connect and request time-outs. Long-polls
/// pass their own, longer time-out per request.
pub fn client(trust: &Trust, request_timeout: Duration) -> Result<reqwest::Client, TransportError> {
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(trust)?)
        .connect_timeout(Duration::from_secs(10))
        .timeout(request_timeout)
        .user_agent(concat!("postwarden/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_bad_ones_are_named() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pin = pin_of(cert.cert.der()).unwrap();
        assert!(parse_pin(&pin).is_ok());
        for bad in ["sha256//", "sha1//AAAA", "sha256//AAAA", "nonsense"] {
            let err = parse_pin(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(pin_of(b"not a certificate").is_none());
    }

    #[test]
    fn the_verifier_accepts_only_the_pinned_key() {
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let verifier = PinVerifier {
            pins: vec![parse_pin(&pin_of(a.cert.der()).unwrap()).unwrap()],
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        assert!(verifier
            .verify_server_cert(a.cert.der(), &[], &name, &[], now)
            .is_ok());
        assert!(verifier
            .verify_server_cert(b.cert.der(), &[], &name, &[], now)
            .is_err());
    }

    #[test]
    fn an_empty_ca_file_is_refused() {
        assert!(matches!(
            tls_config(&Trust::Ca(b"no pem here".to_vec())),
            Err(TransportError::EmptyCa)
        ));
    }
}
