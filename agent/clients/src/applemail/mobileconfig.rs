//! `export --format mobileconfig`: an Apple configuration profile for MDM (or manual install)
//! that creates the user's mail account with `com.apple.mail.managed` and forces Mail's
//! preferences with `com.apple.ManagedClient.preferences`. Pure: builds the plist; signing is in
//! `postwarden_agent_core::export::sign`.

use plist::Dictionary;
use postwarden_profiles::AccountType;

/// How the incoming and outgoing servers authenticate (`EmailAuth*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailAuth {
    /// `EmailAuthNone`: only when the profile does not require authentication.
    None,
    /// `EmailAuthPassword`.
    Password,
}

/// The `com.apple.mail.managed` payload: one account, never a password (the user is prompted,
/// and the keychain keeps it; see the Apple Mail section of the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPayload {
    pub account_type: AccountType,
    /// `EmailAddress`, also the user name for both servers.
    pub address: String,
    /// `EmailAccountDescription`.
    pub description: String,
    pub incoming_host: String,
    pub incoming_port: u16,
    pub incoming_ssl: bool,
    pub incoming_auth: MailAuth,
    pub outgoing_host: String,
    pub outgoing_port: u16,
    pub outgoing_ssl: bool,
    pub outgoing_auth: MailAuth,
}

/// One forced preference: `domain` (e.g. `com.apple.mail`), `key`, value.
#[derive(Debug, Clone, PartialEq)]
pub struct ForcedPreference {
    pub domain: String,
    pub key: String,
    pub value: plist::Value,
}

/// Everything a configuration profile is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileconfigSpec {
    /// The top-level `PayloadIdentifier` (reverse DNS); payload identifiers extend it.
    pub identifier: String,
    pub display_name: String,
    pub description: String,
    pub organization: Option<String>,
    pub account: Option<AccountPayload>,
    /// In the order they should appear; grouped by domain in the payload.
    pub forced: Vec<ForcedPreference>,
}

/// The namespace of every `PayloadUUID` Postwarden writes: a payload's UUID is the name-based
/// UUID (version 5, SHA-1) of its `PayloadIdentifier` in this namespace, so regenerating the
/// same profile gives the same UUIDs (the system then updates the installed payloads in place)
/// and distinct identifiers give distinct UUIDs. The namespace itself is
/// `uuid5(NAMESPACE_URL, "urn:postwarden:mobileconfig")`, fixed forever: changing it would make
/// every profile look new to the devices that have it.
pub const UUID_NAMESPACE: uuid::Uuid = uuid::uuid!("921224E4-C3D0-50C2-B097-55D9289B79EA");

/// `PayloadType` of the profile itself.
pub const TOP_LEVEL_TYPE: &str = "Configuration";
/// `PayloadType` of the mail account payload.
pub const ACCOUNT_PAYLOAD_TYPE: &str = "com.apple.mail.managed";
/// `PayloadType` of the custom settings ("managed preferences") payload.
pub const PREFERENCES_PAYLOAD_TYPE: &str = "com.apple.ManagedClient.preferences";
/// Appended to [`MobileconfigSpec::identifier`] for the account payload's `PayloadIdentifier`.
pub const ACCOUNT_SUFFIX: &str = ".mail.account";
/// Appended to [`MobileconfigSpec::identifier`] for the preferences payload's
/// `PayloadIdentifier`.
pub const PREFERENCES_SUFFIX: &str = ".mail.preferences";

