//! Findings and the compliance report: the versioned JSON contract (`postwarden.report/v1`) and
//! its text rendering, modelled on a real mail-server audit report: ✓/✗ per item, a conclusion,
//! and recommendations by priority with remediation steps.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::model::{Profile, Severity};

/// The schema name of [`Report`]'s JSON. Bump the suffix on any incompatible change.
pub const REPORT_SCHEMA: &str = "postwarden.report/v1";

/// The outcome for one setting of one control on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The setting already had the desired value.
    Compliant,
    /// The setting was wrong and this run fixed it (verified by reading it back).
    Repaired,
    /// The setting is wrong and was not changed (audit mode, or a `check`).
    Drifted,
    /// The fix is written, but the client reads it only when it starts.
    PendingRestart,
    /// The client has no such setting; `reason` says why and what covers it instead.
    NotApplicable,
    /// The setting is wrong and could not be fixed; `reason` says why.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::Repaired => "repaired",
            Status::Drifted => "drifted",
            Status::PendingRestart => "pending_restart",
            Status::NotApplicable => "not_applicable",
            Status::Failed => "failed",
        }
    }

    /// The endpoint is in the desired state for this finding right now.
    pub fn is_satisfied(self) -> bool {
        matches!(
            self,
            Status::Compliant | Status::Repaired | Status::NotApplicable
        )
    }

    fn symbol(self) -> &'static str {
        match self {
            Status::Compliant | Status::Repaired => "✓",
            Status::Drifted | Status::Failed => "✗",
            Status::PendingRestart => "◷",
            Status::NotApplicable => "–",
        }
    }
}

/// The mail client a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    Thunderbird,
    Outlook,
    AppleMail,
}

impl Client {
    pub fn display_name(self) -> &'static str {
        match self {
            Client::Thunderbird => "Thunderbird",
            Client::Outlook => "Outlook",
            Client::AppleMail => "Apple Mail",
        }
    }
}

/// One finding. `expected` and `actual` are JSON values: a scalar for an exact value,
/// `{"one_of": [..]}` for a set of accepted values, `null` for "nothing stored / not set".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// A control id of the profile, or `raw.thunderbird` for raw prefs.
    pub control: String,
    pub client: Client,
    /// Where the target lives, e.g. the Thunderbird profile directory.
    pub scope: String,
    /// The object inside the scope: an account, a server, an identity, or `profile`.
    pub target: String,
    /// The concrete setting, e.g. `mail.server.server1.check_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    pub status: Status,
    pub expected: Json,
    pub actual: Json,
    /// The value before this run changed it (only on `repaired` and `pending_restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Json>,
    /// Whether the client's native lock holds the setting, where that is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Context an auditor needs, e.g. what the client cannot check itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A configuration layer the agent does not own decides this setting (an administrator's
    /// AutoConfig, a Group Policy, a managed profile): the evidence and the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overridden_by: Option<Override>,
}

/// A configuration layer that decides a setting over the agent's head.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The kind of layer, e.g. `AutoConfig`, `Group Policy`, `managed preferences`.
    pub layer: String,
    /// Where it is: `file:line`, a registry key and value, a profile identifier.
    pub location: String,
    /// What it does to the setting, e.g. `lockPref(..., 10)`.
    pub evidence: String,
    /// What an administrator must do so the profile's value can hold.
    pub fix: String,
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.layer, self.location, self.evidence)
    }
}

/// What kind of run produced a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Check,
    Apply,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRef {
    pub id: String,
    pub version: u32,
    pub title: String,
}

/// The report's copy of a control's metadata, so a report stands on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlSummary {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub reference: String,
    pub remediation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub run: RunKind,
    /// `true` when every finding is compliant, repaired or not applicable.
    pub compliant: bool,
    pub profile: ProfileRef,
    /// When the run happened (RFC 3339), supplied by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    pub controls: Vec<ControlSummary>,
    pub findings: Vec<Finding>,
    /// What this run could not verify, e.g. platform behaviour known only from documentation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
}

