//! Tokens and credentials: 256 random bits (supplied by the caller, who owns the random source),
//! base64url, with a prefix per kind so secret scanners recognise a leaked one. The database
//! stores only the SHA-256 of the whole text: the secrets have full entropy, so a slow KDF would
//! add cost per request and no protection.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// What a secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An administrator's API token (`pwa_`).
    Admin,
    /// A device enrollment token (`pwe_`).
    Enrollment,
    /// A device's credential (`pwd_`).
    Device,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::Admin => "pwa_",
            SecretKind::Enrollment => "pwe_",
            SecretKind::Device => "pwd_",
        }
    }
}

/// The length of the base64url text of 32 bytes without padding.
const BODY_LEN: usize = 43;

/// A secret of `kind` from 32 random bytes.
pub fn format(kind: SecretKind, random: [u8; 32]) -> String {
    let mut s = String::with_capacity(4 + BODY_LEN);
    s.push_str(kind.prefix());
    URL_SAFE_NO_PAD.encode_string(random, &mut s);
    s
}

/// Lower-case hex SHA-256 of the secret's text: what is stored and looked up.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `token` has the shape of a secret of `kind`, checked before any lookup.
pub fn well_formed(kind: SecretKind, token: &str) -> bool {
    token.strip_prefix(kind.prefix()).is_some_and(|body| {
        body.len() == BODY_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A non-secret id: `prefix` then lowercase base32 (RFC 4648 alphabet, no padding) of 16 random
/// bytes, 26 characters.
pub fn id(prefix: &str, random: [u8; 16]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    let value = u128::from_be_bytes(random);
    // 26 groups of 5 bits cover 130 bits: the top two are zero.
    for i in (0..26).rev() {
        let index = ((value >> (i * 5)) & 31) as usize;
        out.push(char::from(ALPHABET[index]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{check, NameKind};

    #[test]
    fn secrets_have_their_prefix_and_shape() {
        let t = format(SecretKind::Device, [7; 32]);
        assert!(t.starts_with("pwd_"));
        assert_eq!(t.len(), 4 + 43);
        assert!(well_formed(SecretKind::Device, &t));
        assert!(!well_formed(SecretKind::Admin, &t), "kinds do not mix");
        assert!(!well_formed(SecretKind::Device, &t[..t.len() - 1]));
        assert!(!well_formed(SecretKind::Device, &format!("{t}x")));
        assert!(!well_formed(
            SecretKind::Device,
            "pwd_ with spaces and more than forty chars"
        ));
        assert_ne!(
            format(SecretKind::Device, [7; 32]),
            format(SecretKind::Device, [8; 32])
        );
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ids_are_valid_device_ids_and_distinct() {
        let a = id("dev_", [0; 16]);
        let b = id("dev_", [255; 16]);
        assert_eq!(a, "dev_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_ne!(a, b);
        for x in [&a, &b, &id("enr_", [0x5a; 16])] {
            check(NameKind::DeviceId, "id", x).unwrap();
        }
    }
}
