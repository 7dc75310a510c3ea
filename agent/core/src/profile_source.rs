//! Where a profile comes from on the command line: a TOML file, or `builtin:<id>`.

use std::path::Path;

use postwarden_profiles::{builtin, Profile};

use crate::error::InputError;

/// Loads a profile: `builtin:<id>` or the path of a TOML file. Errors name the file, line,
/// column and field.
pub fn load_profile(spec: &str) -> Result<Profile, InputError> {
    if let Some(id) = spec.strip_prefix("builtin:") {
        return match builtin::load(id) {
            Some(p) => Ok(p?),
            None => Err(InputError::UnknownBuiltin {
                id: id.to_owned(),
                known: builtin::names().collect::<Vec<_>>().join(", "),
            }),
        };
    }
    let text = std::fs::read_to_string(spec).map_err(|source| InputError::ProfileFile {
        path: Path::new(spec).to_path_buf(),
        source,
    })?;
    Ok(Profile::parse(spec, &text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_and_missing_profiles() {
        assert_eq!(load_profile("builtin:bsi-m5.57").unwrap().id.0, "bsi-m5.57");
        let err = load_profile("builtin:nope").unwrap_err().to_string();
        assert!(err.contains("builtin:bsi-m5.57"), "{err}");
        let err = load_profile("/does/not/exist.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("reading profile /does/not/exist.toml"),
            "{err}"
        );
    }
}
