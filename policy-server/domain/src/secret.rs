//! Tokens and credentials: 256 random bits (supplied by the caller, who owns the random source),
//! base64url, with a prefix per kind so secret scanners recognise a leaked one. The database
//! stores only the SHA-256 of the whole text: the secrets have full entropy, so a slow KDF would
//! add cost per request and no protection.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::text::hex;

/// What a secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An administrator's API token (`pwa_`).
    Admin,
    /// A device enrollment token (`pwe_`).
    Enrollment,
    /// A device's credential (`pwd_`).
    Device,
    /// A metrics scraper's token (`pwm_`): reads `/metrics` and nothing else.
    Metrics,
}

impl SecretKind {
    /// Every kind.
    pub const ALL: [SecretKind; 4] = [
        SecretKind::Admin,
        SecretKind::Enrollment,
        SecretKind::Device,
        SecretKind::Metrics,
    ];

    /// The prefix that starts every secret of this kind (`pwa_`, `pwe_`, `pwd_`, `pwm_`).
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::Admin => "pwa_",
            SecretKind::Enrollment => "pwe_",
            SecretKind::Device => "pwd_",
            SecretKind::Metrics => "pwm_",
        }
    }
}

/// The length of the base64url text of 32 bytes without padding.
const BODY_LEN: usize = 43;

/// The length of every secret's text: a 4-character prefix and 43 base64url characters.
pub const SECRET_LEN: usize = 4 + BODY_LEN;

/// A secret of `kind`: its prefix, then base64url without padding of the 32 random bytes the
/// caller supplies (the caller owns the random source).
pub fn format(kind: SecretKind, random: [u8; 32]) -> String {
    let mut s = String::with_capacity(4 + BODY_LEN);
    s.push_str(kind.prefix());
    URL_SAFE_NO_PAD.encode_string(random, &mut s);
    s
}

