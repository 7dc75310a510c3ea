//! Strict TOML parsing of profiles. Unknown keys, wrong types and out-of-range values are errors
//! that name the file, line, column and field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::Spanned;

use crate::model::*;
use crate::template::Template;
use crate::thunderbird_rules::policy_pref_refusal;

/// The profile file format this build reads (`format = 1`, the default).
pub const FORMAT_VERSION: i64 = 1;

/// A profile that could not be parsed or validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The dotted path of the offending field, e.g. `controls.require-tls.value.minimum`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProfileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    format: Option<Spanned<i64>>,
    id: Spanned<String>,
    version: Spanned<i64>,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    controls: BTreeMap<Spanned<String>, RawControl>,
    #[serde(default)]
    raw: Option<RawSection>,
    #[serde(default)]
    account: Option<RawAccount>,
    #[serde(default)]
    agent: Option<RawAgent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    #[serde(default)]
    notify_user: Option<bool>,
    #[serde(default)]
    notify_interval: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    #[serde(rename = "type")]
    account_type: Spanned<String>,
    incoming_host: Spanned<String>,
    outgoing_host: Spanned<String>,
    #[serde(default)]
    incoming_port: Option<Spanned<String>>,
    #[serde(default)]
    outgoing_port: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    title: String,
    severity: Severity,
    rationale: String,
    reference: String,
    remediation: String,
    #[serde(default)]
    mode: Option<Mode>,
    value: Spanned<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    #[serde(default)]
    thunderbird: Option<RawThunderbird>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThunderbird {
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    severity: Option<Severity>,
    prefs: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinutesValue {
    minutes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtensionsValue {
    extensions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsValue {
    minimum: TlsMinimum,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeValue {
    warning_percent: u8,
    warning_mb: u32,
    maximum_mb: u32,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before[nl + 1..].chars().count()
        }) + 1;
        (line, column)
    }

    fn error(
        &self,
        offset: usize,
        field: Option<String>,
        message: impl Into<String>,
    ) -> ProfileError {
        let (line, column) = self.position(offset);
        ProfileError {
            file: self.file.to_owned(),
            line,
            column,
            field,
            message: message.into(),
        }
    }

    /// The dotted key path in force at `offset`: the last `[table]` header above it plus the
    /// key on its own line. Used to name the field of errors the TOML parser reports by span.
    fn field_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = self.text[line_start..line_end].trim();
        let header = |l: &str| {
            let l = l.trim();
            (l.starts_with('[') && l.ends_with(']')).then(|| {
                l.trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .replace('"', "")
            })
        };
        if let Some(h) = header(line) {
            return Some(h);
        }
        let table = self.text[..line_start].lines().rev().find_map(header);
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty() && !k.starts_with('#'));
        match (table, key) {
            (Some(t), Some(k)) => Some(format!("{t}.{k}")),
            (None, Some(k)) => Some(k),
            (Some(t), None) => Some(t),
            (None, None) => None,
        }
    }

    fn typed<T: DeserializeOwned>(
        &self,
        value: &Spanned<toml::Value>,
        field: &str,
        expected: &str,
    ) -> Result<T, ProfileError> {
        value.get_ref().clone().try_into::<T>().map_err(|e| {
            self.error(
                value.span().start,
                Some(field.to_owned()),
                format!("{} (expected {expected})", e.message().trim()),
            )
        })
    }
}

