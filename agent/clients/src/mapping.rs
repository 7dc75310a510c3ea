//! What every client mapping produces, the one way a mapping can fail, and the toolkit the
//! three client mappings share. Pure.
//!
//! - [`Builder`]: collects one control's desired settings and not-applicable findings for one
//!   client; every note is passed explicitly where the setting is wanted.
//! - [`derive_locks`]: the `settings-locked` rule, with each client's idea of what a lock covers.
//! - [`tls_expectation`]: the "accept STARTTLS or implicit TLS, repair by port" rule.
//! - [`extension_globs`]: how not-applicable reasons list attachment types.
//! - [`render`], [`check_templates`]: templates, and refusing a bad variable up front.

use std::sync::Arc;

use postwarden_engine::{Desired, Expect, NotApplicable, Value};
use postwarden_profiles::report::Client;
use postwarden_profiles::{
    Control, ControlId, ControlValue, Extension, Mode, Profile, Template, TlsMinimum, Vars,
};

/// One client's desired settings for a profile, and the controls it cannot carry with the
/// reason. `L` is the client's location type.
#[derive(Debug)]
pub struct Mapped<L> {
    pub desired: Vec<Desired<L>>,
    pub not_applicable: Vec<NotApplicable>,
}

impl<L> Default for Mapped<L> {
    fn default() -> Self {
        Mapped {
            desired: Vec::new(),
            not_applicable: Vec::new(),
        }
    }
}

/// A control whose template could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: field `controls.{control}.value`: {message}")]
pub struct MappingError {
    pub origin: String,
    pub control: ControlId,
    pub message: String,
}

/// Adds what one control (or a client's raw settings) wants of one client, under one scope,
/// to a [`Mapped`]: the control's id and mode, the client and the scope are given once, the
/// rest per setting.
#[derive(Debug)]
pub struct Builder<'a, L> {
    out: &'a mut Mapped<L>,
    /// The control's id, or `raw.<client>` for raw settings.
    control: &'static str,
    mode: Mode,
    client: Client,
    /// Shared by every setting the builder adds.
    scope: Arc<str>,
}

impl<'a, L> Builder<'a, L> {
    /// For `control`'s settings in `client`; findings name `scope` (a profile directory, a
    /// registry key, a home) unless [`Builder::at`] names another.
    pub fn new(out: &'a mut Mapped<L>, control: &Control, client: Client, scope: &str) -> Self {
        Builder {
            out,
            control: control.id.as_str(),
            mode: control.mode,
            client,
            scope: scope.into(),
        }
    }

    /// For settings outside the named controls (`raw.thunderbird`), which carry their own mode.
    pub fn raw(
        out: &'a mut Mapped<L>,
        id: &'static str,
        mode: Mode,
        client: Client,
        scope: &str,
    ) -> Self {
        Builder {
            out,
            control: id,
            mode,
            client,
            scope: scope.into(),
        }
    }

    /// The same control and client under another scope.
    pub fn at<'b>(&'b mut self, scope: &str) -> Builder<'b, L> {
        Builder {
            out: &mut *self.out,
            control: self.control,
            mode: self.mode,
            client: self.client,
            scope: scope.into(),
        }
    }

    /// The control wants `expect` at `location`. `target` names the object it concerns (an
    /// account, a server, the profile); `note` is what the report adds, e.g. what the client
    /// cannot check or which name is unconfirmed.
    pub fn want(
        &mut self,
        target: impl Into<Arc<str>>,
        location: L,
        expect: Expect,
        note: Option<&str>,
    ) {
        self.out.desired.push(Desired {
            control: self.control,
            client: self.client,
            scope: Arc::clone(&self.scope),
            target: target.into(),
            location,
            expect,
            mode: self.mode,
            note: note.map(Arc::from),
        });
    }

    /// The client cannot carry the control for `target`, and why.
    pub fn not_applicable(&mut self, target: impl Into<Arc<str>>, reason: impl Into<String>) {
        self.out.not_applicable.push(NotApplicable {
            control: self.control,
            client: self.client,
            scope: Arc::clone(&self.scope),
            target: target.into(),
            reason: reason.into(),
        });
    }
}

/// `settings-locked`: when the profile has it (`lock`), every setting an enforce-mode control
/// wants and `lockable` accepts is also wanted locked, as the lock control's finding and in its
/// mode. What "locked" means is the client's: Thunderbird locks prefs, Outlook puts its account
/// values behind the UI lock (policy values are locked by where they live), Apple Mail forces
/// exact preference values through a configuration profile.
pub fn derive_locks<L: Clone>(
    out: &mut Mapped<L>,
    lock: Option<&Control>,
    lockable: impl Fn(&Desired<L>) -> bool,
    note: Option<&str>,
) {
    let Some(lock) = lock else { return };
    let note: Option<Arc<str>> = note.map(Arc::from);
    let locks: Vec<Desired<L>> = out
        .desired
        .iter()
        .filter(|d| d.mode == Mode::Enforce && lockable(d))
        .map(|d| Desired {
            control: lock.id.as_str(),
            expect: Expect::Locked,
            mode: lock.mode,
            note: note.clone(),
            ..d.clone()
        })
        .collect();
    out.desired.extend(locks);
}

