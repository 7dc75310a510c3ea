//! The audit report of the fleet, a group or one device at a moment, modelled on a real audit
//! report of a mail server (`shared/seeds/003`, an MDaemon audit): a title block; sections per
//! area with ✓/✗ per item and the fleet figures behind it; a conclusion written from the data;
//! recommendations by priority with the controls' remediation steps; what the mail clients
//! cannot enforce and where it must be done instead; a note on what the results mean; and an
//! appendix with the failing devices and their evidence.
//!
//! The caller reads the scope at the moment (the devices enrolled then, and the newest report
//! of each device and user at or before it) and feeds it to an [`AuditBuilder`], device by
//! device and report by report, so a large fleet can be read in pages. The counting is
//! [`crate::compliance`]'s: a device counts once per control by its worst bucket, and a stale
//! device is never compliant. What the builder keeps is bounded: per device the `(control,
//! status)` pairs and at most [`AuditSettings::evidence_per_device`] failing findings; the
//! appendix lists at most [`AuditSettings::appendix_devices`] devices and says how many it
//! left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use postwarden_profiles::report::{
    display_value, Client, ControlSummary, Finding, Report, Status, RAW_THUNDERBIRD,
};
use postwarden_profiles::{ControlId, Severity};
use time::{Date, Month, OffsetDateTime};

use crate::compliance::{self, Bucket, ControlCounts, DeviceFindings};
use crate::text::clip;

/// What a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every enrolled device.
    Fleet,
    /// The devices of one group.
    Group(String),
    /// One device.
    Device { id: String, hostname: String },
}

impl Scope {
    /// For the title block: `the whole fleet`, `group office`, `device ws-01 (dev_…)`.
    pub fn describe(&self) -> String {
        match self {
            Scope::Fleet => "the whole fleet (all groups)".to_owned(),
            Scope::Group(g) => format!("group {g}"),
            Scope::Device { id, hostname } => format!("device {hostname} ({id})"),
        }
    }
}

/// The moment a report describes (unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The state when the report was made: each device's current report.
    Now(i64),
    /// A past moment (`as_of`): each device's newest report at or before it.
    AsOf(i64),
}

impl Moment {
    pub fn at_ms(self) -> i64 {
        match self {
            Moment::Now(ms) | Moment::AsOf(ms) => ms,
        }
    }
}

/// What the report is about and how much of it is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Who the report is for (the title block's first line).
    pub organisation: String,
    pub scope: Scope,
    pub moment: Moment,
    /// When the report was made (the caller's clock).
    pub generated_ms: i64,
    /// A device silent longer than this before the moment is stale.
    pub stale_after_ms: i64,
    /// The most failing devices the appendix lists (the rest are counted).
    pub appendix_devices: usize,
    /// The most failing findings the appendix shows per device (the rest are counted).
    pub evidence_per_device: usize,
}

/// A device of the scope at the moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDevice {
    pub id: String,
    pub hostname: String,
    pub group: String,
    /// When it was last heard from as of the moment. For [`Moment::AsOf`] the caller passes
    /// its enrollment time and the builder advances it to each report's time (heartbeats are
    /// not kept as history).
    pub last_seen_ms: i64,
}

/// ✓, ✗ or – for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mark {
    /// Every device that reported the control meets it.
    Pass,
    /// At least one device does not: non-compliant, in error, pending a restart, or stale.
    Fail,
    /// Not applicable on any device that reported it (see the cannot-enforce section).
    NotApplicable,
    /// No device reported it.
    NoData,
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::NotApplicable | Mark::NoData => "–",
        }
    }

    /// For CSS classes and screen readers.
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Pass => "pass",
            Mark::Fail => "fail",
            Mark::NotApplicable => "not applicable",
            Mark::NoData => "no data",
        }
    }
}

/// The title block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleBlock {
    pub organisation: String,
    pub scope: String,
    /// `State as of` or `State at`.
    pub moment_label: &'static str,
    /// The moment, `2026-11-28 23:59:59 UTC`.
    pub date: String,
    pub generated: String,
    /// `bsi-m5.57 version 1: BSI … (3 devices)`, one per profile version the reports were
    /// checked against.
    pub profiles: Vec<String>,
    pub devices: u64,
    /// Devices with at least one report.
    pub reporting: u64,
    pub stale: u64,
    /// Not stale, but no report yet.
    pub unreported: u64,
    /// `24 h`.
    pub stale_after: String,
}