impl Profile {
    /// Parses and validates a profile. `file` is only used to name the source in errors.
    pub fn parse(file: &str, text: &str) -> Result<Profile, ProfileError> {
        let ctx = Ctx { file, text };
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            // The toml crate gives no message for some syntax errors (a key without a value, a
            // lone carriage return, a NUL in a comment): never show an empty one.
            let message = match e.message().trim() {
                "" => "not valid TOML here (a value, quote or bracket is missing, or a control \
                       character is in the way)"
                    .to_owned(),
                m => m.to_owned(),
            };
            ctx.error(offset, ctx.field_at(offset), message)
        })?;

        if let Some(format) = &raw.format {
            if *format.get_ref() != FORMAT_VERSION {
                return Err(ctx.error(
                    format.span().start,
                    Some("format".into()),
                    format!(
                        "unsupported profile format {}; this agent reads format {FORMAT_VERSION}",
                        format.get_ref()
                    ),
                ));
            }
        }
        let version = *raw.version.get_ref();
        let version = u32::try_from(version)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                ctx.error(
                    raw.version.span().start,
                    Some("version".into()),
                    format!("version must be a whole number of at least 1, got {version}"),
                )
            })?;
        let id = raw.id.get_ref();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(ctx.error(
                raw.id.span().start,
                Some("id".into()),
                format!("profile id {id:?} must be non-empty and use only letters, digits, '-', '.', '_'"),
            ));
        }
        let default_mode = raw.mode.unwrap_or(Mode::Enforce);

        let mut controls = Vec::with_capacity(raw.controls.len());
        for (name, control) in raw.controls {
            let id = ControlId::from_name(name.get_ref()).ok_or_else(|| {
                ctx.error(
                    name.span().start,
                    Some(format!("controls.{}", name.get_ref())),
                    format!(
                        "unknown control `{}`; known controls: {}",
                        name.get_ref(),
                        ControlId::ALL
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let field = format!("controls.{id}.value");
            let value = control_value(&ctx, id, &control.value, &field)?;
            let (line, column) = ctx.position(control.value.span().start);
            controls.push(Control {
                id,
                title: control.title,
                severity: control.severity,
                rationale: control.rationale,
                reference: control.reference,
                remediation: control.remediation,
                mode: control.mode.unwrap_or(default_mode),
                value,
                origin: format!("{file}:{line}:{column}"),
            });
        }
        controls.sort_by_key(|c| c.id);

        let raw_thunderbird = match raw.raw.and_then(|r| r.thunderbird) {
            None => None,
            Some(tb) => Some(raw_prefs(&ctx, tb, default_mode)?),
        };

        let account = raw.account.map(|a| account(&ctx, a)).transpose()?;
        let agent = match raw.agent {
            None => AgentSettings::default(),
            Some(a) => agent_settings(&ctx, a)?,
        };

        Ok(Profile {
            id: ProfileId(raw.id.into_inner()),
            version: ProfileVersion(version),
            title: raw.title,
            description: raw.description,
            mode: default_mode,
            controls,
            raw_thunderbird,
            account,
            agent,
            source: file.to_owned(),
        })
    }
}

fn agent_settings(ctx: &Ctx<'_>, raw: RawAgent) -> Result<AgentSettings, ProfileError> {
    let defaults = AgentSettings::default();
    let notify_interval_secs = match raw.notify_interval {
        None => defaults.notify_interval_secs,
        Some(v) => {
            let secs = *v.get_ref();
            u32::try_from(secs)
                .ok()
                .filter(|s| (10..=86_400).contains(s))
                .ok_or_else(|| {
                    ctx.error(
                        v.span().start,
                        Some("agent.notify_interval".to_owned()),
                        format!("{secs}: expected seconds between 10 and 86400"),
                    )
                })?
        }
    };
    Ok(AgentSettings {
        notify_user: raw.notify_user.unwrap_or(defaults.notify_user),
        notify_interval_secs,
    })
}

fn account(ctx: &Ctx<'_>, raw: RawAccount) -> Result<MailAccount, ProfileError> {
    let field =
        |value: Spanned<String>, name: &'static str| -> Result<AccountField, ProfileError> {
            let template = Template::parse(value.get_ref())
                .map_err(|e| ctx.error(value.span().start, Some(name.to_owned()), e.to_string()))?;
            let (line, column) = ctx.position(value.span().start);
            Ok(AccountField {
                template,
                origin: format!("{}:{line}:{column}", ctx.file),
                field: name,
            })
        };
    Ok(MailAccount {
        account_type: field(raw.account_type, "account.type")?,
        incoming_host: field(raw.incoming_host, "account.incoming_host")?,
        outgoing_host: field(raw.outgoing_host, "account.outgoing_host")?,
        incoming_port: raw
            .incoming_port
            .map(|v| field(v, "account.incoming_port"))
            .transpose()?,
        outgoing_port: raw
            .outgoing_port
            .map(|v| field(v, "account.outgoing_port"))
            .transpose()?,
    })
}

fn must_be_true(
    ctx: &Ctx<'_>,
    value: &Spanned<toml::Value>,
    field: &str,
) -> Result<(), ProfileError> {
    let v: bool = ctx.typed(value, field, "true")?;
    if v {
        Ok(())
    } else {
        Err(ctx.error(
            value.span().start,
            Some(field.to_owned()),
            "this control can only be `true`; remove the control to stop enforcing it",
        ))
    }
}

fn extensions(
    ctx: &Ctx<'_>,
    value: &Spanned<toml::Value>,
    field: &str,
) -> Result<Vec<Extension>, ProfileError> {
    let v: ExtensionsValue =
        ctx.typed(value, field, "a table `{ extensions = [\"exe\", ...] }`")?;
    if v.extensions.is_empty() {
        return Err(ctx.error(
            value.span().start,
            Some(format!("{field}.extensions")),
            "the list of extensions is empty",
        ));
    }
    let mut out = Vec::with_capacity(v.extensions.len());
    for ext in v.extensions {
        let norm = ext
            .trim()
            .trim_start_matches('*')
            .trim_start_matches('.')
            .to_ascii_lowercase();
        if norm.is_empty() || !norm.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ctx.error(
                value.span().start,
                Some(format!("{field}.extensions")),
                format!(
                    "{ext:?} is not a file extension (write it as \"exe\", \".exe\" or \"*.exe\")"
                ),
            ));
        }
        if !out.iter().any(|e: &Extension| e.0 == norm) {
            out.push(Extension(norm));
        }
    }
    Ok(out)
}

