//! Which configuration layer decides an Outlook policy value: pure knowledge, tested on any OS.
//! The store reads each layer (registry values, `Registry.pol` files) and [`Readings::decide`]
//! says who wins; a layer the agent must not write becomes the finding's
//! [`Override`](postwarden_engine::Override), with the evidence and the administrator's fix.
//!
//! Precedence, highest first (sources and what is verified: docs/adr/0002, "Registry layers"):
//!
//! 1. **Microsoft 365 Cloud Policy**, `HKCU\Software\Policies\Microsoft\Cloud\Office\16.0\...`.
//!    Microsoft: "policy settings implemented by using Cloud Policy take precedence over policy
//!    settings implemented by using Group Policy on Windows Server, and taking precedence over
//!    preference settings or locally applied policy settings"; the key "is overwritten each time
//!    a new set of policies is retrieved" (Microsoft Learn, "Overview of Cloud Policy service for
//!    Microsoft 365", MicrosoftDocs/OfficeDocs-DeployOffice `admincenter/overview-cloud-policy.md`).
//!    Cloud Policy holds user settings only, so it exists only for Outlook's own policy keys.
//! 2. **Machine policy**, `HKLM\<the same key>`, or a GPO's `Machine\Registry.pol` that writes
//!    it. Microsoft documents no Office-specific rule: `outlk16.admx` defines its 396 policies
//!    as `class="User"` and `AttachmentManager.admx` its `ScanWithAntiVirus` as `class="User"`,
//!    so Group Policy never writes them under HKLM. What Microsoft documents is the Windows
//!    convention: "Many policy-related entries can appear in both HKCU and HKLM. Typically, the
//!    entries in HKLM take precedence over the entries in HKCU when both are configured"
//!    (Windows 2000 Registry Reference, "Policies" subkey, learn.microsoft.com cc978722). The
//!    agent models that convention: a machine value wins, and the agent never writes HKLM.
//!    Whether Outlook reads HKLM for these values at all is unverified, so a machine value is
//!    always reported (as evidence when it is the value the profile wants).
//! 3. **User policy**, `HKCU\<key>`: the agent's own layer, unless a Group Policy object's
//!    `User\Registry.pol` sets or deletes the value: Group Policy puts it back at every refresh
//!    (every 90 to 120 minutes by default), so the agent reports the GPO and never writes it.

use postwarden_engine::{Expect, Override, Value};
use postwarden_registry::RegValue;

use super::mapping::Location;

pub const CLOUD_POLICY: &str = "Microsoft 365 Cloud Policy";
pub const GROUP_POLICY: &str = "Group Policy";
pub const MACHINE_POLICY: &str = "machine policy (HKLM)";

/// A value a Group Policy object sets or deletes, with where to find the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpoValue {
    /// Names the GPO: `"Local Group Policy"`, `"Outlook baseline" {31B2F340-...}`.
    pub gpo: String,
    /// The file as an administrator finds it, e.g.
    /// `C:\Windows\System32\GroupPolicy\User\Registry.pol`.
    pub file: String,
    /// Byte offset of the record that decides the value.
    pub offset: usize,
    /// The key and value name as the record spells them.
    pub key: String,
    pub name: String,
    /// What the GPO leaves the value as: `None` when it deletes it.
    pub value: Option<RegValue>,
    /// From `ntuser.pol`, Windows' record of the registry policy it applied, which does not
    /// name the GPO.
    pub archive: bool,
}

/// Every layer's reading of one policy value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readings {
    /// Cloud Policy's value, for Outlook's own policies.
    pub cloud: Option<RegValue>,
    /// What a GPO's Computer Configuration does to the HKLM value.
    pub machine_gpo: Option<GpoValue>,
    /// The HKLM value.
    pub machine: Option<RegValue>,
    /// What a GPO's User Configuration does to the user's value.
    pub user_gpo: Option<GpoValue>,
    /// The user's value (the agent's layer).
    pub user: Option<RegValue>,
}

/// The layer that decides a policy value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    Cloud,
    MachineGpo(GpoValue),
    Machine,
    UserGpo(GpoValue),
    /// The user's own policy key: the agent's layer.
    User,
}

impl Decider {
    /// Whether the agent may write the value.
    pub fn is_agents(&self) -> bool {
        *self == Decider::User
    }
}

impl Readings {
    /// The value Outlook gets, and the layer it comes from.
    ///
    /// A GPO that deletes the HKLM value leaves no machine layer (its value goes at the next
    /// refresh); a GPO that deletes the user's value decides it (the value is absent).
    pub fn decide(&self) -> (Option<RegValue>, Decider) {
        if let Some(v) = &self.cloud {
            return (Some(v.clone()), Decider::Cloud);
        }
        match &self.machine_gpo {
            Some(g) if g.value.is_some() => {
                return (g.value.clone(), Decider::MachineGpo(g.clone()));
            }
            Some(_) => {}
            None => {
                if let Some(v) = &self.machine {
                    return (Some(v.clone()), Decider::Machine);
                }
            }
        }
        if let Some(g) = &self.user_gpo {
            return (g.value.clone(), Decider::UserGpo(g.clone()));
        }
        (self.user.clone(), Decider::User)
    }
}

/// What the profile wants of a value, for the text of a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// `0 (REG_DWORD)`, `".pif;.scr" (REG_SZ)`; `None`: the value must not be set.
    pub text: Option<String>,
    /// Whether the decided value already meets it.
    pub met: bool,
}