/// The `PayloadUUID` for a payload identifier: uppercase and hyphenated, as `uuidgen` and
/// Apple's tools write it. See [`UUID_NAMESPACE`].
pub fn payload_uuid(payload_identifier: &str) -> String {
    uuid::Uuid::new_v5(&UUID_NAMESPACE, payload_identifier.as_bytes())
        .hyphenated()
        .encode_upper(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// The configuration profile for `spec`, as a plist value (a dictionary): the top-level keys,
/// then `PayloadContent` with the account payload (if any) and the preferences payload (if
/// any forced preference). Never contains a password.
pub fn build(spec: &MobileconfigSpec) -> plist::Value {
    let mut content = Vec::new();
    if let Some(account) = &spec.account {
        content.push(plist::Value::Dictionary(account_payload(
            &spec.identifier,
            account,
        )));
    }
    if !spec.forced.is_empty() {
        content.push(plist::Value::Dictionary(preferences_payload(
            &spec.identifier,
            &spec.forced,
        )));
    }

    let mut top = Dictionary::new();
    put(&mut top, "PayloadType", TOP_LEVEL_TYPE);
    top.insert("PayloadVersion".into(), plist::Value::Integer(1.into()));
    put(&mut top, "PayloadIdentifier", &spec.identifier);
    put(&mut top, "PayloadUUID", &payload_uuid(&spec.identifier));
    put(&mut top, "PayloadDisplayName", &spec.display_name);
    put(&mut top, "PayloadDescription", &spec.description);
    if let Some(organization) = &spec.organization {
        put(&mut top, "PayloadOrganization", organization);
    }
    // The account payload is user-channel only (`com.apple.mail.managed`), and Mail's
    // preferences are per user.
    put(&mut top, "PayloadScope", "User");
    top.insert("PayloadContent".into(), plist::Value::Array(content));
    plist::Value::Dictionary(top)
}

/// `value` as an XML property list with Apple's XML declaration and DOCTYPE, tab-indented, as
/// Apple's tools write it, ending with a newline.
///
/// # Panics
///
/// If `value` holds a `plist::Value::Uid`, which only binary plists can hold. [`build`] never
/// makes one (a forced preference's value is copied as given).
pub fn to_xml(value: &plist::Value) -> Vec<u8> {
    let mut out = Vec::new();
    value
        .to_writer_xml(&mut out)
        .expect("writing a plist into memory cannot fail");
    // Text files end with a newline, as Apple's own profiles do.
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    out
}

fn put(dict: &mut Dictionary, key: &str, value: &str) {
    dict.insert(key.into(), plist::Value::String(value.into()));
}

fn put_bool(dict: &mut Dictionary, key: &str, value: bool) {
    dict.insert(key.into(), plist::Value::Boolean(value));
}

fn put_int(dict: &mut Dictionary, key: &str, value: u16) {
    dict.insert(key.into(), plist::Value::Integer(u64::from(value).into()));
}

/// The keys every payload has (`CommonPayloadKeys`).
fn payload_header(payload_type: &str, identifier: &str, display_name: &str) -> Dictionary {
    let mut d = Dictionary::new();
    put(&mut d, "PayloadType", payload_type);
    d.insert("PayloadVersion".into(), plist::Value::Integer(1.into()));
    put(&mut d, "PayloadIdentifier", identifier);
    put(&mut d, "PayloadUUID", &payload_uuid(identifier));
    put(&mut d, "PayloadDisplayName", display_name);
    d
}

fn auth_name(auth: MailAuth) -> &'static str {
    match auth {
        MailAuth::None => "EmailAuthNone",
        MailAuth::Password => "EmailAuthPassword",
    }
}

fn account_payload(profile_identifier: &str, a: &AccountPayload) -> Dictionary {
    let identifier = format!("{profile_identifier}{ACCOUNT_SUFFIX}");
    let mut d = payload_header(ACCOUNT_PAYLOAD_TYPE, &identifier, &a.description);
    let account_type = match a.account_type {
        AccountType::Imap => "EmailTypeIMAP",
        AccountType::Pop => "EmailTypePOP",
    };
    put(&mut d, "EmailAccountType", account_type);
    put(&mut d, "EmailAccountDescription", &a.description);
    put(&mut d, "EmailAddress", &a.address);
    put(&mut d, "IncomingMailServerHostName", &a.incoming_host);
    put_int(&mut d, "IncomingMailServerPortNumber", a.incoming_port);
    put_bool(&mut d, "IncomingMailServerUseSSL", a.incoming_ssl);
    put(
        &mut d,
        "IncomingMailServerAuthentication",
        auth_name(a.incoming_auth),
    );
    put(&mut d, "IncomingMailServerUsername", &a.address);
    put(&mut d, "OutgoingMailServerHostName", &a.outgoing_host);
    put_int(&mut d, "OutgoingMailServerPortNumber", a.outgoing_port);
    put_bool(&mut d, "OutgoingMailServerUseSSL", a.outgoing_ssl);
    put(
        &mut d,
        "OutgoingMailServerAuthentication",
        auth_name(a.outgoing_auth),
    );
    put(&mut d, "OutgoingMailServerUsername", &a.address);
    // Mail Drop would send large attachments through iCloud instead of the organization's
    // server.
    put_bool(&mut d, "allowMailDrop", false);
    // Deliberately no IncomingPassword / OutgoingPassword: Apple allows them only in encrypted
    // profiles; the user is prompted and the keychain keeps the password.
    d
}

/// `PayloadContent` = { domain: { "Forced": [ { "mcx_preference_settings": { key: value } } ] } },
/// domains in the order they first appear in `forced`, keys in their order within a domain. A
/// key given twice for a domain keeps its first position and its last value.
fn preferences_payload(profile_identifier: &str, forced: &[ForcedPreference]) -> Dictionary {
    let identifier = format!("{profile_identifier}{PREFERENCES_SUFFIX}");
    let mut d = payload_header(PREFERENCES_PAYLOAD_TYPE, &identifier, "Mail preferences");

    let mut domains: Vec<(&str, Dictionary)> = Vec::new();
    for pref in forced {
        let settings = match domains.iter_mut().find(|(name, _)| *name == pref.domain) {
            Some((_, settings)) => settings,
            None => {
                domains.push((&pref.domain, Dictionary::new()));
                &mut domains.last_mut().expect("just pushed").1
            }
        };
        settings.insert(pref.key.clone(), pref.value.clone());
    }

    let mut content = Dictionary::new();
    for (domain, settings) in domains {
        let mut forced_item = Dictionary::new();
        forced_item.insert(
            "mcx_preference_settings".into(),
            plist::Value::Dictionary(settings),
        );
        let mut domain_dict = Dictionary::new();
        domain_dict.insert(
            "Forced".into(),
            plist::Value::Array(vec![plist::Value::Dictionary(forced_item)]),
        );
        content.insert(domain.into(), plist::Value::Dictionary(domain_dict));
    }
    d.insert("PayloadContent".into(), plist::Value::Dictionary(content));
    d
}

#[cfg(test)]
mod tests;