/// Metadata of the pseudo-control that groups raw Thunderbird prefs.
pub const RAW_THUNDERBIRD: &str = "raw.thunderbird";

impl Report {
    pub fn new(
        run: RunKind,
        profile: &Profile,
        findings: Vec<Finding>,
        generated_at: Option<String>,
    ) -> Report {
        let mut controls: Vec<ControlSummary> = profile
            .controls
            .iter()
            .map(|c| ControlSummary {
                id: c.id.as_str().to_owned(),
                title: c.title.clone(),
                severity: c.severity,
                reference: c.reference.clone(),
                remediation: c.remediation.clone(),
            })
            .collect();
        if let Some(raw) = &profile.raw_thunderbird {
            controls.push(ControlSummary {
                id: RAW_THUNDERBIRD.to_owned(),
                title: "Additional Thunderbird settings".to_owned(),
                severity: raw.severity,
                reference: format!("profile {}", profile.id),
                remediation:
                    "1. Set the listed Thunderbird prefs to the values the profile gives.\n\
                              2. Lock them through policies.json."
                        .to_owned(),
            });
        }
        Report {
            schema: REPORT_SCHEMA.to_owned(),
            run,
            compliant: findings.iter().all(|f| f.status.is_satisfied()),
            profile: ProfileRef {
                id: profile.id.0.clone(),
                version: profile.version.0,
                title: profile.title.clone(),
            },
            generated_at,
            controls,
            findings,
            caveats: Vec::new(),
        }
    }