/// One control in its area: ✓/✗ and the figures behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub control: String,
    pub title: String,
    pub severity: Severity,
    pub reference: String,
    pub mark: Mark,
    /// Devices per bucket (by each device's worst finding for the control).
    pub counts: ControlCounts,
    /// `2 of 3 devices compliant (66.7 %); 1 non-compliant`.
    pub figures: String,
}

impl Item {
    /// Devices counted against the control: all but those where it is not applicable.
    pub fn counted(&self) -> u64 {
        self.counts.total() - self.counts.not_applicable
    }

    /// Devices that fail it.
    pub fn failing(&self) -> u64 {
        self.counted() - self.counts.compliant
    }
}

/// A section of the report: the controls of one area.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    pub title: &'static str,
    pub items: Vec<Item>,
}

/// What the data say overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No device was enrolled in the scope at the moment.
    NothingToAssess,
    /// Devices, but none had reported.
    NotReported,
    /// No high-severity control fails (medium or low ones may).
    NoSeriousDeviations,
    /// At least one high-severity control fails.
    SeriousDeviations,
}

/// The conclusion: the verdict and its paragraphs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    pub verdict: Verdict,
    pub paragraphs: Vec<String>,
}

/// One recommendation: a failing control and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// The control id, or `None` for the recommendation about devices that stopped reporting.
    pub control: Option<String>,
    pub title: String,
    pub reference: String,
    /// `fails on 2 of 3 devices: 1 non-compliant, 1 stale`.
    pub figures: String,
    /// The remediation steps, in order.
    pub steps: Vec<String>,
    /// What an administrator must change where another configuration layer decides the setting.
    pub layer_fixes: Vec<String>,
}

/// The recommendations of one priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priority {
    pub severity: Severity,
    /// Empty: "no recommendation".
    pub recommendations: Vec<Recommendation>,
}

/// A control the mail clients cannot (fully) enforce, and where it must be done instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    pub control: String,
    pub title: String,
    /// `Thunderbird on 2 devices: <the agent's reason>`.
    pub not_applicable: Vec<String>,
    /// `Group Policy on 1 device (HKLM\…): <the fix>`.
    pub overridden: Vec<String>,
    /// Where the counterpart lives (mail server, gateway) and what it must do.
    pub instead: Option<Counterpart>,
}

/// The server-side counterpart of a control: what no mail client setting can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counterpart {
    /// `mail server`, `mail gateway or mail server`.
    pub place: &'static str,
    pub what: &'static str,
    /// The seed document it comes from.
    pub source: &'static str,
}

/// One failing finding, as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub control: String,
    pub control_title: String,
    pub user: String,
    pub client: &'static str,
    /// The client's configuration the finding is about (e.g. the Thunderbird profile folder).
    pub location: String,
    pub target: String,
    pub setting: Option<String>,
    pub status: &'static str,
    pub actual: String,
    pub expected: String,
    /// The agent's reason, or the layer that decides the setting and its fix.
    pub detail: Option<String>,
    /// When the report was made.
    pub reported: String,
}

/// A failing device in the appendix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendixDevice {
    pub id: String,
    pub hostname: String,
    pub group: String,
    /// The device's worst bucket (`non_compliant`, `error`, `pending_restart`, `stale`).
    pub status: &'static str,
    pub last_seen: String,
    pub stale: bool,
    pub evidence: Vec<Evidence>,
    /// Failing findings not shown.
    pub more: usize,
}

/// The appendix: failing devices, worst first, then by host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appendix {
    pub devices: Vec<AppendixDevice>,
    /// All failing devices (`devices` holds at most the configured number).
    pub failing_devices: usize,
}

impl Appendix {
    pub fn truncated(&self) -> usize {
        self.failing_devices - self.devices.len()
    }
}

/// The whole report, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    pub title: TitleBlock,
    pub areas: Vec<Area>,
    pub conclusion: Conclusion,
    /// High, medium, low: always all three.
    pub recommendations: Vec<Priority>,
    pub outside: Vec<Outside>,
    /// What the results mean.
    pub note: Vec<String>,
    /// What was not verified (the agents' caveats, the server side, devices without reports).
    pub not_verified: Vec<String>,
    pub appendix: Appendix,
}

// --- areas and server-side knowledge ----------------------------------------------------------

/// The areas in report order, as the MDaemon audit groups its settings (retrieval, limits,
/// antivirus and content filter, security settings).
const AREAS: [&str; 6] = [
    "Addresses and mail retrieval",
    "Mailbox limits",
    "Attachments and virus protection",
    "Connection security and authentication",
    "Managed configuration",
    "Other settings",
];

