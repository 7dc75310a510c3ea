use super::*;
use expect_test::expect;
use plist::Value;

fn account(account_type: AccountType) -> AccountPayload {
    AccountPayload {
        account_type,
        address: "alice@example.org".into(),
        description: "Example mail".into(),
        incoming_host: "imap.example.org".into(),
        incoming_port: 993,
        incoming_ssl: true,
        incoming_auth: MailAuth::Password,
        outgoing_host: "smtp.example.org".into(),
        outgoing_port: 587,
        outgoing_ssl: true,
        outgoing_auth: MailAuth::Password,
    }
}

fn pref(domain: &str, key: &str, value: Value) -> ForcedPreference {
    ForcedPreference {
        domain: domain.into(),
        key: key.into(),
        value,
    }
}

fn spec() -> MobileconfigSpec {
    MobileconfigSpec {
        identifier: "org.example.mail".into(),
        display_name: "Mail policy".into(),
        description: "Mail account and settings required by the security officer".into(),
        organization: Some("Example Org".into()),
        account: Some(account(AccountType::Imap)),
        // Interleaved domains: the payload groups them, in first-appearance order.
        forced: vec![
            pref("com.apple.mail", "PollTime", Value::Integer(30.into())),
            pref(
                "com.apple.mail-shared",
                "DisableURLLoading",
                Value::Boolean(true),
            ),
            pref("com.apple.mail", "AutoFetch", Value::Boolean(true)),
            pref(
                "com.apple.mail",
                "DisableInlineAttachmentViewing",
                Value::Boolean(true),
            ),
        ],
    }
}

fn dict(v: &Value) -> &Dictionary {
    v.as_dictionary().expect("a dictionary")
}

fn payloads(profile: &Value) -> &Vec<Value> {
    dict(profile)["PayloadContent"]
        .as_array()
        .expect("PayloadContent is an array")
}

fn payload<'a>(profile: &'a Value, payload_type: &str) -> &'a Dictionary {
    payloads(profile)
        .iter()
        .map(dict)
        .find(|p| p["PayloadType"].as_string() == Some(payload_type))
        .unwrap_or_else(|| panic!("no {payload_type} payload"))
}

fn has_payload(profile: &Value, payload_type: &str) -> bool {
    payloads(profile)
        .iter()
        .any(|p| dict(p)["PayloadType"].as_string() == Some(payload_type))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Int,
    Bool,
    Array,
    Dict,
}

fn kind(v: &Value) -> Option<Kind> {
    match v {
        Value::String(_) => Some(Kind::Str),
        Value::Integer(_) => Some(Kind::Int),
        Value::Boolean(_) => Some(Kind::Bool),
        Value::Array(_) => Some(Kind::Array),
        Value::Dictionary(_) => Some(Kind::Dict),
        _ => None,
    }
}

fn assert_keys(d: &Dictionary, expected: &[(&str, Kind)], what: &str) {
    for (key, want) in expected {
        let got = d
            .get(key)
            .unwrap_or_else(|| panic!("{what}: missing {key}"));
        assert_eq!(kind(got), Some(*want), "{what}: {key} = {got:?}");
    }
    let extra: Vec<_> = d
        .keys()
        .filter(|k| !expected.iter().any(|(e, _)| e == k))
        .collect();
    assert!(extra.is_empty(), "{what}: unexpected keys {extra:?}");
}

#[test]
fn top_level_has_every_key_with_its_type() {
    let profile = build(&spec());
    let top = dict(&profile);
    use Kind::*;
    assert_keys(
        top,
        &[
            ("PayloadType", Str),
            ("PayloadVersion", Int),
            ("PayloadIdentifier", Str),
            ("PayloadUUID", Str),
            ("PayloadDisplayName", Str),
            ("PayloadDescription", Str),
            ("PayloadOrganization", Str),
            ("PayloadScope", Str),
            ("PayloadContent", Array),
        ],
        "top level",
    );
    assert_eq!(top["PayloadType"].as_string(), Some("Configuration"));
    assert_eq!(top["PayloadVersion"].as_signed_integer(), Some(1));
    assert_eq!(
        top["PayloadIdentifier"].as_string(),
        Some("org.example.mail")
    );
    assert_eq!(top["PayloadDisplayName"].as_string(), Some("Mail policy"));
    assert_eq!(top["PayloadOrganization"].as_string(), Some("Example Org"));
    assert_eq!(top["PayloadScope"].as_string(), Some("User"));
    assert_eq!(payloads(&profile).len(), 2);
}

#[test]
fn organization_is_left_out_when_not_given() {
    let mut s = spec();
    s.organization = None;
    assert!(!dict(&build(&s)).contains_key("PayloadOrganization"));
}

