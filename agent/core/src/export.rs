//! `export`: a profile's settings in another tool's format, for administrators who deploy with
//! their own tools instead of (or beside) the agent.
//!
//! - [`reg`]: Outlook's policy values as a regedit file (UTF-16LE with BOM), for Group Policy or
//!   `reg import`. Only enforce-mode controls; account values have no policy form.
//! - [`mobileconfig`]: an Apple configuration profile with the mail account and Mail's forced
//!   preferences, for MDM; optionally signed ([`sign`]).

use std::fs;
use std::path::{Path, PathBuf};

use postwarden_clients::applemail::{export as apple_export, mobileconfig as apple_profile};
use postwarden_clients::outlook::{self, export as outlook_export};
use postwarden_profiles::{Profile, Vars};

use crate::error::ExportError;
use crate::fs::write_atomic;

pub mod sign;

/// Outlook's policy part of `profile` as a `.reg` file.
/// Needs no variable: account values (the reply address) have no policy form.
pub fn reg(profile: &Profile, vars: &Vars) -> Result<Vec<u8>, ExportError> {
    let view = outlook::View {
        hive: "HKEY_CURRENT_USER",
        accounts: &[],
    };
    Ok(outlook_export::render_reg(&outlook::map(
        profile, vars, &view,
    )?))
}

/// What goes into a configuration profile beyond the Postwarden profile.
#[derive(Debug, Clone, Default)]
pub struct MobileconfigOptions {
    /// The profile's PayloadIdentifier [default: `org.postwarden.<profile id>`].
    pub identifier: Option<String>,
    /// The PayloadOrganization shown to the user.
    pub organization: Option<String>,
    /// Sign the profile (CMS) with this certificate and key.
    pub signing: Option<Signing>,
}

/// PEM files to sign a configuration profile with.
#[derive(Debug, Clone)]
pub struct Signing {
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8 or PKCS#1 RSA, SEC1 or PKCS#8 P-256).
    pub key: PathBuf,
    /// Intermediate certificates to include.
    pub chain: Option<PathBuf>,
}

fn read(path: &Path) -> Result<String, ExportError> {
    fs::read_to_string(path).map_err(|source| ExportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `profile` as an Apple configuration profile (XML, or signed CMS DER).
pub fn mobileconfig(
    profile: &Profile,
    vars: &Vars,
    options: &MobileconfigOptions,
) -> Result<Vec<u8>, ExportError> {
    let spec = apple_export::spec(
        profile,
        vars,
        options.identifier.clone(),
        options.organization.clone(),
    )?;
    let xml = apple_profile::to_xml(&apple_profile::build(&spec));
    let Some(signing) = &options.signing else {
        return Ok(xml);
    };
    let chain = signing.chain.as_deref().map(read).transpose()?;
    sign::sign(
        &xml,
        &read(&signing.cert)?,
        &read(&signing.key)?,
        chain.as_deref(),
    )
    .map_err(|source| ExportError::Sign {
        cert: signing.cert.display().to_string(),
        key: signing.key.display().to_string(),
        source,
    })
}

/// Writes an export to `path` atomically (a new file is readable by everyone: an export holds
/// no secret).
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    write_atomic(path, bytes, 0o644).map_err(|source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    })
}