/// The area of a control (an index into [`AREAS`]). Exhaustive: a new control must be placed.
fn area_of(control: &str) -> usize {
    let Some(id) = ControlId::from_name(control) else {
        return 5;
    };
    match id {
        ControlId::ReplyAddress | ControlId::MailCheckInterval | ControlId::PopDeleteAfterFetch => {
            0
        }
        ControlId::MailboxSizeLimit => 1,
        ControlId::AttachmentScanning
        | ControlId::AttachmentsSaveBeforeOpen
        | ControlId::BlockedAttachmentTypes => 2,
        ControlId::RequireTls | ControlId::RequireSmtpAuth | ControlId::NoSavedPasswords => 3,
        ControlId::SettingsLocked => 4,
    }
}

/// Where a control's server-side counterpart lives: what the server or gateway must do that no
/// client setting can (from the seed documents: BSI M 5.56 and M 5.57, the MDaemon audit, the
/// IMail security levels). `None`: the client setting is the whole of it.
pub fn counterpart(control: &str) -> Option<Counterpart> {
    let id = ControlId::from_name(control)?;
    let (place, what, source) = match id {
        ControlId::BlockedAttachmentTypes => (
            "mail gateway or mail server (content filter)",
            "Block attachments of these types (*.PIF *.SCR *.VBS *.EXE *.CMD *.COM *.BAT *.HTA) \
             for every sender without domain-wide exceptions, and look for them inside ZIP \
             archives too; only Outlook can block them in the client.",
            "MDaemon audit: content filter",
        ),
        ControlId::AttachmentScanning => (
            "mail gateway or mail server (antivirus)",
            "Scan every message for viruses, reject infected mail during the SMTP session and \
             quarantine what cannot be scanned; update the signatures hourly. The client only \
             hands mail to the endpoint's on-access scanner.",
            "MDaemon audit: AntiVirus, AV update; mail-server lockdown checklist",
        ),
        ControlId::MailboxSizeLimit => (
            "mail server",
            "Set a quota for every mailbox and send the user a warning mail before it is \
             reached; limit the size of messages. The client can only warn about a quota the \
             server reports.",
            "BSI M 5.57; MDaemon audit: limits",
        ),
        ControlId::RequireSmtpAuth => (
            "mail server",
            "Accept mail from local users only after SMTP authentication, and require the login \
             to match the sender's account, so the server cannot be used as a relay. The client \
             setting only makes the client log in.",
            "MDaemon audit: SMTP authentication; IMail: SMTP authentication",
        ),
        ControlId::RequireTls => (
            "mail server",
            "Offer SSL/TLS and STARTTLS on every port the clients use and refuse plain-text \
             logins, so a client that is not managed cannot fall back to clear text.",
            "MDaemon audit: SSL, STARTTLS and STLS; IMail security levels",
        ),
        ControlId::ReplyAddress => (
            "mail server",
            "Accept only sender and reply addresses from the institution's name space that \
             match the authenticated account.",
            "BSI M 5.56",
        ),
        ControlId::PopDeleteAfterFetch
        | ControlId::MailCheckInterval
        | ControlId::NoSavedPasswords
        | ControlId::AttachmentsSaveBeforeOpen
        | ControlId::SettingsLocked => return None,
    };
    Some(Counterpart {
        place,
        what,
        source,
    })
}

/// The order of controls inside an area: the order of [`ControlId::ALL`], then by name.
fn control_rank(control: &str) -> (usize, usize, String) {
    let position = ControlId::from_name(control)
        .and_then(|id| ControlId::ALL.iter().position(|c| *c == id))
        .unwrap_or(usize::MAX);
    (area_of(control), position, control.to_owned())
}

// --- the builder ----------------------------------------------------------------------------

/// The most distinct caveats and not-applicable reasons kept (the agents send the same few).
const MAX_DISTINCT: usize = 50;

#[derive(Debug)]
struct DeviceState {
    device: AuditDevice,
    pairs: Vec<(String, Status)>,
    reports: usize,
    /// Failing findings, at most `evidence_per_device`, and how many there were.
    evidence: Vec<(Finding, String, i64)>,
    failing: usize,
}

/// (control, client, layer, fix) of a setting another configuration layer decides; the map
/// holds the devices and one location as an example.
type LayerKey = (String, Client, String, String);

#[derive(Debug)]
struct ProfileState {
    title: String,
    devices: BTreeSet<usize>,
}

/// Collects the scope at the moment and turns it into an [`AuditReport`].
#[derive(Debug)]
pub struct AuditBuilder {
    settings: AuditSettings,
    devices: Vec<DeviceState>,
    index: HashMap<String, usize>,
    /// Per control: the metadata of the newest report that carried it.
    controls: BTreeMap<String, (i64, ControlSummary)>,
    profiles: BTreeMap<(String, u32), ProfileState>,
    /// (control, client, reason) → devices.
    not_applicable: BTreeMap<(String, Client, String), BTreeSet<usize>>,
    overridden: BTreeMap<LayerKey, (BTreeSet<usize>, String)>,
    caveats: BTreeSet<String>,
}