    pub fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }

    fn control(&self, id: &str) -> Option<&ControlSummary> {
        self.controls.iter().find(|c| c.id == id)
    }

    /// Renders the human-readable compliance report. `repair_hint` is the caller's next step
    /// for a `check` with open findings (the agent's command line says how to repair; a server
    /// rendering the same report says something else, or nothing).
    pub fn render_text(&self, repair_hint: Option<&str>) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "POSTWARDEN COMPLIANCE REPORT");
        let _ = writeln!(
            w,
            "Profile   {} (version {}): {}",
            self.profile.id, self.profile.version, self.profile.title
        );
        let run = match self.run {
            RunKind::Check => "check (read only, nothing was changed)",
            RunKind::Apply => "apply (drift was repaired where the profile enforces it)",
        };
        let _ = writeln!(w, "Run       {run}");
        if let Some(at) = &self.generated_at {
            let _ = writeln!(w, "Time      {at}");
        }
        let problems = self
            .findings
            .iter()
            .filter(|f| !f.status.is_satisfied())
            .count();
        let _ = writeln!(
            w,
            "Result    {}",
            if self.compliant {
                format!("COMPLIANT: all {} checks passed", self.findings.len())
            } else {
                format!(
                    "NOT COMPLIANT: {problems} of {} checks need attention",
                    self.findings.len()
                )
            }
        );
        let _ = writeln!(
            w,
            "Counts    {} compliant, {} repaired, {} drifted, {} pending restart, {} failed, {} not applicable",
            self.count(Status::Compliant),
            self.count(Status::Repaired),
            self.count(Status::Drifted),
            self.count(Status::PendingRestart),
            self.count(Status::Failed),
            self.count(Status::NotApplicable),
        );

        // Sections: one per (client, scope), controls in profile order inside.
        let mut sections: BTreeMap<(Client, &str), Vec<&Finding>> = BTreeMap::new();
        for f in &self.findings {
            sections.entry((f.client, &f.scope)).or_default().push(f);
        }
        if sections.is_empty() {
            let _ = writeln!(
                w,
                "\nNo mail client configuration was found for this user, so nothing was checked."
            );
        }
        for ((client, scope), findings) in &sections {
            let _ = writeln!(w, "\n{}: {}", client.display_name(), scope);
            for control in &self.controls {
                let of_control: Vec<&&Finding> = findings
                    .iter()
                    .filter(|f| f.control == control.id)
                    .collect();
                if of_control.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    w,
                    "\n  {}  [{} · {} · {}]",
                    control.title, control.id, control.severity, control.reference
                );
                let mut last_note = None;
                let mut last_override = None;
                for f in of_control {
                    let _ = writeln!(w, "    {}", finding_line(f));
                    match &f.overridden_by {
                        // The layer is the reason; a run of findings it decides names it once.
                        Some(o) if last_override == Some(o) => {}
                        Some(o) if f.status.is_satisfied() => {
                            let _ = writeln!(w, "        held by {o}");
                        }
                        Some(o) => {
                            let _ = writeln!(w, "        overridden by {o}");
                            let _ = writeln!(w, "        fix: {}", o.fix);
                        }
                        None => {
                            if let Some(reason) = &f.reason {
                                let _ = writeln!(w, "        {reason}");
                            }
                        }
                    }
                    last_override = f.overridden_by.as_ref();
                    // A note shared by a run of findings (e.g. every attachment type) once.
                    if f.note.is_some() && f.note.as_ref() != last_note {
                        let _ = writeln!(w, "        {}", f.note.as_deref().unwrap_or_default());
                    }
                    last_note = f.note.as_ref();
                }
            }
        }

        let _ = writeln!(w, "\nCONCLUSION");
        let _ = writeln!(w, "  {}", self.conclusion(repair_hint));

        let _ = writeln!(w, "\nRECOMMENDATIONS");
        for severity in [Severity::High, Severity::Medium, Severity::Low] {
            let _ = writeln!(w, "\n  {} priority", capitalize(severity.as_str()));
            let mut any = false;
            for control in self.controls.iter().filter(|c| c.severity == severity) {
                let open: Vec<&Finding> = self
                    .findings
                    .iter()
                    .filter(|f| f.control == control.id && !f.status.is_satisfied())
                    .collect();
                if open.is_empty() {
                    continue;
                }
                any = true;
                let _ = writeln!(
                    w,
                    "  • {} ({}): {} open finding{}",
                    control.title,
                    control.id,
                    open.len(),
                    if open.len() == 1 { "" } else { "s" }
                );
                for f in open.iter().take(5) {
                    let _ = writeln!(
                        w,
                        "      {} {}{}: {}",
                        f.status.symbol(),
                        f.target,
                        f.setting
                            .as_deref()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default(),
                        f.status.as_str()
                    );
                    if let Some(o) = &f.overridden_by {
                        let _ = writeln!(w, "        overridden by {o}");
                    }
                }
                if open.len() > 5 {
                    let _ = writeln!(w, "      … and {} more", open.len() - 5);
                }
                for line in control.remediation.lines() {
                    let _ = writeln!(w, "      {line}");
                }
            }
            if !any {
                let _ = writeln!(w, "  • No recommendation");
            }
        }

        let outside: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.status == Status::NotApplicable)
            .collect();
        if !outside.is_empty() {
            let _ = writeln!(w, "\nOUTSIDE THE CLIENT'S REACH");
            let mut seen = Vec::new();
            for f in outside {
                let key = (f.client, f.control.as_str());
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let title = self.control(&f.control).map_or("", |c| c.title.as_str());
                let _ = writeln!(
                    w,
                    "  • {} ({}) on {}: {}",
                    title,
                    f.control,
                    f.client.display_name(),
                    f.reason.as_deref().unwrap_or("not applicable")
                );
                if let Some(c) = self.control(&f.control) {
                    for line in c.remediation.lines() {
                        let _ = writeln!(w, "      {line}");
                    }
                }
            }
        }

        if !self.caveats.is_empty() {
            let _ = writeln!(w, "\nNOT VERIFIED");
            for c in &self.caveats {
                let _ = writeln!(w, "  • {c}");
            }
        }

        let _ = writeln!(w, "\nNOTE");
        let _ = writeln!(
            w,
            "  The results reflect the configuration at the time of the run. Values were read from \
             the clients' own configuration (files, registry) as the client itself resolves \
             them (locks, user values, defaults); \"pending restart\" means the client reads the \
             fix at its next start."
        );
        out
    }

    fn conclusion(&self, repair_hint: Option<&str>) -> String {
        let open: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| !f.status.is_satisfied())
            .collect();
        let na = self.count(Status::NotApplicable);
        let na_text = if na > 0 {
            format!(
                " {na} check{} cannot be enforced in the client and must be covered on the server or gateway (see below).",
                if na == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        };
        if self.findings.is_empty() {
            return "No mail client was found, so compliance could not be established.".to_owned();
        }
        if open.is_empty() {
            let repaired = self.count(Status::Repaired);
            let repaired_text = if repaired > 0 {
                format!(
                    " {repaired} setting{} were repaired during this run.",
                    if repaired == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            };
            return format!(
                "The configuration meets profile {} (version {}); we found no deviation.{repaired_text}{na_text}",
                self.profile.id, self.profile.version
            );
        }
        let by = |s: Severity| {
            open.iter()
                .filter(|f| self.control(&f.control).map(|c| c.severity) == Some(s))
                .count()
        };
        let (high, medium, low) = (by(Severity::High), by(Severity::Medium), by(Severity::Low));
        let pending = self.count(Status::PendingRestart);
        let pending_text = if pending > 0 {
            if pending == 1 {
                " 1 fix takes effect when the mail client restarts.".to_owned()
            } else {
                format!(" {pending} fixes take effect when the mail client restarts.")
            }
        } else {
            String::new()
        };
        let verdict = if high > 0 {
            "The configuration has serious deviations from the profile"
        } else {
            "The configuration deviates from the profile"
        };
        let next = match (self.run, repair_hint) {
            (RunKind::Check, Some(hint)) => format!(" {hint}"),
            _ => String::new(),
        };
        format!(
            "{verdict}: {} open finding{} ({high} high, {medium} medium, {low} low priority).{pending_text}{next}{na_text}",
            open.len(),
            if open.len() == 1 { "" } else { "s" }
        )
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Renders an expected/actual JSON value for people.
pub fn display_value(v: &Json) -> String {
    match v {
        Json::Null => "(not set)".to_owned(),
        Json::String(s) => format!("{s:?}"),
        Json::Object(map) => {
            if let Some(Json::Array(items)) = map.get("one_of") {
                let items: Vec<String> = items.iter().map(display_value).collect();
                format!("one of {}", items.join(", "))
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}

fn finding_line(f: &Finding) -> String {
    let mut line = format!("{} {}", f.status.symbol(), f.target);
    if let Some(setting) = &f.setting {
        let _ = write!(line, ": {setting}");
    }
    if f.expected == Json::String("locked".into()) {
        let state = if f.actual == f.expected {
            "locked"
        } else {
            "not locked"
        };
        let _ = write!(line, " is {state}");
        if f.status != Status::Compliant {
            let _ = write!(line, ": {}", f.status.as_str().replace('_', " "));
        }
        return line;
    }
    match f.status {
        Status::NotApplicable => line.push_str(": not applicable"),
        // Nothing could be read (the client's configuration is unreadable): no values to show.
        Status::Failed if f.setting.is_none() && f.actual.is_null() && f.expected.is_null() => {
            line.push_str(": failed")
        }
        Status::Compliant => {
            let _ = write!(line, " = {}", display_value(&f.actual));
        }
        Status::Repaired | Status::PendingRestart => {
            let _ = write!(line, " = {}", display_value(&f.actual));
            if let Some(prev) = &f.previous {
                let _ = write!(line, " (was {})", display_value(prev));
            }
            let _ = write!(line, ": {}", f.status.as_str().replace('_', " "));
        }
        Status::Drifted | Status::Failed => {
            let _ = write!(
                line,
                " = {}, expected {}: {}",
                display_value(&f.actual),
                display_value(&f.expected),
                f.status.as_str()
            );
        }
    }
    if f.locked == Some(true) && f.status != Status::NotApplicable {
        line.push_str(" [locked]");
    }
    line
}

#[cfg(test)]
mod tests;
