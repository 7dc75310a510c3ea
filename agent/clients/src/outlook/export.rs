//! `export --format reg`: the policy part of a profile as a `.reg` file, for administrators who
//! roll settings out with Group Policy (or `reg import`) instead of the agent.
//!
//! Only policy values are exported: account values live in each user's MAPI profile, differ per
//! account, and have no policy form. The file is UTF-16LE with a BOM, as regedit writes it
//! (Wine's and Windows' importers mangle some types in 8-bit files).

use postwarden_engine::{Expect, Value};
use postwarden_registry::regfile::{self, Entry, Op, RegFile, Section};
use postwarden_registry::{KeyPath, RegValue, Root};

use super::mapping::{Form, Mapped};

/// The value a policy location is set to, `None` for "delete it".
fn policy_data(form: Form, expect: &Expect) -> Option<RegValue> {
    let value = match expect {
        Expect::Equals(v) => v,
        Expect::OneOf { repair, .. } => repair,
        Expect::Absent | Expect::Locked => return None,
    };
    match (form, value) {
        (Form::PolicyDword, Value::Int(i)) => u32::try_from(*i).ok().map(RegValue::Dword),
        (Form::PolicyText, Value::Text(s)) => Some(RegValue::Sz(s.clone())),
        _ => None,
    }
}

/// The `.reg` model of the policy part, keys in the order the profile's controls name them.
pub fn policy_file(mapped: &Mapped) -> RegFile {
    let mut file = RegFile {
        sections: Vec::new(),
    };
    for d in mapped.policy_part() {
        let key = KeyPath::new(Root::CurrentUser, d.location.key.as_str());
        let op = match policy_data(d.location.form, &d.expect) {
            Some(v) => Op::Set(v),
            None => Op::Delete,
        };
        let section = match file.sections.iter_mut().position(|s| s.key == key) {
            Some(i) => &mut file.sections[i],
            None => {
                file.sections.push(Section {
                    key,
                    delete: false,
                    entries: Vec::new(),
                });
                file.sections.last_mut().expect("just pushed")
            }
        };
        if !section
            .entries
            .iter()
            .any(|e| e.name.eq_ignore_ascii_case(&d.location.name))
        {
            section.entries.push(Entry {
                name: d.location.name.clone(),
                op,
            });
        }
    }
    file
}

/// The policy part as `.reg` file bytes.
pub fn render_reg(mapped: &Mapped) -> Vec<u8> {
    regfile::render(&policy_file(mapped))
}