#[test]
fn account_payload_has_every_key_with_its_type_and_value() {
    let profile = build(&spec());
    let a = payload(&profile, ACCOUNT_PAYLOAD_TYPE);
    use Kind::*;
    assert_keys(
        a,
        &[
            ("PayloadType", Str),
            ("PayloadVersion", Int),
            ("PayloadIdentifier", Str),
            ("PayloadUUID", Str),
            ("PayloadDisplayName", Str),
            ("EmailAccountType", Str),
            ("EmailAccountDescription", Str),
            ("EmailAddress", Str),
            ("IncomingMailServerHostName", Str),
            ("IncomingMailServerPortNumber", Int),
            ("IncomingMailServerUseSSL", Bool),
            ("IncomingMailServerAuthentication", Str),
            ("IncomingMailServerUsername", Str),
            ("OutgoingMailServerHostName", Str),
            ("OutgoingMailServerPortNumber", Int),
            ("OutgoingMailServerUseSSL", Bool),
            ("OutgoingMailServerAuthentication", Str),
            ("OutgoingMailServerUsername", Str),
            ("allowMailDrop", Bool),
        ],
        "account payload",
    );
    let s = |k: &str| a[k].as_string().unwrap().to_owned();
    let i = |k: &str| a[k].as_signed_integer().unwrap();
    let b = |k: &str| a[k].as_boolean().unwrap();
    assert_eq!(s("PayloadIdentifier"), "org.example.mail.mail.account");
    assert_eq!(i("PayloadVersion"), 1);
    assert_eq!(s("EmailAccountType"), "EmailTypeIMAP");
    assert_eq!(s("EmailAccountDescription"), "Example mail");
    assert_eq!(s("EmailAddress"), "alice@example.org");
    assert_eq!(s("IncomingMailServerHostName"), "imap.example.org");
    assert_eq!(i("IncomingMailServerPortNumber"), 993);
    assert!(b("IncomingMailServerUseSSL"));
    assert_eq!(s("IncomingMailServerAuthentication"), "EmailAuthPassword");
    assert_eq!(s("IncomingMailServerUsername"), "alice@example.org");
    assert_eq!(s("OutgoingMailServerHostName"), "smtp.example.org");
    assert_eq!(i("OutgoingMailServerPortNumber"), 587);
    assert!(b("OutgoingMailServerUseSSL"));
    assert_eq!(s("OutgoingMailServerAuthentication"), "EmailAuthPassword");
    assert_eq!(s("OutgoingMailServerUsername"), "alice@example.org");
    assert!(!b("allowMailDrop"));
}

#[test]
fn pop_and_imap_and_no_authentication() {
    let mut s = spec();
    let mut pop = account(AccountType::Pop);
    pop.incoming_port = 995;
    pop.incoming_ssl = false;
    pop.outgoing_auth = MailAuth::None;
    s.account = Some(pop);
    let profile = build(&s);
    let a = payload(&profile, ACCOUNT_PAYLOAD_TYPE);
    assert_eq!(a["EmailAccountType"].as_string(), Some("EmailTypePOP"));
    assert_eq!(
        a["IncomingMailServerPortNumber"].as_signed_integer(),
        Some(995)
    );
    assert_eq!(a["IncomingMailServerUseSSL"], Value::Boolean(false));
    assert_eq!(
        a["IncomingMailServerAuthentication"].as_string(),
        Some("EmailAuthPassword")
    );
    assert_eq!(
        a["OutgoingMailServerAuthentication"].as_string(),
        Some("EmailAuthNone")
    );

    let profile = build(&spec());
    let a = payload(&profile, ACCOUNT_PAYLOAD_TYPE);
    assert_eq!(a["EmailAccountType"].as_string(), Some("EmailTypeIMAP"));
}

fn all_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Dictionary(d) => {
            for (k, v) in d {
                out.push(k.clone());
                all_keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| all_keys(v, out)),
        _ => {}
    }
}

#[test]
fn never_a_password_key() {
    for account_type in [AccountType::Imap, AccountType::Pop] {
        let mut s = spec();
        s.account = Some(account(account_type));
        let mut keys = Vec::new();
        all_keys(&build(&s), &mut keys);
        let passwords: Vec<_> = keys.iter().filter(|k| k.contains("Password")).collect();
        assert!(passwords.is_empty(), "{passwords:?}");
        let xml = String::from_utf8(to_xml(&build(&s))).unwrap();
        assert!(!xml.contains("IncomingPassword"));
        assert!(!xml.contains("OutgoingPassword"));
    }
}