impl AuditBuilder {
    pub fn new(settings: AuditSettings) -> AuditBuilder {
        AuditBuilder {
            settings,
            devices: Vec::new(),
            index: HashMap::new(),
            controls: BTreeMap::new(),
            profiles: BTreeMap::new(),
            not_applicable: BTreeMap::new(),
            overridden: BTreeMap::new(),
            caveats: BTreeSet::new(),
        }
    }

    /// A device of the scope at the moment, with or without reports. A second call with the
    /// same id is ignored.
    pub fn device(&mut self, device: AuditDevice) {
        if self.index.contains_key(&device.id) {
            return;
        }
        self.index.insert(device.id.clone(), self.devices.len());
        self.devices.push(DeviceState {
            device,
            pairs: Vec::new(),
            reports: 0,
            evidence: Vec::new(),
            failing: 0,
        });
    }

    /// The newest report of one of the device's users at the moment, made at `at_ms`. Returns
    /// `false` (and ignores it) when the device was not added with [`AuditBuilder::device`].
    pub fn report(&mut self, device: &str, user: &str, at_ms: i64, report: &Report) -> bool {
        let Some(&n) = self.index.get(device) else {
            return false;
        };
        for c in &report.controls {
            match self.controls.get(&c.id) {
                Some((at, _)) if *at > at_ms => {}
                _ => {
                    self.controls.insert(c.id.clone(), (at_ms, c.clone()));
                }
            }
        }
        self.profiles
            .entry((report.profile.id.clone(), report.profile.version))
            .or_insert_with(|| ProfileState {
                title: report.profile.title.clone(),
                devices: BTreeSet::new(),
            })
            .devices
            .insert(n);
        for caveat in &report.caveats {
            if self.caveats.len() < MAX_DISTINCT {
                self.caveats.insert(caveat.clone());
            }
        }
        let evidence_cap = self.settings.evidence_per_device;
        let as_of = matches!(self.settings.moment, Moment::AsOf(_));
        let d = &mut self.devices[n];
        d.reports += 1;
        if as_of {
            d.device.last_seen_ms = d.device.last_seen_ms.max(at_ms);
        }
        for f in &report.findings {
            d.pairs.push((f.control.clone(), f.status));
            if f.status == Status::NotApplicable {
                let key = (
                    f.control.clone(),
                    f.client,
                    f.reason.clone().unwrap_or_default(),
                );
                if let Some(devices) = self.not_applicable.get_mut(&key) {
                    devices.insert(n);
                } else if self.not_applicable.len() < MAX_DISTINCT {
                    self.not_applicable.insert(key, BTreeSet::from([n]));
                }
            }
            if f.status.is_satisfied() {
                continue;
            }
            if let Some(o) = &f.overridden_by {
                let key = (f.control.clone(), f.client, o.layer.clone(), o.fix.clone());
                if let Some((devices, _)) = self.overridden.get_mut(&key) {
                    devices.insert(n);
                } else if self.overridden.len() < MAX_DISTINCT {
                    self.overridden
                        .insert(key, (BTreeSet::from([n]), o.location.clone()));
                }
            }
            d.failing += 1;
            if d.evidence.len() < evidence_cap {
                d.evidence.push((f.clone(), user.to_owned(), at_ms));
            }
        }
        true
    }

    /// The report.
    pub fn finish(self) -> AuditReport {
        let s = &self.settings;
        let at = s.moment.at_ms();
        let summary = compliance::summarize(
            self.devices.iter().map(|d| DeviceFindings {
                device: &d.device.id,
                last_seen_ms: d.device.last_seen_ms,
                findings: &d.pairs,
            }),
            at,
            s.stale_after_ms,
        );
        let reporting = self.devices.iter().filter(|d| d.reports > 0).count() as u64;

        // Every control a report named or a finding used, in area order.
        let mut ids: BTreeSet<String> = self.controls.keys().cloned().collect();
        ids.extend(summary.controls.iter().map(|c| c.control.clone()));
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort_by_key(|c| control_rank(c));
        let meta = |id: &str| -> ControlSummary {
            self.controls
                .get(id)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| ControlSummary {
                    id: id.to_owned(),
                    title: if id == RAW_THUNDERBIRD {
                        "Additional Thunderbird settings".to_owned()
                    } else {
                        id.to_owned()
                    },
                    severity: Severity::Medium,
                    reference: String::new(),
                    remediation: String::new(),
                })
        };