/// How a client stores a connection's security: its code for STARTTLS and for implicit TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsCodes {
    pub starttls: i64,
    pub implicit: i64,
}

/// The ports on which a server speaks TLS from the first byte (RFC 8314): IMAP, POP3 and mail
/// submission. Per protocol, so a POP3 server on 993 is not taken for implicit TLS.
pub const IMAP_TLS_PORTS: &[i64] = &[993];
pub const POP3_TLS_PORTS: &[i64] = &[995];
pub const SMTP_TLS_PORTS: &[i64] = &[465];

/// `require-tls` for one connection: `starttls` accepts STARTTLS or implicit TLS, `tls` only
/// implicit TLS. Drift is repaired to implicit TLS when the minimum asks for it or the
/// connection's `port` is one of the protocol's `tls_ports`, else to STARTTLS, so the
/// connection keeps working on the port it has. The accepted codes are listed in ascending
/// order, as the report shows them.
pub fn tls_expectation(
    minimum: TlsMinimum,
    port: Option<i64>,
    tls_ports: &[i64],
    codes: TlsCodes,
) -> Expect {
    let mut accepted = match minimum {
        TlsMinimum::Starttls => vec![codes.starttls, codes.implicit],
        TlsMinimum::Tls => vec![codes.implicit],
    };
    accepted.sort_unstable();
    let on_tls_port = port.is_some_and(|p| tls_ports.contains(&p));
    let repair = if minimum == TlsMinimum::Tls || on_tls_port {
        codes.implicit
    } else {
        codes.starttls
    };
    Expect::OneOf {
        accepted: accepted.into_iter().map(Value::Int).collect(),
        repair: Value::Int(repair),
    }
}

/// `*.pif *.scr`: attachment types as the not-applicable reasons list them.
pub fn extension_globs(extensions: &[Extension]) -> String {
    extensions
        .iter()
        .map(|e| format!("*.{e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders a control's template, naming the control's value in the profile on failure.
pub fn render(control: &Control, template: &Template, vars: &Vars) -> Result<String, MappingError> {
    template.render(vars).map_err(|e| MappingError {
        origin: control.origin.clone(),
        control: control.id,
        message: e.to_string(),
    })
}

/// The template in a control's value, if the value is templated. Exhaustive on purpose: a new
/// templated value must be added here, or [`check_templates`] would let it through.
fn template_of(value: &ControlValue) -> Option<&Template> {
    match value {
        ControlValue::ReplyAddress(template) => Some(template),
        ControlValue::MailCheckInterval { .. }
        | ControlValue::PopDeleteAfterFetch(_)
        | ControlValue::NoSavedPasswords
        | ControlValue::AttachmentScanning
        | ControlValue::AttachmentsSaveBeforeOpen { .. }
        | ControlValue::BlockedAttachmentTypes { .. }
        | ControlValue::RequireTls { .. }
        | ControlValue::RequireSmtpAuth
        | ControlValue::MailboxSizeLimit { .. }
        | ControlValue::SettingsLocked => None,
    }
}

/// Renders every control template of `profile` against `vars`, so a caller can refuse a bad
/// variable before it reads or writes any client's files. The error is the one a client's
/// `map` gives: it names the control's value field, as [`render`] does. (The `[account]`
/// section is not a control: only `export --format mobileconfig` needs its variables.)
pub fn check_templates(profile: &Profile, vars: &Vars) -> Result<(), MappingError> {
    for control in &profile.controls {
        if let Some(template) = template_of(&control.value) {
            render(control, template, vars)?;
        }
    }
    Ok(())
}

/// The whole of a mapping, one line per desired setting (control | scope | target | location |
/// expectation | mode | note) and per not-applicable control (control | target | reason), for
/// snapshot tests.
#[cfg(test)]
pub(crate) fn snapshot<L: std::fmt::Display>(m: &Mapped<L>) -> String {
    use std::fmt::Write;

    let mut out = String::new();
    for d in &m.desired {
        let _ = writeln!(
            out,
            "{} | {} | {} | {} | {:?} | {} | {}",
            d.control,
            d.scope,
            d.target,
            d.location,
            d.expect,
            d.mode,
            d.note
                .as_deref()
                .map_or("-".to_owned(), |n| format!("note: {n}")),
        );
    }
    for n in &m.not_applicable {
        let _ = writeln!(out, "{} | {} | n/a: {}", n.control, n.target, n.reason);
    }
    out
}

#[cfg(test)]
mod tests;
