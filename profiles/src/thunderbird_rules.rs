//! Which Thunderbird prefs the enterprise policy engine accepts in its `Preferences` policy.
//!
//! Raw prefs in a profile are enforced through that policy, so a pref the engine would reject
//! (it logs the rejection and moves on) is refused when the profile is parsed instead.
//! Source: `Policies.sys.mjs` of Thunderbird 140/153 and the policy-templates README.

const ALLOWED_PREFIXES: &[&str] = &[
    "accessibility.",
    "app.update.",
    "browser.",
    "calendar.",
    "chat.",
    "datareporting.policy.",
    "dom.",
    "extensions.",
    "general.autoScroll",
    "general.smoothScroll",
    "geo.",
    "gfx.",
    "intl.",
    "layers.",
    "layout.",
    "mail.",
    "mailnews.",
    "media.",
    "network.",
    "pdfjs.",
    "places.",
    "print.",
    "signon.",
    "spellchecker.",
    "ui.",
    "widget.",
];

const ALLOWED_SECURITY: &[&str] = &[
    "security.default_personal_cert",
    "security.insecure_connection_text.enabled",
    "security.insecure_connection_text.pbmode.enabled",
    "security.insecure_field_warning.contextual.enabled",
    "security.mixed_content.block_active_content",
    "security.osclientcerts.autoload",
    "security.ssl.errorReporting.enabled",
    "security.tls.hello_downgrade_check",
    "security.tls.version.enable-deprecated",
    "security.warn_submit_secure_to_insecure",
];

const BLOCKED: &[&str] = &[
    "app.update.channel",
    "app.update.lastUpdateTime",
    "app.update.migrated",
];

/// Why a pref cannot be set through the `Preferences` policy, or `None` if it can.
pub fn policy_pref_refusal(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
        return Some(format!("{name:?} is not a valid pref name"));
    }
    if BLOCKED.contains(&name) {
        return Some(format!(
            "Thunderbird's policy engine never sets `{name}` (blocked for stability)"
        ));
    }
    if name.starts_with("security.") {
        return if ALLOWED_SECURITY.contains(&name) {
            None
        } else {
            Some(format!(
                "Thunderbird's policy engine only accepts these security.* prefs: {}",
                ALLOWED_SECURITY.join(", ")
            ))
        };
    }
    if ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        None
    } else {
        Some(format!(
            "Thunderbird's policy engine rejects `{name}`: allowed prefixes are {}",
            ALLOWED_PREFIXES.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::policy_pref_refusal;

    #[test]
    fn allow_list() {
        assert_eq!(policy_pref_refusal("mail.server.server1.check_time"), None);
        assert_eq!(policy_pref_refusal("signon.rememberSignons"), None);
        assert_eq!(policy_pref_refusal("security.osclientcerts.autoload"), None);
        assert!(policy_pref_refusal("security.tls.version.min").is_some());
        assert!(policy_pref_refusal("ldap_2.servers.x").is_some());
        assert!(policy_pref_refusal("app.update.channel").is_some());
        assert!(policy_pref_refusal("general.config.filename").is_some());
        assert!(policy_pref_refusal("").is_some());
    }
}