        let mut areas: Vec<Area> = AREAS
            .iter()
            .map(|title| Area {
                title,
                items: Vec::new(),
            })
            .collect();
        for id in &ids {
            let c = meta(id);
            let counts = summary
                .controls
                .iter()
                .find(|k| &k.control == id)
                .cloned()
                .unwrap_or_else(|| ControlCounts {
                    control: id.clone(),
                    ..ControlCounts::default()
                });
            let counted = counts.total() - counts.not_applicable;
            let mark = if counts.total() == 0 {
                Mark::NoData
            } else if counted == 0 {
                Mark::NotApplicable
            } else if counts.compliant == counted {
                Mark::Pass
            } else {
                Mark::Fail
            };
            areas[area_of(id)].items.push(Item {
                figures: figures(&counts),
                control: id.clone(),
                title: c.title,
                severity: c.severity,
                reference: c.reference,
                mark,
                counts,
            });
        }
        areas.retain(|a| !a.items.is_empty());

        let title = TitleBlock {
            organisation: s.organisation.clone(),
            scope: s.scope.describe(),
            moment_label: match s.moment {
                Moment::Now(_) => "State at",
                Moment::AsOf(_) => "State as of",
            },
            date: format_ms(at),
            generated: format_ms(s.generated_ms),
            profiles: self
                .profiles
                .iter()
                .map(|((id, version), p)| {
                    format!(
                        "{id} version {version}: {} ({})",
                        p.title,
                        plural(p.devices.len() as u64, "device")
                    )
                })
                .collect(),
            devices: summary.devices,
            reporting,
            stale: summary.stale_devices,
            unreported: summary.unreported_devices,
            stale_after: duration_text(s.stale_after_ms),
        };

