//! `{{ user.email }}`-style templates, resolved per user from variables.
//!
//! An unresolved variable is an error, never an empty string: a reply-to of `""` would silently
//! turn a control off.

use std::collections::BTreeMap;
use std::fmt;

/// Template variables, e.g. `user.email` → `alice@example.org`.
pub type Vars = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(String),
}

/// A string with `{{ name }}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unterminated placeholder starting at character {offset}: missing `}}}}`")]
    Unterminated { offset: usize },
    #[error("invalid variable name {name:?} at character {offset}: use dotted lower-case names such as user.email")]
    BadName { name: String, offset: usize },
    #[error("template variable `{name}` has no value (pass --var {name}=VALUE)")]
    Unresolved { name: String },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut consumed = 0;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unterminated {
                offset: consumed + start,
            })?;
            let name = after[..end].trim();
            if !valid_name(name) {
                return Err(TemplateError::BadName {
                    name: name.to_owned(),
                    offset: consumed + start,
                });
            }
            parts.push(Part::Var(name.to_owned()));
            let advance = start + 2 + end + 2;
            consumed += advance;
            rest = &rest[advance..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// The variables this template needs.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Literal(_) => None,
        })
    }

    pub fn render(&self, vars: &Vars) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(name) => match vars.get(name) {
                    Some(v) if !v.is_empty() => out.push_str(v),
                    _ => return Err(TemplateError::Unresolved { name: name.clone() }),
                },
            }
        }
        Ok(out)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_variables_and_literals() {
        let t = Template::parse("Reply to {{ user.email }} ({{user.name}})").unwrap();
        let out = t
            .render(&vars(&[("user.email", "a@x.test"), ("user.name", "A")]))
            .unwrap();
        assert_eq!(out, "Reply to a@x.test (A)");
        assert_eq!(
            t.variables().collect::<Vec<_>>(),
            ["user.email", "user.name"]
        );
    }

    #[test]
    fn unresolved_and_empty_variables_are_errors() {
        let t = Template::parse("{{ user.email }}").unwrap();
        assert_eq!(
            t.render(&Vars::new()),
            Err(TemplateError::Unresolved {
                name: "user.email".into()
            })
        );
        assert!(t.render(&vars(&[("user.email", "")])).is_err());
    }

    #[test]
    fn syntax_errors_name_the_offset() {
        assert_eq!(
            Template::parse("x {{ user.email"),
            Err(TemplateError::Unterminated { offset: 2 })
        );
        assert!(matches!(
            Template::parse("{{ User Email }}"),
            Err(TemplateError::BadName { .. })
        ));
        assert!(Template::parse("plain@example.org").is_ok());
    }
}