/// Lower-case hex SHA-256 of the whole token text (prefix included): what the database stores
/// and looks up. Any text hashes; check [`well_formed`] first to skip lookups of garbage.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of a secret of `kind` (prefix, length, alphabet): a cheap check
/// before any lookup, so garbage of any size costs nothing.
pub fn well_formed(kind: SecretKind, token: &str) -> bool {
    token.strip_prefix(kind.prefix()).is_some_and(|body| {
        body.len() == BODY_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A short id for a non-secret handle (device id `dev_…`, enrollment token id `enr_…`): `prefix`
/// then lowercase base32 (RFC 4648 alphabet, no padding) of the 16 random bytes supplied, 26
/// characters. [`crate::names::check_id`] checks the shape.
pub fn id(prefix: &str, random: [u8; 16]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    let value = u128::from_be_bytes(random);
    // 26 groups of 5 bits cover 130 bits: the top two are zero.
    for i in (0..26).rev() {
        let index = usize::try_from((value >> (i * 5)) & 31).unwrap_or(0);
        out.push(char::from(ALPHABET[index]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{check, check_id, NameKind};
    use proptest::prelude::*;

    #[test]
    fn secrets_have_their_prefix_and_shape() {
        let t = format(SecretKind::Device, [7; 32]);
        assert!(t.starts_with("pwd_"));
        assert_eq!(t.len(), SECRET_LEN);
        assert!(well_formed(SecretKind::Device, &t));
        assert!(!well_formed(SecretKind::Admin, &t), "kinds do not mix");
        assert!(!well_formed(SecretKind::Enrollment, &t), "kinds do not mix");
        assert!(!well_formed(SecretKind::Metrics, &t), "kinds do not mix");
        // A metrics token is no admin token, and no admin token is a metrics token.
        let m = format(SecretKind::Metrics, [7; 32]);
        assert!(m.starts_with("pwm_") && well_formed(SecretKind::Metrics, &m));
        assert!(!well_formed(SecretKind::Admin, &m));
        assert!(!well_formed(
            SecretKind::Metrics,
            &format(SecretKind::Admin, [7; 32])
        ));
        assert!(!well_formed(SecretKind::Device, &t[..t.len() - 1]));
        assert!(!well_formed(SecretKind::Device, &format!("{t}x")));
        assert_eq!(
            format(SecretKind::Admin, [0; 32]),
            format!("pwa_{}", "A".repeat(43))
        );
        assert_eq!(
            format(SecretKind::Enrollment, [0xff; 32]),
            format!("pwe_{}8", "_".repeat(42))
        );
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_lookup() {
        let good = format(SecretKind::Admin, [42; 32]);
        let body = &good[4..];
        for bad in [
            String::new(),
            "pwa_".to_owned(),
            format!("PWA_{body}"),
            format!("pwa_{}", &body[1..]),
            format!("pwa_{}\0", &body[1..]),
            format!("pwa_{}=", &body[1..]),
            format!("pwa_{}+", &body[1..]),
            format!("pwa_{}/", &body[1..]),
            format!("pwa_{}é", &body[2..]),
            format!(" {good}"),
            format!("Bearer {good}"),
            format!("pwa_{}", "A".repeat(1_000_000)),
            format!("pwa_../{}", &body[3..]),
        ] {
            assert!(!well_formed(SecretKind::Admin, &bad), "{bad:.60}");
        }
    }

    #[test]
    fn the_hash_is_sha256_hex_of_the_whole_text() {
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // SHA-256(""), FIPS 180-2.
        assert_eq!(
            hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The prefix is part of what is hashed: the same random bytes of two kinds differ.
        assert_ne!(
            hash(&format(SecretKind::Admin, [1; 32])),
            hash(&format(SecretKind::Device, [1; 32]))
        );
    }

    #[test]
    fn ids_are_base32_of_their_bytes() {
        assert_eq!(id("dev_", [0; 16]), "dev_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        // 128 one-bits in 26 × 5 = 130: the top two bits are zero, so the first character is
        // `h` (7), the others `7` (31).
        assert_eq!(id("dev_", [255; 16]), format!("dev_h{}", "7".repeat(25)));
        let mut one = [0; 16];
        one[15] = 1;
        assert_eq!(id("enr_", one), "enr_aaaaaaaaaaaaaaaaaaaaaaaaab");
        for x in [
            id("dev_", [0; 16]),
            id("dev_", [255; 16]),
            id("dev_", [0x5a; 16]),
        ] {
            check(NameKind::DeviceId, "id", &x).unwrap();
        }
        check_id("enr_", "id", &id("enr_", [9; 16])).unwrap();
    }

    /// Decodes an id's 26 base32 characters back into its 16 bytes.
    fn decode_id(body: &str) -> Option<[u8; 16]> {
        let mut value: u128 = 0;
        for c in body.bytes() {
            let digit = match c {
                b'a'..=b'z' => c - b'a',
                b'2'..=b'7' => c - b'2' + 26,
                _ => return None,
            };
            value = value.checked_mul(32)?.checked_add(u128::from(digit))?;
        }
        Some(value.to_be_bytes())
    }

    proptest! {
        #[test]
        fn every_formatted_secret_is_well_formed_and_carries_its_bytes(random in any::<[u8; 32]>()) {
            for kind in SecretKind::ALL {
                let t = format(kind, random);
                prop_assert!(well_formed(kind, &t));
                prop_assert_eq!(t.len(), SECRET_LEN);
                let bytes = URL_SAFE_NO_PAD.decode(&t[4..]).unwrap();
                prop_assert_eq!(bytes.as_slice(), random.as_slice());
            }
        }

        #[test]
        fn ids_are_valid_and_decode_to_their_bytes(random in any::<[u8; 16]>()) {
            let x = id("dev_", random);
            prop_assert!(check(NameKind::DeviceId, "id", &x).is_ok());
            prop_assert_eq!(decode_id(&x[4..]), Some(random));
        }
    }
}