        let items: Vec<&Item> = areas.iter().flat_map(|a| &a.items).collect();
        let conclusion = conclusion(&s.scope, &title, &items);
        let recommendations = self.recommendations(&items, &meta, &summary);
        let outside = self.outside(&ids, &meta);
        let (note, not_verified) = self.note(&title);
        let appendix = self.appendix(&meta);
        AuditReport {
            title,
            areas,
            conclusion,
            recommendations,
            outside,
            note,
            not_verified,
            appendix,
        }
    }

    fn recommendations(
        &self,
        items: &[&Item],
        meta: &dyn Fn(&str) -> ControlSummary,
        summary: &compliance::Summary,
    ) -> Vec<Priority> {
        let mut out: Vec<Priority> = [Severity::High, Severity::Medium, Severity::Low]
            .into_iter()
            .map(|severity| Priority {
                severity,
                recommendations: Vec::new(),
            })
            .collect();
        for item in items.iter().filter(|i| i.mark == Mark::Fail) {
            let c = meta(&item.control);
            let layer_fixes = self
                .overridden
                .iter()
                .filter(|((control, ..), _)| *control == item.control)
                .map(|((_, client, layer, fix), (devices, location))| {
                    format!(
                        "{} on {} ({layer} at {location}): {fix}",
                        client.display_name(),
                        plural(devices.len() as u64, "device")
                    )
                })
                .collect();
            let slot = match item.severity {
                Severity::High => 0,
                Severity::Medium => 1,
                Severity::Low => 2,
            };
            out[slot].recommendations.push(Recommendation {
                control: Some(item.control.clone()),
                title: item.title.clone(),
                reference: item.reference.clone(),
                figures: format!(
                    "fails on {} of {}: {}",
                    item.failing(),
                    plural(item.counted(), "device"),
                    failure_parts(&item.counts).join(", ")
                ),
                steps: steps(&c.remediation),
                layer_fixes,
            });
        }
        if summary.stale_devices > 0 {
            out[1].recommendations.push(Recommendation {
                control: None,
                title: "Devices that stopped reporting".to_owned(),
                reference: format!(
                    "stale after {}",
                    duration_text(self.settings.stale_after_ms)
                ),
                figures: format!(
                    "{} of {} not heard from within {} of the review",
                    summary.stale_devices,
                    plural(summary.devices, "device"),
                    duration_text(self.settings.stale_after_ms)
                ),
                steps: vec![
                    "Check that the device is on and that the Postwarden agent service runs on \
                     it (`postwarden-agent status`)."
                        .to_owned(),
                    "Check that the device reaches the policy server (network, proxy, \
                     certificate pin)."
                        .to_owned(),
                    "Retire devices that have left the fleet, so they no longer count.".to_owned(),
                ],
                layer_fixes: Vec::new(),
            });
        }
        out
    }

    fn outside(&self, ids: &[String], meta: &dyn Fn(&str) -> ControlSummary) -> Vec<Outside> {
        let mut out = Vec::new();
        for id in ids {
            let not_applicable: Vec<String> = self
                .not_applicable
                .iter()
                .filter(|((control, ..), _)| control == id)
                .map(|((_, client, reason), devices)| {
                    let reason = if reason.is_empty() {
                        "not applicable"
                    } else {
                        reason
                    };
                    format!(
                        "{} on {}: {reason}",
                        client.display_name(),
                        plural(devices.len() as u64, "device")
                    )
                })
                .collect();
            let overridden: Vec<String> = self
                .overridden
                .iter()
                .filter(|((control, ..), _)| control == id)
                .map(|((_, client, layer, fix), (devices, location))| {
                    format!(
                        "{} on {}: decided by {layer} ({location}); {fix}",
                        client.display_name(),
                        plural(devices.len() as u64, "device")
                    )
                })
                .collect();
            let instead = counterpart(id);
            if not_applicable.is_empty() && overridden.is_empty() && instead.is_none() {
                continue;
            }
            out.push(Outside {
                control: id.clone(),
                title: meta(id).title,
                not_applicable,
                overridden,
                instead,
            });
        }
        out
    }

    fn note(&self, title: &TitleBlock) -> (Vec<String>, Vec<String>) {
        let s = &self.settings;
        let mut note = vec![
            format!(
                "The results reflect the configuration of the mail clients {} {}: for each \
                 device and user, the newest report its Postwarden agent had sent by then. A \
                 device may have changed since its last report.",
                match s.moment {
                    Moment::Now(_) => "at",
                    Moment::AsOf(_) => "as of",
                },
                title.date
            ),
            format!(
                "A device not heard from for more than {} before that time counts as stale: \
                 never as compliant, whatever its last report said. Each device counts once per \
                 control, by its worst finding for it (a device with one non-compliant mail \
                 account fails the control).",
                title.stale_after
            ),
            "The agents read the values from the mail clients' own configuration (files, \
             registry, preferences) as the client itself resolves them (locks, administrator \
             layers, defaults); \"pending restart\" means the fix is written and the client \
             reads it at its next start."
                .to_owned(),
        ];
        if let Moment::AsOf(_) = s.moment {
            note.push(
                "For a past date, a device counts as heard from at its last report before that \
                 date (heartbeats are not kept as history); devices retired before it and \
                 devices enrolled after it are left out."
                    .to_owned(),
            );
        }
        note.push(
            "The recommendations come from the profile's remediation steps. They do not take \
             the wider IT environment into account; checking and carrying them out is the \
             organisation's decision and responsibility."
                .to_owned(),
        );
        let mut not_verified = vec![
            "The mail servers and gateways themselves: their counterparts (see \"What the mail \
             clients cannot enforce\") are not checked by Postwarden."
                .to_owned(),
            "Mail clients the agent does not manage, and devices that are not enrolled.".to_owned(),
        ];
        if title.unreported > 0 {
            not_verified.push(format!(
                "{} in the scope had not reported by then; {} not assessed.",
                plural(title.unreported, "device"),
                if title.unreported == 1 {
                    "it is"
                } else {
                    "they are"
                }
            ));
        }
        not_verified.extend(
            self.caveats
                .iter()
                .map(|c| format!("Reported by the agents: {c}")),
        );
        (note, not_verified)
    }

    fn appendix(&self, meta: &dyn Fn(&str) -> ControlSummary) -> Appendix {
        let s = &self.settings;
        let at = s.moment.at_ms();
        let mut failing: Vec<(Bucket, &DeviceState)> = self
            .devices
            .iter()
            .filter_map(|d| {
                let b = compliance::device_bucket(
                    &DeviceFindings {
                        device: &d.device.id,
                        last_seen_ms: d.device.last_seen_ms,
                        findings: &d.pairs,
                    },
                    at,
                    s.stale_after_ms,
                )?;
                matches!(
                    b,
                    Bucket::NonCompliant | Bucket::Error | Bucket::PendingRestart | Bucket::Stale
                )
                .then_some((b, d))
            })
            .collect();
        failing.sort_by(|(a, x), (b, y)| {
            b.cmp(a)
                .then_with(|| x.device.hostname.cmp(&y.device.hostname))
                .then_with(|| x.device.id.cmp(&y.device.id))
        });
        let failing_devices = failing.len();
        let devices = failing
            .into_iter()
            .take(s.appendix_devices)
            .map(|(bucket, d)| AppendixDevice {
                id: d.device.id.clone(),
                hostname: d.device.hostname.clone(),
                group: d.device.group.clone(),
                status: bucket.as_str(),
                last_seen: format_ms(d.device.last_seen_ms),
                stale: bucket == Bucket::Stale,
                evidence: d
                    .evidence
                    .iter()
                    .map(|(f, user, at_ms)| evidence(f, user, *at_ms, &meta(&f.control).title))
                    .collect(),
                more: d.failing - d.evidence.len(),
            })
            .collect();
        Appendix {
            devices,
            failing_devices,
        }
    }
}