fn control_value(
    ctx: &Ctx<'_>,
    id: ControlId,
    value: &Spanned<toml::Value>,
    field: &str,
) -> Result<ControlValue, ProfileError> {
    let at = value.span().start;
    Ok(match id {
        ControlId::ReplyAddress => {
            let s: String = ctx.typed(value, field, "a string such as \"{{ user.email }}\"")?;
            let t = Template::parse(&s)
                .map_err(|e| ctx.error(at, Some(field.to_owned()), e.to_string()))?;
            if t.variables().next().is_none() && !s.contains('@') {
                return Err(ctx.error(
                    at,
                    Some(field.to_owned()),
                    format!(
                        "{s:?} is not a mail address or a template such as {{{{ user.email }}}}"
                    ),
                ));
            }
            ControlValue::ReplyAddress(t)
        }
        ControlId::MailCheckInterval => {
            let v: MinutesValue = ctx.typed(value, field, "a table `{ minutes = 30 }`")?;
            // 1 is refused: Thunderbird's policy engine stores the integer 1 as a boolean for a
            // per-server pref (which has no default), leaving the lock without a value.
            if !(2..=1440).contains(&v.minutes) {
                return Err(ctx.error(
                    at,
                    Some(format!("{field}.minutes")),
                    format!(
                        "{} minutes is out of range (2 to 1440; 1 cannot be locked in \
                         Thunderbird, whose policy engine reads it as a boolean)",
                        v.minutes
                    ),
                ));
            }
            ControlValue::MailCheckInterval { minutes: v.minutes }
        }
        ControlId::PopDeleteAfterFetch => {
            ControlValue::PopDeleteAfterFetch(ctx.typed(value, field, "true or false")?)
        }
        ControlId::NoSavedPasswords => {
            must_be_true(ctx, value, field)?;
            ControlValue::NoSavedPasswords
        }
        ControlId::AttachmentScanning => {
            must_be_true(ctx, value, field)?;
            ControlValue::AttachmentScanning
        }
        ControlId::AttachmentsSaveBeforeOpen => ControlValue::AttachmentsSaveBeforeOpen {
            extensions: extensions(ctx, value, field)?,
        },
        ControlId::BlockedAttachmentTypes => ControlValue::BlockedAttachmentTypes {
            extensions: extensions(ctx, value, field)?,
        },
        ControlId::RequireTls => {
            let v: TlsValue = ctx.typed(
                value,
                field,
                "a table `{ minimum = \"starttls\" }` or `{ minimum = \"tls\" }`",
            )?;
            ControlValue::RequireTls { minimum: v.minimum }
        }
        ControlId::RequireSmtpAuth => {
            must_be_true(ctx, value, field)?;
            ControlValue::RequireSmtpAuth
        }
        ControlId::MailboxSizeLimit => {
            let v: SizeValue = ctx.typed(
                value,
                field,
                "a table `{ warning_percent = 90, warning_mb = 9000, maximum_mb = 10000 }`",
            )?;
            if !(2..=100).contains(&v.warning_percent) {
                return Err(ctx.error(
                    at,
                    Some(format!("{field}.warning_percent")),
                    format!("{} is out of range (2 to 100)", v.warning_percent),
                ));
            }
            if v.warning_mb == 0 || v.warning_mb >= v.maximum_mb {
                return Err(ctx.error(
                    at,
                    Some(format!("{field}.warning_mb")),
                    format!(
                        "warning_mb ({}) must be above 0 and below maximum_mb ({})",
                        v.warning_mb, v.maximum_mb
                    ),
                ));
            }
            ControlValue::MailboxSizeLimit {
                warning_percent: v.warning_percent,
                warning_mb: v.warning_mb,
                maximum_mb: v.maximum_mb,
            }
        }
        ControlId::SettingsLocked => {
            must_be_true(ctx, value, field)?;
            ControlValue::SettingsLocked
        }
    })
}

fn raw_prefs(
    ctx: &Ctx<'_>,
    tb: RawThunderbird,
    default_mode: Mode,
) -> Result<RawPrefs, ProfileError> {
    let mut prefs = BTreeMap::new();
    for (name, value) in tb.prefs {
        let field = format!("raw.thunderbird.prefs.\"{}\"", name.get_ref());
        if let Some(why) = policy_pref_refusal(name.get_ref()) {
            return Err(ctx.error(name.span().start, Some(field), why));
        }
        let v = match value.get_ref() {
            toml::Value::Boolean(b) => RawValue::Bool(*b),
            toml::Value::Integer(i @ (0 | 1)) => {
                return Err(ctx.error(
                    value.span().start,
                    Some(field),
                    format!(
                        "integer {i} is ambiguous: Thunderbird's policy engine stores 0 and 1 as a \
                         boolean when the pref has no default; use true/false for a boolean pref"
                    ),
                ))
            }
            toml::Value::Integer(i) => RawValue::Int(*i),
            toml::Value::String(s) => RawValue::Text(s.clone()),
            other => {
                return Err(ctx.error(
                    value.span().start,
                    Some(field),
                    format!(
                        "a pref value must be a boolean, an integer or a string, not {}",
                        other.type_str()
                    ),
                ))
            }
        };
        prefs.insert(name.into_inner(), v);
    }
    Ok(RawPrefs {
        mode: tb.mode.unwrap_or(default_mode),
        severity: tb.severity.unwrap_or(Severity::Low),
        prefs,
    })
}

#[cfg(test)]
mod tests;