impl Want {
    /// Describes `expect` for `location`, `None` for a lock-only expectation.
    pub fn describe(expect: &Expect, met: bool) -> Option<Want> {
        let text = |v: &Value| match v {
            Value::Absent => None,
            Value::Int(i) => Some(format!("{i} (REG_DWORD)")),
            Value::Text(s) => Some(format!("{s:?} (REG_SZ)")),
            other => Some(other.to_string()),
        };
        let text = match expect {
            Expect::Equals(v) => text(v),
            Expect::OneOf { accepted, .. } => Some(format!(
                "one of {}",
                accepted
                    .iter()
                    .map(|v| text(v).unwrap_or_else(|| "not set".to_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Expect::Absent => None,
            Expect::Locked => return None,
        };
        Some(Want { text, met })
    }
}

const REFRESH: &str = "at every Group Policy refresh (every 90 to 120 minutes by default)";

fn shown(v: Option<&RegValue>) -> String {
    v.map_or("(not set)".to_owned(), ToString::to_string)
}

/// The finding's override for a value decided by `decider`; `None` when the agent's own layer
/// decides. `hive` names the user's hive (`HKEY_CURRENT_USER`, `HKEY_USERS\<SID>`); `want` is
/// what the profile expects, when known.
pub fn override_of(
    decider: &Decider,
    location: &Location,
    hive: &str,
    readings: &Readings,
    want: Option<&Want>,
) -> Option<Override> {
    let name = &location.name;
    let none_needed = want.is_some_and(|w| w.met);
    Some(match decider {
        Decider::User => return None,
        Decider::Cloud => Override {
            layer: CLOUD_POLICY.to_owned(),
            location: format!(
                "{hive}\\{} \"{name}\"",
                location.cloud_twin().unwrap_or_default()
            ),
            evidence: format!(
                "{}; Cloud Policy overrides Group Policy and locally set policy, and the Office \
                 service rewrites this key at each check-in",
                shown(readings.cloud.as_ref())
            ),
            fix: if none_needed {
                "none needed: Cloud Policy sets the value the profile expects".to_owned()
            } else {
                format!(
                    "in the Microsoft 365 Apps admin center (config.office.com, Customization > \
                     Policy Management) or Intune (Apps > Policy > Policies for Office apps), \
                     change the policy configuration that applies to this user so that {}, or \
                     remove the setting from it",
                    so_that(name, want)
                )
            },
        },
        Decider::Machine => Override {
            layer: MACHINE_POLICY.to_owned(),
            location: format!("HKEY_LOCAL_MACHINE\\{} \"{name}\"", location.key),
            evidence: format!(
                "{}; machine policy applies to every user of this computer and, by the Windows \
                 convention, outranks the same value under {hive} (that Outlook reads it there \
                 is not documented by Microsoft)",
                shown(readings.machine.as_ref())
            ),
            fix: if none_needed {
                "none needed: the machine policy holds the value the profile expects".to_owned()
            } else {
                format!(
                    "an administrator changes HKEY_LOCAL_MACHINE\\{}\\{name} so that {}, or \
                     deletes it so that the user's policy decides; Postwarden does not write \
                     machine-wide policy",
                    location.key,
                    so_that(name, want)
                )
            },
        },
        Decider::MachineGpo(g) | Decider::UserGpo(g) => {
            let machine = matches!(decider, Decider::MachineGpo(_));
            let current = if machine {
                readings.machine.as_ref()
            } else {
                readings.user.as_ref()
            };
            let does = match &g.value {
                Some(v) => format!("sets {}\\{} to {v}", g.key, g.name),
                None => format!("deletes {}\\{}", g.key, g.name),
            };
            let who = if g.archive {
                "the Group Policy registry extension's record of the policy it applied to this \
                 user (ntuser.pol, which does not name the GPO)"
                    .to_owned()
            } else if machine {
                format!("the GPO {} (Computer Configuration)", g.gpo)
            } else {
                format!("the GPO {}", g.gpo)
            };
            let mut evidence = format!("{who} {does} {REFRESH}");
            if machine {
                evidence.push_str("; machine policy outranks the user's");
            }
            if current != g.value.as_ref() {
                evidence.push_str(&format!(
                    "; the registry holds {} now, which Group Policy replaces",
                    shown(current)
                ));
            }
            let gpo = if g.archive {
                "the Group Policy object that sets it (gpresult /scope user /v names it)".to_owned()
            } else {
                format!("the GPO {} ({})", g.gpo, g.file)
            };
            Override {
                layer: GROUP_POLICY.to_owned(),
                location: format!(
                    "{} (record at byte {}: {}\\{})",
                    g.file, g.offset, g.key, g.name
                ),
                evidence,
                fix: if none_needed {
                    "none needed: the GPO enforces the value the profile expects".to_owned()
                } else {
                    let set = match want.and_then(|w| w.text.as_ref()) {
                        Some(t) => format!("sets {}\\{} to {t}", g.key, g.name),
                        None if want.is_some() => format!("deletes {}\\{}", g.key, g.name),
                        None => format!(
                            "sets {}\\{} to the value the profile expects",
                            g.key, g.name
                        ),
                    };
                    format!(
                        "change {gpo} so that it {set}, or remove the setting from it (Not \
                         Configured); Postwarden does not write a value Group Policy manages"
                    )
                },
            }
        }
    })
}

fn so_that(name: &str, want: Option<&Want>) -> String {
    match want {
        Some(Want { text: Some(t), .. }) => format!("{name} is {t}"),
        Some(Want { text: None, .. }) => format!("{name} is not set"),
        None => format!("{name} has the value the profile expects"),
    }
}

#[cfg(test)]
mod tests;
