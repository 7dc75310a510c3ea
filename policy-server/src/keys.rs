//! The data directory and the server's two keys: the TLS certificate agents pin, and the Ed25519
//! key that signs profile bundles.
//!
//! First start creates both in the data directory (0700), each file 0600, written atomically
//! (temporary file, fsync, rename), so a crash never leaves half a key. Later starts load them.
//! Replicas share them: `postwarden-server init` on one machine, then copy the files, or point
//! every replica at the same `--signing-key`, `--tls-cert` and `--tls-key`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use der::{Decode, Encode};
use postwarden_wire::{Jwk, SigningKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The signing key's file name in the data directory (a private JWK, RFC 8037).
pub const SIGNING_KEY_FILE: &str = "signing-key.jwk";
/// The TLS certificate's file name in the data directory (PEM).
pub const TLS_CERT_FILE: &str = "tls-cert.pem";
/// The TLS private key's file name in the data directory (PEM, PKCS#8).
pub const TLS_KEY_FILE: &str = "tls-key.pem";

/// Creates the data directory (0700) if it is missing. An existing directory is kept as it is,
/// but a group- or world-readable one is refused: it holds the signing key.
pub fn ensure_data_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), "created the data directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the data directory {} is accessible to other users (mode {:o}); it holds the \
                 signing key: run `chmod 700 {}`",
                dir.display(),
                mode & 0o777,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file beside it, fsync, rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            d.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })
}

/// Loads the profile-signing key from `path`, or creates it there when `create` and it is absent.
pub fn load_or_create_signing_key(path: &Path, create: bool) -> Result<SigningKey> {
    match fs::read_to_string(path) {
        Ok(text) => SigningKey::from_private_jwk_json(&text)
            .with_context(|| format!("{}: not an Ed25519 private JWK", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).context("the operating system's random source")?;
            let key = SigningKey::from_seed(&seed);
            seed.fill(0);
            write_private(path, key.to_private_jwk_json().as_bytes())?;
            tracing::warn!(
                file = %path.display(),
                kid = %key.public_jwk().thumbprint(),
                "created a new profile-signing key: agents enrolled with another key will refuse \
                 bundles signed by it; replicas must share this file"
            );
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading the signing key {}", path.display())),
    }
}

/// The TLS identity the server presents, and its pin.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// `sha256//BASE64` of the leaf's SubjectPublicKeyInfo (curl's `--pinnedpubkey` format).
    pub pin: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .field("pin", &self.pin)
            .finish()
    }
}

/// Where the TLS certificate and key come from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// The data directory's own pair, created self-signed on first start with these extra SANs.
    DataDir {
        dir: PathBuf,
        extra_sans: Vec<String>,
    },
    /// An administrator's certificate chain and key (PEM files).
    Files { cert: PathBuf, key: PathBuf },
}

/// Loads the TLS identity, creating the self-signed pair in the data directory if needed.
pub fn load_tls(source: &TlsSource) -> Result<TlsIdentity> {
    let (cert_path, key_path) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::DataDir { dir, extra_sans } => {
            let cert = dir.join(TLS_CERT_FILE);
            let key = dir.join(TLS_KEY_FILE);
            if !cert.exists() && !key.exists() {
                create_self_signed(&cert, &key, extra_sans)?;
            }
            (cert, key)
        }
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert_path.display()))?;
    let Some(leaf) = chain.first() else {
        bail!("{}: no certificate in the file", cert_path.display());
    };
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
    let pin = spki_pin(leaf).with_context(|| format!("{}", cert_path.display()))?;
    Ok(TlsIdentity { chain, key, pin })
}

/// The curl-format pin (`sha256//BASE64`) of a certificate's SubjectPublicKeyInfo.
pub fn spki_pin(cert_der: &[u8]) -> Result<String> {
    let cert = x509_cert::Certificate::from_der(cert_der).context("not an X.509 certificate")?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .context("encoding the SubjectPublicKeyInfo")?;
    let digest = Sha256::digest(&spki);
    Ok(format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    ))
}

fn create_self_signed(cert_path: &Path, key_path: &Path, extra_sans: &[String]) -> Result<()> {
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Ok(host) = gethostname::gethostname().into_string() {
        if !host.is_empty() {
            sans.push(host);
        }
    }
    for san in extra_sans {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    let mut params = rcgen::CertificateParams::new(sans.clone())
        .with_context(|| format!("TLS subject alternative names {sans:?}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Postwarden policy server");
    let key = rcgen::KeyPair::generate().context("generating the TLS key")?;
    let cert = params
        .self_signed(&key)
        .context("self-signing the TLS certificate")?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), ?sans, "created a self-signed TLS certificate");
    Ok(())
}

/// The public JWK as JSON text (what `/api/v1/signing-key` serves and the ready file holds).
pub fn jwk_json(jwk: &Jwk) -> serde_json::Value {
    serde_json::to_value(jwk).expect("a JWK serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_the_hash_of_the_spki_and_creation_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        ensure_data_dir(&data).unwrap();
        let source = TlsSource::DataDir {
            dir: data.clone(),
            extra_sans: vec!["pw.example.org".into()],
        };
        let first = load_tls(&source).unwrap();
        let again = load_tls(&source).unwrap();
        assert_eq!(
            first.pin, again.pin,
            "the second start loads, not recreates"
        );
        assert!(first.pin.starts_with("sha256//"));
        assert_eq!(first.pin.len(), "sha256//".len() + 44);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [TLS_CERT_FILE, TLS_KEY_FILE] {
                let mode = fs::metadata(data.join(f)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
            let mode = fs::metadata(&data).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let pem = fs::read_to_string(data.join(TLS_CERT_FILE)).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let needle = b"pw.example.org";
        assert!(
            der.windows(needle.len()).any(|w| w == needle),
            "the extra SAN is in the certificate"
        );
    }

    #[test]
    fn the_signing_key_survives_a_restart_and_a_corrupt_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        assert!(load_or_create_signing_key(&path, false).is_err());
        let a = load_or_create_signing_key(&path, true).unwrap();
        let b = load_or_create_signing_key(&path, true).unwrap();
        assert_eq!(a.public_jwk(), b.public_jwk());
        fs::write(&path, "{not json").unwrap();
        let err = load_or_create_signing_key(&path, true).unwrap_err();
        assert!(format!("{err:#}").contains(SIGNING_KEY_FILE), "{err:#}");
    }

    #[test]
    fn an_open_data_dir_is_refused() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let err = ensure_data_dir(dir.path()).unwrap_err();
            assert!(err.to_string().contains("chmod 700"), "{err}");
        }
    }
}