#[test]
fn uuids_are_stable_unique_and_written_as_apple_does() {
    let a = build(&spec());
    let b = build(&spec());
    assert_eq!(a, b, "the same spec gives the same profile");

    let mut uuids = vec![dict(&a)["PayloadUUID"].as_string().unwrap().to_owned()];
    for p in payloads(&a) {
        uuids.push(dict(p)["PayloadUUID"].as_string().unwrap().to_owned());
    }
    assert_eq!(uuids.len(), 3);
    let mut unique = uuids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{uuids:?}");

    for u in &uuids {
        let parsed = uuid::Uuid::parse_str(u).unwrap();
        assert_eq!(parsed.get_version_num(), 5, "{u}");
        assert_eq!(u, &u.to_uppercase());
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }

    // Pinned values (computed independently with Python's uuid.uuid5): a change here makes
    // every deployed profile look new to the devices.
    assert_eq!(uuids[0], "0BFC8AC6-AD15-59B6-8795-A1F444D3271C");
    assert_eq!(uuids[1], "4465FA41-C082-599D-9DE0-1423C33358C5");
    assert_eq!(uuids[2], "BA468111-BB7B-51F9-8124-D3B489D1384A");
    assert_eq!(
        UUID_NAMESPACE,
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:postwarden:mobileconfig")
    );

    // Another identifier, other UUIDs.
    let mut other = spec();
    other.identifier = "org.example.other".into();
    assert_ne!(dict(&build(&other))["PayloadUUID"], dict(&a)["PayloadUUID"]);
}

#[test]
fn forced_preferences_are_grouped_by_domain_in_first_appearance_order() {
    let profile = build(&spec());
    let p = payload(&profile, PREFERENCES_PAYLOAD_TYPE);
    use Kind::*;
    assert_keys(
        p,
        &[
            ("PayloadType", Str),
            ("PayloadVersion", Int),
            ("PayloadIdentifier", Str),
            ("PayloadUUID", Str),
            ("PayloadDisplayName", Str),
            ("PayloadContent", Dict),
        ],
        "preferences payload",
    );
    assert_eq!(
        p["PayloadIdentifier"].as_string(),
        Some("org.example.mail.mail.preferences")
    );
    let content = dict(&p["PayloadContent"]);
    let domains: Vec<_> = content.keys().map(String::as_str).collect();
    assert_eq!(domains, ["com.apple.mail", "com.apple.mail-shared"]);

    let settings = |domain: &str| {
        let forced = dict(&content[domain])["Forced"].as_array().unwrap();
        assert_eq!(forced.len(), 1);
        assert_eq!(dict(&content[domain]).len(), 1, "only Forced");
        let item = dict(&forced[0]);
        assert_eq!(item.len(), 1, "only mcx_preference_settings");
        dict(&item["mcx_preference_settings"]).clone()
    };
    let mail = settings("com.apple.mail");
    let keys: Vec<_> = mail.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["PollTime", "AutoFetch", "DisableInlineAttachmentViewing"]
    );
    assert_eq!(mail["PollTime"], Value::Integer(30.into()));
    assert_eq!(mail["AutoFetch"], Value::Boolean(true));
    let shared = settings("com.apple.mail-shared");
    assert_eq!(shared.len(), 1);
    assert_eq!(shared["DisableURLLoading"], Value::Boolean(true));
}

#[test]
fn a_key_forced_twice_keeps_its_first_place_and_last_value() {
    let mut s = spec();
    s.forced = vec![
        pref("com.apple.mail", "PollTime", Value::Integer(5.into())),
        pref("com.apple.mail", "AutoFetch", Value::Boolean(true)),
        pref("com.apple.mail", "PollTime", Value::Integer(30.into())),
    ];
    let profile = build(&s);
    let p = payload(&profile, PREFERENCES_PAYLOAD_TYPE);
    let forced = dict(&dict(&p["PayloadContent"])["com.apple.mail"])["Forced"]
        .as_array()
        .unwrap();
    let settings = dict(&dict(&forced[0])["mcx_preference_settings"]);
    let keys: Vec<_> = settings.keys().map(String::as_str).collect();
    assert_eq!(keys, ["PollTime", "AutoFetch"]);
    assert_eq!(settings["PollTime"], Value::Integer(30.into()));
}

#[test]
fn payloads_are_left_out_when_there_is_nothing_to_put_in_them() {
    let mut s = spec();
    s.forced.clear();
    let profile = build(&s);
    assert!(has_payload(&profile, ACCOUNT_PAYLOAD_TYPE));
    assert!(!has_payload(&profile, PREFERENCES_PAYLOAD_TYPE));
    assert_eq!(payloads(&profile).len(), 1);

    let mut s = spec();
    s.account = None;
    let profile = build(&s);
    assert!(!has_payload(&profile, ACCOUNT_PAYLOAD_TYPE));
    assert!(has_payload(&profile, PREFERENCES_PAYLOAD_TYPE));

    s.forced.clear();
    assert!(payloads(&build(&s)).is_empty());
}

