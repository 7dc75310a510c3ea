use super::*;

fn base() -> &'static str {
    postwarden_profiles::builtin::BUILTIN[0].1
}

/// The built-in profile as version 2, with `edit` applied.
fn v2(edit: impl FnOnce(String) -> String) -> String {
    edit(base().replacen("version = 1\n", "version = 2\n", 1))
}

/// The built-in profile without the `[section]` that starts with `start` (up to the next one).
fn without(text: &str, start: &str, next: &str) -> String {
    let from = text.find(start).expect("section present");
    let to = text.find(next).expect("next section present");
    format!("{}{}", &text[..from], &text[to..])
}

#[test]
fn identical_versions_differ_in_nothing() {
    let d = diff(base(), base()).unwrap();
    assert!(d.controls.is_empty(), "{d:?}");
    assert_eq!((d.id.as_str(), d.from, d.to), ("bsi-m5.57", 1, 1));
    // Only the version, a title and comments changed: still nothing per control.
    let cosmetic = v2(|t| {
        t.replacen("# Postwarden baseline", "# Edited", 1).replacen(
            "title = \"No saved passwords\"",
            "title = \"Passwords are not saved\"",
            1,
        )
    });
    let d = diff(base(), &cosmetic).unwrap();
    assert!(d.controls.is_empty(), "{d:?}");
    assert_eq!((d.from, d.to), (1, 2));
}

#[test]
fn a_changed_value_is_shown_as_the_toml_wrote_it() {
    let changed = v2(|t| t.replacen("value = { minutes = 30 }", "value = { minutes = 15 }", 1));
    let d = diff(base(), &changed).unwrap();
    assert_eq!(d.controls.len(), 1, "{d:?}");
    let c = &d.controls[0];
    assert_eq!(c.control, "mail-check-interval");
    assert_eq!(c.change, Change::Changed);
    assert!(c.value_changed && !c.mode_changed);
    assert_eq!(c.value_from, Some(serde_json::json!({"minutes": 30})));
    assert_eq!(c.value_to, Some(serde_json::json!({"minutes": 15})));
    assert_eq!(
        serde_json::to_string(&d).unwrap(),
        r#"{"id":"bsi-m5.57","from":1,"to":2,"controls":[{"control":"mail-check-interval","change":"changed","value_from":{"minutes":30},"value_to":{"minutes":15},"mode_from":"enforce","mode_to":"enforce","value_changed":true,"mode_changed":false}]}"#
    );
}

#[test]
fn modes_are_compared_as_they_take_effect() {
    // The profile-wide mode flips every control's effective mode (and the raw prefs' too).
    let audit = v2(|t| t.replacen("mode = \"enforce\"", "mode = \"audit\"", 1));
    let d = diff(base(), &audit).unwrap();
    assert_eq!(d.controls.len(), 11, "{d:?}");
    assert!(d
        .controls
        .iter()
        .all(|c| c.mode_changed && !c.value_changed));
    assert_eq!(d.controls[0].mode_from.as_deref(), Some("enforce"));
    assert_eq!(d.controls[0].mode_to.as_deref(), Some("audit"));
    // One control's own mode: only that control.
    let one = v2(|t| {
        t.replacen(
            "[controls.require-tls]\n",
            "[controls.require-tls]\nmode = \"audit\"\n",
            1,
        )
    });
    let d = diff(base(), &one).unwrap();
    assert_eq!(d.controls.len(), 1, "{d:?}");
    assert_eq!(d.controls[0].control, "require-tls");
    assert!(d.controls[0].mode_changed && !d.controls[0].value_changed);
    // Writing out the default mode changes nothing.
    let explicit = v2(|t| {
        t.replacen(
            "[controls.require-tls]\n",
            "[controls.require-tls]\nmode = \"enforce\"\n",
            1,
        )
    });
    assert!(diff(base(), &explicit).unwrap().controls.is_empty());
}

