//! Issue 12 (staged rollout): a bundle may carry a candidate profile as a preview, and the agent
//! reports its audit-mode evaluation as a `preview` item. Both are contracts, pinned here: the
//! payload without a preview is what agents from before read, the member is optional, a signed
//! bundle with a preview verifies, and a preview item round-trips as its own kind.
//! Update deliberately with `UPDATE_EXPECT=1 cargo test -p postwarden-wire --test preview`.

use std::collections::BTreeMap;

use expect_test::expect;
use postwarden_profiles::report::{Report, RunKind};
use postwarden_wire::v1::{
    BatchItem, BatchItemKind, BundlePayload, BundleProfile, BundleSchema, DeviceId, ReportBatch,
    ReportBatchSchema, FEATURES_HEADER, FEATURE_PREVIEW,
};
use postwarden_wire::{sign_bundle, verify_bundle, SigningKey};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

const V1: &str = "format = 1\nid = \"acme-mail\"\nversion = 1\ntitle = \"ACME mail\"\n\n[controls.require-tls]\ntitle = \"TLS\"\nseverity = \"high\"\nreference = \"x\"\nrationale = \"x\"\nremediation = \"x\"\nvalue = { minimum = \"starttls\" }\n";

fn time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap()
}

fn payload(preview: Option<BundleProfile>) -> BundlePayload {
    BundlePayload {
        schema: BundleSchema,
        device: DeviceId("dev-3f9a".into()),
        serial: 8,
        issued_at: time("2026-05-04T09:30:00Z"),
        profile: BundleProfile {
            id: "acme-mail".into(),
            version: 1,
            toml: V1.into(),
        },
        variables: BTreeMap::new(),
        preview,
    }
}

fn candidate() -> BundleProfile {
    BundleProfile {
        id: "acme-mail".into(),
        version: 2,
        toml: V1
            .replace("version = 1", "version = 2")
            .replace("\"starttls\"", "\"tls\""),
    }
}

#[test]
fn the_preview_member_is_optional_and_pinned() {
    let without = serde_json::to_value(payload(None)).unwrap();
    assert!(
        without.get("preview").is_none(),
        "no member at all without a preview: older agents refuse unknown members"
    );
    let mut short = payload(Some(candidate()));
    short.profile.toml = "(v1)".into();
    short.preview.as_mut().unwrap().toml = "(v2)".into();
    expect![[r#"
        {
          "schema": "postwarden.bundle/v1",
          "device": "dev-3f9a",
          "serial": 8,
          "issued_at": "2026-05-04T09:30:00Z",
          "profile": {
            "id": "acme-mail",
            "version": 1,
            "toml": "(v1)"
          },
          "variables": {},
          "preview": {
            "id": "acme-mail",
            "version": 2,
            "toml": "(v2)"
          }
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&short).unwrap());
    let with = serde_json::to_value(payload(Some(candidate()))).unwrap();
    let back: BundlePayload = serde_json::from_value(with).unwrap();
    assert_eq!(back, payload(Some(candidate())));
    let profile = back.preview_profile().unwrap().unwrap();
    assert_eq!(profile.version.0, 2);
    assert!(payload(None).preview_profile().is_none());
    assert_eq!(
        (FEATURES_HEADER, FEATURE_PREVIEW),
        ("postwarden-features", "preview")
    );
}

#[test]
fn a_signed_bundle_with_a_preview_verifies_and_a_bad_preview_names_itself() {
    let key = SigningKey::from_seed(&[9; 32]);
    let compact = sign_bundle(&payload(Some(candidate())), &key);
    let verified = verify_bundle(&compact, &key.public_jwk(), "dev-3f9a", Some(8)).unwrap();
    assert_eq!(verified.preview, Some(candidate()));
    let mut broken = candidate();
    broken.toml = "format = 1\nid = \"acme-mail\"\nversion = \"two\"\n".into();
    let err = payload(Some(broken))
        .preview_profile()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("bundle 8 (preview of acme-mail v2):3:"),
        "the error names the preview: {err}"
    );
}

fn preview_item() -> BatchItem {
    let candidate = candidate();
    let profile =
        postwarden_profiles::Profile::parse("candidate", &candidate.toml).expect("it parses");
    BatchItem {
        id: Uuid::from_u128(0x0196_9a1c_2f00_7000_8000_0000_0000_00aa),
        at: time("2026-05-04T09:31:00Z"),
        kind: BatchItemKind::Preview {
            report: Report::new(
                RunKind::Check,
                &profile,
                Vec::new(),
                Some("2026-05-04T09:31:00Z".into()),
            ),
            user: "alice".into(),
        },
    }
}

#[test]
fn a_preview_item_is_its_own_kind() {
    let item = preview_item();
    let text = serde_json::to_value(&item).unwrap();
    assert_eq!(
        (&text["id"], &text["at"], &text["kind"], &text["user"]),
        (
            &json!("01969a1c-2f00-7000-8000-0000000000aa"),
            &json!("2026-05-04T09:31:00Z"),
            &json!("preview"),
            &json!("alice")
        )
    );
    assert_eq!(text["report"]["run"], "check");
    assert_eq!(text["report"]["profile"]["version"], 2);
    let batch = ReportBatch {
        schema: ReportBatchSchema,
        items: vec![item.clone()],
    };
    let back: ReportBatch = serde_json::from_str(&serde_json::to_string(&batch).unwrap()).unwrap();
    assert_eq!(back.items, vec![item]);

    // Strict like the other kinds: an unknown member of a preview item is refused, and so is
    // a kind nobody knows (the agent's sender then drops that one item, see `BatchItem`).
    let mut extra = text.clone();
    extra["extra"] = json!(1);
    let err = serde_json::from_value::<BatchItem>(extra)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `extra`"), "{err}");
    let mut unknown = text;
    unknown["kind"] = json!("forecast");
    let err = serde_json::from_value::<BatchItem>(unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `forecast`"), "{err}");
}