#[test]
fn xml_reads_back_as_the_same_value() {
    let profile = build(&spec());
    let xml = to_xml(&profile);
    let back = Value::from_reader_xml(xml.as_slice()).unwrap();
    assert_eq!(back, profile);
}

#[test]
fn xml_snapshot() {
    let mut s = spec();
    s.forced.push(pref(
        "com.apple.mail",
        "UserHeaders",
        Value::Dictionary(Dictionary::from_iter([(
            "Reply-To".to_owned(),
            Value::String("security & <it>@example.org".into()),
        )])),
    ));
    let xml = String::from_utf8(to_xml(&build(&s))).unwrap();
    expect![[r#"
        <?xml version="1.0" encoding="UTF-8"?>
        <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
        <plist version="1.0">
        <dict>
        	<key>PayloadType</key>
        	<string>Configuration</string>
        	<key>PayloadVersion</key>
        	<integer>1</integer>
        	<key>PayloadIdentifier</key>
        	<string>org.example.mail</string>
        	<key>PayloadUUID</key>
        	<string>0BFC8AC6-AD15-59B6-8795-A1F444D3271C</string>
        	<key>PayloadDisplayName</key>
        	<string>Mail policy</string>
        	<key>PayloadDescription</key>
        	<string>Mail account and settings required by the security officer</string>
        	<key>PayloadOrganization</key>
        	<string>Example Org</string>
        	<key>PayloadScope</key>
        	<string>User</string>
        	<key>PayloadContent</key>
        	<array>
        		<dict>
        			<key>PayloadType</key>
        			<string>com.apple.mail.managed</string>
        			<key>PayloadVersion</key>
        			<integer>1</integer>
        			<key>PayloadIdentifier</key>
        			<string>org.example.mail.mail.account</string>
        			<key>PayloadUUID</key>
        			<string>4465FA41-C082-599D-9DE0-1423C33358C5</string>
        			<key>PayloadDisplayName</key>
        			<string>Example mail</string>
        			<key>EmailAccountType</key>
        			<string>EmailTypeIMAP</string>
        			<key>EmailAccountDescription</key>
        			<string>Example mail</string>
        			<key>EmailAddress</key>
        			<string>alice@example.org</string>
        			<key>IncomingMailServerHostName</key>
        			<string>imap.example.org</string>
        			<key>IncomingMailServerPortNumber</key>
        			<integer>993</integer>
        			<key>IncomingMailServerUseSSL</key>
        			<true/>
        			<key>IncomingMailServerAuthentication</key>
        			<string>EmailAuthPassword</string>
        			<key>IncomingMailServerUsername</key>
        			<string>alice@example.org</string>
        			<key>OutgoingMailServerHostName</key>
        			<string>smtp.example.org</string>
        			<key>OutgoingMailServerPortNumber</key>
        			<integer>587</integer>
        			<key>OutgoingMailServerUseSSL</key>
        			<true/>
        			<key>OutgoingMailServerAuthentication</key>
        			<string>EmailAuthPassword</string>
        			<key>OutgoingMailServerUsername</key>
        			<string>alice@example.org</string>
        			<key>allowMailDrop</key>
        			<false/>
        		</dict>
        		<dict>
        			<key>PayloadType</key>
        			<string>com.apple.ManagedClient.preferences</string>
        			<key>PayloadVersion</key>
        			<integer>1</integer>
        			<key>PayloadIdentifier</key>
        			<string>org.example.mail.mail.preferences</string>
        			<key>PayloadUUID</key>
        			<string>BA468111-BB7B-51F9-8124-D3B489D1384A</string>
        			<key>PayloadDisplayName</key>
        			<string>Mail preferences</string>
        			<key>PayloadContent</key>
        			<dict>
        				<key>com.apple.mail</key>
        				<dict>
        					<key>Forced</key>
        					<array>
        						<dict>
        							<key>mcx_preference_settings</key>
        							<dict>
        								<key>PollTime</key>
        								<integer>30</integer>
        								<key>AutoFetch</key>
        								<true/>
        								<key>DisableInlineAttachmentViewing</key>
        								<true/>
        								<key>UserHeaders</key>
        								<dict>
        									<key>Reply-To</key>
        									<string>security &amp; &lt;it&gt;@example.org</string>
        								</dict>
        							</dict>
        						</dict>
        					</array>
        				</dict>
        				<key>com.apple.mail-shared</key>
        				<dict>
        					<key>Forced</key>
        					<array>
        						<dict>
        							<key>mcx_preference_settings</key>
        							<dict>
        								<key>DisableURLLoading</key>
        								<true/>
        							</dict>
        						</dict>
        					</array>
        				</dict>
        			</dict>
        		</dict>
        	</array>
        </dict>
        </plist>
    "#]]
    .assert_eq(&xml);
}