fn evidence(f: &Finding, user: &str, at_ms: i64, title: &str) -> Evidence {
    let detail = match (&f.overridden_by, &f.reason) {
        (Some(o), _) => Some(format!(
            "decided by {} at {}: {}; fix: {}",
            o.layer, o.location, o.evidence, o.fix
        )),
        (None, Some(reason)) => Some(reason.clone()),
        (None, None) => None,
    };
    Evidence {
        control: f.control.clone(),
        control_title: title.to_owned(),
        user: user.to_owned(),
        client: f.client.display_name(),
        location: f.scope.clone(),
        target: f.target.clone(),
        setting: f.setting.clone(),
        status: f.status.as_str(),
        actual: clip(&display_value(&f.actual), 300),
        expected: clip(&display_value(&f.expected), 300),
        detail: detail.map(|d| clip(&d, 600)),
        reported: format_ms(at_ms),
    }
}

// --- text --------------------------------------------------------------------------------------

fn conclusion(scope: &Scope, title: &TitleBlock, items: &[&Item]) -> Conclusion {
    if title.devices == 0 {
        let when = if title.moment_label == "State as of" {
            "as of"
        } else {
            "at"
        };
        let text = match scope {
            Scope::Device { id, hostname } => format!(
                "Device {hostname} ({id}) was not enrolled {when} {} (enrolled later, or \
                 retired by then), so there is nothing to assess.",
                title.date
            ),
            _ => format!(
                "No device of {} was enrolled {when} {}, so there is nothing to assess.",
                title.scope, title.date
            ),
        };
        return Conclusion {
            verdict: Verdict::NothingToAssess,
            paragraphs: vec![text],
        };
    }
    if title.reporting == 0 {
        return Conclusion {
            verdict: Verdict::NotReported,
            paragraphs: vec![format!(
                "None of the {} had reported by {}, so compliance cannot be established. Make \
                 sure the Postwarden agent runs on them.",
                plural(title.devices, "device"),
                title.date
            )],
        };
    }
    let failing: Vec<&&Item> = items.iter().filter(|i| i.mark == Mark::Fail).collect();
    let high: Vec<&&&Item> = failing
        .iter()
        .filter(|i| i.severity == Severity::High)
        .collect();
    let mut paragraphs = Vec::new();
    let verdict = if high.is_empty() {
        Verdict::NoSeriousDeviations
    } else {
        Verdict::SeriousDeviations
    };
    if failing.is_empty() {
        paragraphs.push(format!(
            "Analysing the reported configuration of {} we found no deviations: every control \
             is met on every device that reported it.",
            plural(title.reporting, "device")
        ));
    } else if high.is_empty() {
        paragraphs.push(format!(
            "Analysing the reported configuration of {} we found no serious deviations: every \
             high-severity control is met. {} of lower priority {} (see the recommendations).",
            plural(title.reporting, "device"),
            plural(failing.len() as u64, "control"),
            if failing.len() == 1 {
                "deviates"
            } else {
                "deviate"
            }
        ));
    } else {
        let list: Vec<String> = high
            .iter()
            .map(|i| {
                format!(
                    "{} ({}) fails on {} of {}",
                    i.title,
                    i.control,
                    i.failing(),
                    plural(i.counted(), "device")
                )
            })
            .collect();
        paragraphs.push(format!(
            "The configuration has serious deviations from the profile: {} high-severity {} \
             {}: {}.",
            high.len(),
            if high.len() == 1 {
                "control"
            } else {
                "controls"
            },
            if high.len() == 1 { "fails" } else { "fail" },
            list.join("; ")
        ));
        let lower = failing.len() - high.len();
        if lower > 0 {
            paragraphs.push(format!(
                "{} of medium or low priority {} as well.",
                plural(lower as u64, "control"),
                if lower == 1 { "deviates" } else { "deviate" }
            ));
        }
    }
    if title.stale > 0 {
        paragraphs.push(format!(
            "{} of {} had not been heard from for more than {} and {} as non-compliant.",
            title.stale,
            plural(title.devices, "device"),
            title.stale_after,
            if title.stale == 1 { "counts" } else { "count" }
        ));
    }
    if title.unreported > 0 {
        paragraphs.push(format!(
            "{} had not reported yet and {} not assessed.",
            plural(title.unreported, "device"),
            if title.unreported == 1 { "is" } else { "are" }
        ));
    }
    if !failing.is_empty() {
        paragraphs.push(
            "The recommendations below are grouped by priority, each with the steps to fix it; \
             the appendix lists the failing devices with their evidence."
                .to_owned(),
        );
    }
    Conclusion {
        verdict,
        paragraphs,
    }
}