#[test]
fn added_and_removed_controls() {
    let fewer = without(
        base(),
        "[controls.mailbox-size-limit]",
        "[controls.settings-locked]",
    );
    let d = diff(base(), &fewer).unwrap();
    assert_eq!(d.controls.len(), 1);
    let c = &d.controls[0];
    assert_eq!(
        (c.control.as_str(), c.change),
        ("mailbox-size-limit", Change::Removed)
    );
    assert!(c.value_from.is_some() && c.value_to.is_none());
    assert_eq!(
        (c.mode_from.as_deref(), c.mode_to.as_deref()),
        (Some("enforce"), None)
    );
    let json = serde_json::to_value(c).unwrap();
    assert!(
        json.get("value_to").is_none() && json.get("mode_to").is_none(),
        "{json}"
    );

    let d = diff(&fewer, base()).unwrap();
    assert_eq!(d.controls[0].change, Change::Added);
    assert_eq!(d.controls[0].control, "mailbox-size-limit");
    assert_eq!(
        d.controls[0].value_to.as_ref().unwrap()["maximum_mb"],
        10000
    );
}

#[test]
fn raw_prefs_and_the_account_are_pseudo_controls() {
    let raw = v2(|t| {
        format!(
            "{t}\n[raw.thunderbird]\nmode = \"audit\"\nprefs = {{ \"mail.spam.manualMark\" = true }}\n"
        )
    });
    let d = diff(base(), &raw).unwrap();
    assert_eq!(d.controls.len(), 1, "{d:?}");
    let c = &d.controls[0];
    assert_eq!(
        (c.control.as_str(), c.change),
        ("raw.thunderbird", Change::Added)
    );
    assert_eq!(
        c.value_to,
        Some(serde_json::json!({"mail.spam.manualMark": true}))
    );
    assert_eq!(c.mode_to.as_deref(), Some("audit"));

    let raw2 = raw.replace("manualMark\" = true", "manualMark\" = false");
    let d = diff(&raw, &raw2).unwrap();
    assert_eq!(d.controls[0].change, Change::Changed);
    assert!(d.controls[0].value_changed);

    // The account section, which has no mode.
    let start = base().find("[account]").unwrap();
    let no_account = base()[..start].to_owned();
    let d = diff(base(), &no_account).unwrap();
    assert_eq!(d.controls.len(), 1, "{d:?}");
    let c = &d.controls[0];
    assert_eq!((c.control.as_str(), c.change), ("account", Change::Removed));
    assert_eq!(
        c.value_from.as_ref().unwrap()["type"],
        "{{ mail.account_type }}"
    );
    assert!(c.mode_from.is_none() && !c.mode_changed);
    let changed = base().replace(
        "incoming_host = \"{{ mail.incoming_host }}\"",
        "incoming_host = \"imap.example.org\"",
    );
    let d = diff(base(), &changed).unwrap();
    assert_eq!(d.controls[0].control, "account");
    assert!(d.controls[0].value_changed && !d.controls[0].mode_changed);
}

#[test]
fn invalid_versions_are_errors_naming_their_side() {
    let e = diff(base(), "id = 3").unwrap_err();
    assert_eq!(e.file, "to");
    let e = diff("id = \"x\"\nversion = [\n", base()).unwrap_err();
    assert_eq!(e.file, "from");
    assert!(e.line >= 2, "{e}");
    let bad_value = base().replacen("value = { minutes = 30 }", "value = { minutes = 1 }", 1);
    let e = diff(base(), &bad_value).unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("controls.mail-check-interval.value.minutes")
    );
    assert_eq!(e.file, "to");
    let other = base().replacen("id = \"bsi-m5.57\"", "id = \"other\"", 1);
    let e = diff(base(), &other).unwrap_err();
    assert_eq!((e.file.as_str(), e.field.as_deref()), ("to", Some("id")));
    assert!(e.message.contains("\"other\""), "{e}");
}
