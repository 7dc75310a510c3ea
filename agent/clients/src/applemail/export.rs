//! What `export --format mobileconfig` puts into the configuration profile, from a Postwarden
//! profile: the account of its `[account]` section and every preference an enforce-mode control
//! sets (see [`super::mobileconfig`] for the payloads). Pure.

use postwarden_profiles::{Control, ControlId, ControlValue, Profile, Vars};

use super::map;
use super::mobileconfig::{AccountPayload, ForcedPreference, MailAuth, MobileconfigSpec};
use crate::mapping::MappingError;

/// Why a profile cannot become a configuration profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A control's template does not resolve.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The `[account]` section does not resolve.
    #[error("{0}")]
    Account(String),
    /// A value has no configuration-profile form.
    #[error("{location}: {value} cannot go into a configuration profile")]
    Unrepresentable { location: String, value: String },
}

/// What the configuration profile holds: the account (when the profile has `[account]`) and
/// every preference an enforce-mode control sets.
pub fn spec(
    profile: &Profile,
    vars: &Vars,
    identifier: Option<String>,
    organization: Option<String>,
) -> Result<MobileconfigSpec, ExportError> {
    let mapped = map(profile, vars, "mobileconfig")?;
    let mut forced: Vec<ForcedPreference> = Vec::new();
    for (location, value) in mapped.forced() {
        let plist = match value {
            postwarden_engine::Value::Bool(b) => plist::Value::Boolean(*b),
            postwarden_engine::Value::Int(i) => plist::Value::Integer((*i).into()),
            postwarden_engine::Value::Text(t) => plist::Value::String(t.clone()),
            other => {
                return Err(ExportError::Unrepresentable {
                    location: location.to_string(),
                    value: other.to_string(),
                })
            }
        };
        let domain = location.domain.name().to_owned();
        match &location.entry {
            None => forced.push(ForcedPreference {
                domain,
                key: location.key.clone(),
                value: plist,
            }),
            Some(entry) => {
                // An entry of a dictionary-valued key: the profile forces the whole dictionary.
                let existing = forced
                    .iter_mut()
                    .find(|f| f.domain == domain && f.key == location.key);
                match existing.and_then(|f| f.value.as_dictionary_mut()) {
                    Some(d) => {
                        d.insert(entry.clone(), plist);
                    }
                    None => forced.push(ForcedPreference {
                        domain,
                        key: location.key.clone(),
                        value: plist::Value::Dictionary(
                            [(entry.clone(), plist)].into_iter().collect(),
                        ),
                    }),
                }
            }
        }
    }
    let account = match &profile.account {
        None => None,
        Some(spec) => {
            let resolved = spec
                .resolve(vars)
                .map_err(|e| ExportError::Account(e.to_string()))?;
            // The official address: the reply-address control's, else `user.email`.
            let address = match profile.control(ControlId::ReplyAddress) {
                Some(
                    c @ Control {
                        value: ControlValue::ReplyAddress(t),
                        ..
                    },
                ) => crate::mapping::render(c, t, vars)?,
                _ => vars.get("user.email").cloned().ok_or_else(|| {
                    ExportError::Account(
                        "the account needs the user's address: pass --var user.email=VALUE"
                            .to_owned(),
                    )
                })?,
            };
            let auth = MailAuth::Password;
            Some(AccountPayload {
                account_type: resolved.account_type,
                description: profile.title.clone(),
                address,
                incoming_host: resolved.incoming_host,
                incoming_port: resolved.incoming_port,
                incoming_ssl: true,
                incoming_auth: auth,
                outgoing_host: resolved.outgoing_host,
                outgoing_port: resolved.outgoing_port,
                outgoing_ssl: true,
                outgoing_auth: auth,
            })
        }
    };
    Ok(MobileconfigSpec {
        identifier: identifier.unwrap_or_else(|| format!("org.postwarden.{}", profile.id.0)),
        display_name: profile.title.clone(),
        description: profile.description.clone(),
        organization,
        account,
        forced,
    })
}