/// `2 of 3 devices compliant (66.7 %); 1 non-compliant, 1 not applicable`.
fn figures(c: &ControlCounts) -> String {
    let counted = c.total() - c.not_applicable;
    let mut out = if c.total() == 0 {
        "no device reported it".to_owned()
    } else if counted == 0 {
        format!("not applicable on {}", plural(c.not_applicable, "device"))
    } else {
        format!(
            "{} of {} compliant ({:.1} %)",
            c.compliant,
            plural(counted, "device"),
            c.compliance_percent.unwrap_or(0.0)
        )
    };
    let mut rest = failure_parts(c);
    if counted > 0 && c.not_applicable > 0 {
        rest.push(format!("{} not applicable", c.not_applicable));
    }
    if !rest.is_empty() {
        out.push_str("; ");
        out.push_str(&rest.join(", "));
    }
    out
}

fn failure_parts(c: &ControlCounts) -> Vec<String> {
    [
        (c.non_compliant, "non-compliant"),
        (c.error, "in error"),
        (c.pending_restart, "pending restart"),
        (c.stale, "stale"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect()
}

/// A remediation text as steps: `1. …` lines start a step; other lines continue the previous
/// one; the numbers are dropped (the renderer numbers them).
fn steps(remediation: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in remediation.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let numbered = line
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        match (numbered, out.last_mut()) {
            (Some((_, rest)), _) => out.push(rest.to_owned()),
            (None, Some(last)) => {
                last.push(' ');
                last.push_str(line);
            }
            (None, None) => out.push(line.to_owned()),
        }
    }
    out
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `24 h`, `90 min`, `2 d`.
fn duration_text(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    if minutes >= 2 * 24 * 60 && minutes % (24 * 60) == 0 {
        format!("{} d", minutes / (24 * 60))
    } else if minutes >= 60 && minutes % 60 == 0 {
        format!("{} h", minutes / 60)
    } else if minutes > 0 {
        format!("{minutes} min")
    } else {
        format!("{} s", ms.max(0) / 1000)
    }
}

fn datetime(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// `2026-11-28 23:59:59 UTC`.
pub fn format_ms(ms: i64) -> String {
    match datetime(ms) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => format!("{ms} ms"),
    }
}

// --- as_of ---------------------------------------------------------------------------------

/// Why an `as_of` value was refused; the message names no field (the caller adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOfError(pub String);

impl std::fmt::Display for AsOfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AsOfError {}

/// The moment an `as_of` value names, at `now_ms`: `YYYY-MM-DD` is the end of that UTC day
/// (23:59:59.999; today's date means now, since the day is not over), anything else must be an
/// RFC 3339 time. A moment after `now_ms` is refused: a report cannot describe the future.
pub fn parse_as_of(text: &str, now_ms: i64) -> Result<i64, AsOfError> {
    let text = text.trim();
    let ms = if let Some(date) = parse_date(text) {
        let next = date
            .next_day()
            .ok_or_else(|| AsOfError(format!("{} is out of range", clip(text, 40))))?;
        let start_next = next.midnight().assume_utc().unix_timestamp() * 1000;
        let end = start_next - 1;
        let start = date.midnight().assume_utc().unix_timestamp() * 1000;
        if start > now_ms {
            return Err(AsOfError(format!(
                "{} is in the future (now is {})",
                clip(text, 40),
                format_ms(now_ms)
            )));
        }
        end.min(now_ms)
    } else {
        let t = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                AsOfError(format!(
                    "{:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time \
                     (2026-11-28T17:00:00Z)",
                    clip(text, 40)
                ))
            })?;
        let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| AsOfError(format!("{} is out of range", clip(text, 40))))?;
        if ms > now_ms {
            return Err(AsOfError(format!(
                "{} is in the future (now is {})",
                clip(text, 40),
                format_ms(now_ms)
            )));
        }
        ms
    };
    Ok(ms)
}

/// `YYYY-MM-DD`, exactly.
fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests;
