//! `mime.types` files (`/etc/mime.types`, `~/.mime.types`): on Linux, Thunderbird learns the MIME
//! type of a file extension from them, and its `Handlers` policy silently skips an extension it
//! has no type for ("Invalid file extension", measured on 153). Postwarden therefore makes sure
//! every extension it sets a handler for has a type, by adding one to the user's file.

use std::collections::BTreeSet;

/// The extensions a `mime.types` text maps to a type (lower case).
pub fn extensions(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.next().map(|_ty| words.map(str::to_ascii_lowercase))
        })
        .flatten()
        .collect()
}

/// The MIME type Postwarden gives an extension that has none: its own, so that setting a handler
/// for it touches no other file type.
pub fn type_for(ext: &str) -> String {
    format!("application/x-postwarden-{ext}")
}

/// `text` with a line added for each extension, everything else kept byte for byte.
pub fn with_types(text: &str, exts: &[String]) -> String {
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str(
            "# MIME types added by Postwarden so that Thunderbird applies its attachment policy\n",
        );
    }
    for ext in exts {
        out.push_str(&format!("{}\t\t{ext}\n", type_for(ext)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_extends() {
        let text = "# comment\napplication/x-msdos-program\t\tcom exe bat dll\napplication/hta hta # x\ntext/plain\n";
        let e = extensions(text);
        assert!(e.contains("exe") && e.contains("hta") && !e.contains("x") && !e.contains("pif"));
        let out = with_types("application/x-foo foo", &["pif".into()]);
        assert_eq!(
            out,
            "application/x-foo foo\napplication/x-postwarden-pif\t\tpif\n"
        );
        assert!(extensions(&out).contains("pif"));
        assert!(with_types("", &["vbs".into()]).starts_with("# MIME types added by Postwarden"));
    }
}
