//! Signing a [`BundlePayload`] on the server and verifying it on the agent.
//!
//! The agent trusts a bundle only when all of these hold: the JWS verifies with the key it
//! pinned at enrollment, the payload is a `postwarden.bundle/v1`, it names this device (a bundle
//! for another device must not be replayed here), and its serial is not lower than the bundle the
//! agent already has (an old bundle must not roll a profile back). An equal serial is the same
//! bundle fetched again and is accepted.

use serde::Deserialize;
use thiserror::Error;

use crate::jws::{self, Jwk, JwsError, SigningKey};
use crate::v1::{BundlePayload, BUNDLE_SCHEMA};

/// Why a bundle was refused.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("bundle signature or format: {0}")]
    Jws(#[from] JwsError),
    /// serde_json's message names the field and the line and column.
    #[error("bundle payload is not a valid {BUNDLE_SCHEMA}: {0}")]
    Payload(#[source] serde_json::Error),
    #[error("bundle schema is {found}, this agent reads {BUNDLE_SCHEMA:?}")]
    Schema {
        /// The `schema` member as JSON text.
        found: String,
    },
    #[error("bundle is for device {found:?}, not this device {expected:?}")]
    WrongDevice { found: String, expected: String },
    #[error("bundle serial {serial} is older than the cached serial {cached}")]
    OlderSerial { serial: u64, cached: u64 },
}

/// Signs a bundle payload as a compact JWS (see [`jws::sign`]).
pub fn sign_bundle(payload: &BundlePayload, key: &SigningKey) -> String {
    let json = serde_json::to_vec(payload).expect("a bundle payload serializes");
    jws::sign(&json, key)
}

/// Verifies a signed bundle for the device `expected_device`. `min_serial` is the serial of the
/// bundle the agent already has, if any.
pub fn verify_bundle(
    compact: &str,
    trusted: &Jwk,
    expected_device: &str,
    min_serial: Option<u64>,
) -> Result<BundlePayload, BundleError> {
    let json = jws::verify(compact, trusted)?;
    check_schema(&json)?;
    let payload: BundlePayload = serde_json::from_slice(&json).map_err(BundleError::Payload)?;
    if payload.device.as_str() != expected_device {
        return Err(BundleError::WrongDevice {
            found: payload.device.0,
            expected: expected_device.to_owned(),
        });
    }
    if let Some(cached) = min_serial.filter(|cached| payload.serial < *cached) {
        return Err(BundleError::OlderSerial {
            serial: payload.serial,
            cached,
        });
    }
    Ok(payload)
}

/// Reads only `schema` first: a bundle of another version has other fields, and "wrong schema"
/// is the error that helps, not the first field this version does not know.
fn check_schema(json: &[u8]) -> Result<(), BundleError> {
    #[derive(Deserialize)]
    struct SchemaOnly {
        schema: serde_json::Value,
    }
    // Anything without a readable `schema` is left to the full parse, which says what is wrong.
    if let Ok(SchemaOnly { schema }) = serde_json::from_slice(json) {
        if schema.as_str() != Some(BUNDLE_SCHEMA) {
            return Err(BundleError::Schema {
                found: schema.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
