use proptest::prelude::*;

use super::*;

/// UTF-16LE bytes of `s`, without a terminator.
fn w(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// One entry written byte by byte as [MS-GPREG] 2.2.1 lays it out.
fn entry(key: &str, value: &str, ty: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend([b'[', 0]);
    b.extend(w(key));
    b.extend([0, 0]);
    b.extend([b';', 0]);
    b.extend(w(value));
    b.extend([0, 0]);
    b.extend([b';', 0]);
    b.extend(ty.to_le_bytes());
    b.extend([b';', 0]);
    b.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
    b.extend([b';', 0]);
    b.extend(data);
    b.extend([b']', 0]);
    b
}

fn header() -> Vec<u8> {
    vec![0x50, 0x52, 0x65, 0x67, 1, 0, 0, 0]
}

const SECURITY: &str = r"Software\Policies\Microsoft\Office\16.0\Outlook\Security";

/// A local GPO's user file: a DWORD, a string, and a disabled policy.
fn sample() -> Vec<u8> {
    let mut b = header();
    b.extend(entry(SECURITY, "enablerememberpwd", 4, &[1, 0, 0, 0]));
    let mut sz = w(".exe;.com");
    sz.extend([0, 0]);
    b.extend(entry(SECURITY, "fileextensionsaddlevel1", 1, &sz));
    b.extend(entry(
        SECURITY,
        "**del.showlevel1attach",
        1,
        &[b' ', 0, 0, 0],
    ));
    b
}

#[test]
fn a_file_built_byte_by_byte_per_the_specification_parses_and_renders_back() {
    let bytes = sample();
    let file = parse(&bytes).unwrap();
    assert_eq!(file.entries.len(), 3);
    let e = &file.entries[0];
    assert_eq!(e.offset, 8);
    assert_eq!(e.key, SECURITY);
    assert_eq!(e.value, "enablerememberpwd");
    assert_eq!(e.reg_value(), RegValue::Dword(1));
    assert_eq!(
        e.action(),
        Action::Set {
            name: "enablerememberpwd".into(),
            value: RegValue::Dword(1)
        }
    );
    assert_eq!(
        file.entries[1].reg_value(),
        RegValue::Sz(".exe;.com".into())
    );
    assert_eq!(
        file.entries[2].action(),
        Action::Delete {
            name: "showlevel1attach".into()
        }
    );
    assert_eq!(render(&file), bytes, "byte for byte");
}

#[test]
fn the_header_alone_is_an_empty_file() {
    assert_eq!(parse(&header()).unwrap(), PolFile::default());
    assert_eq!(render(&PolFile::default()), header());
}

#[test]
fn every_truncation_is_refused_with_an_offset_inside_the_file() {
    let bytes = sample();
    let boundaries: Vec<usize> = parse(&bytes)
        .unwrap()
        .entries
        .iter()
        .map(|e| e.offset)
        .chain([bytes.len()])
        .collect();
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        match parse(cut) {
            Ok(file) => assert!(
                boundaries.contains(&len) || len == 8,
                "a cut at {len} inside an entry parsed: {file:?}"
            ),
            Err(e) => {
                assert!(
                    e.offset <= len,
                    "offset {} past the end {len}: {e}",
                    e.offset
                );
                assert!(e.to_string().starts_with(&format!("byte {}: ", e.offset)));
            }
        }
    }
    let e = parse(&bytes[..30]).unwrap_err();
    assert!(e.message.contains("the file ends inside an entry"), "{e}");
    let e = parse(&bytes[..5]).unwrap_err();
    assert_eq!(e.offset, 5);
    assert!(e.message.contains("header"), "{e}");
}

#[test]
fn oversized_files_are_refused_before_anything_is_read() {
    let mut big = header();
    big.resize(MAX_FILE_SIZE + 1, 0);
    let e = parse(&big).unwrap_err();
    assert_eq!(e.offset, MAX_FILE_SIZE);
    assert!(e.message.contains("16 MiB"), "{e}");
    // Exactly the limit is read (and refused here for its content, not its size).
    big.truncate(MAX_FILE_SIZE);
    let e = parse(&big).unwrap_err();
    assert_eq!(e.offset, 8);
}

#[test]
fn garbage_is_refused_naming_where() {
    let e = parse(b"REGEDIT4\r\n[HKEY_CURRENT_USER]").unwrap_err();
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("signature"), "{e}");

    let mut v2 = header();
    v2[4] = 2;
    let e = parse(&v2).unwrap_err();
    assert_eq!(
        (e.offset, e.message.as_str()),
        (4, "unsupported version 2 (only version 1 is documented)")
    );

    // Something other than `[` where an entry starts.
    let mut b = sample();
    let second = parse(&b).unwrap().entries[1].offset;
    b[second] = b'{';
    let e = parse(&b).unwrap_err();
    assert_eq!(e.offset, second);
    assert!(e.message.contains("`[` opening an entry"), "{e}");

    // A size that runs past the end: refused at the size field, nothing allocated for it.
    let mut b = header();
    let mut rec = entry("K", "v", 3, &[1, 2]);
    let size_at = rec.len() - 2 - 2 - 2 - 4; // `]`, data, `;`, then the size
    rec[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    b.extend(rec);
    let e = parse(&b).unwrap_err();
    assert_eq!(e.offset, 8 + size_at);
    assert!(e.message.contains("runs past the end"), "{e}");

    // A missing `]`.
    let mut b = header();
    let mut rec = entry("K", "v", 4, &[1, 0, 0, 0]);
    let last = rec.len() - 2;
    rec[last] = b')';
    b.extend(rec);
    let e = parse(&b).unwrap_err();
    assert_eq!(e.offset, 8 + last);
    assert!(e.message.contains("`]` closing the entry"), "{e}");

    // An unpaired surrogate in the key, named at its own offset.
    let mut b = header();
    let mut rec = entry("AB", "v", 4, &[1, 0, 0, 0]);
    rec[4..6].copy_from_slice(&0xD800u16.to_le_bytes());
    b.extend(rec);
    let e = parse(&b).unwrap_err();
    assert_eq!(e.offset, 8 + 4);
    assert!(e.message.contains("UTF-16"), "{e}");

    // An empty key.
    let mut b = header();
    b.extend(entry("", "v", 4, &[1, 0, 0, 0]));
    assert_eq!(parse(&b).unwrap_err().offset, 10);

    // An overlong value name.
    let mut b = header();
    b.extend(entry(
        "K",
        &"x".repeat(MAX_VALUE_UNITS + 1),
        4,
        &[1, 0, 0, 0],
    ));
    let e = parse(&b).unwrap_err();
    assert!(e.message.contains("longer than 16383"), "{e}");

    // Trailing bytes after the last entry.
    let mut b = sample();
    b.push(0);
    let e = parse(&b).unwrap_err();
    assert_eq!(e.offset, sample().len());
}

fn pol(entries: &[(&str, &str, RegValue)]) -> PolFile {
    let mut f = PolFile::default();
    for (k, n, v) in entries {
        f.set(k, n, v);
    }
    f
}

#[test]
fn instructions_replay_in_order() {
    let list = |s: &str| RegValue::Sz(s.into());
    let f = pol(&[
        (SECURITY, "a", RegValue::Dword(1)),
        (SECURITY, "b", RegValue::Dword(2)),
        (SECURITY, "c", RegValue::Dword(3)),
        (SECURITY, "**DeleteValues", list("b; c")),
        (SECURITY, "C", RegValue::Dword(4)),
        (r"Software\Policies\Other", "x", RegValue::Dword(5)),
        (r"Software\Policies\Other", "**DelVals.", list(" ")),
        (r"Software\Policies\Other", "y", RegValue::Dword(6)),
        (r"Software\Policies", "**DeleteKeys", list("Gone")),
        (r"Software\Policies\Gone\Deeper", "z", RegValue::Dword(7)),
        (r"Software\Policies\Gone", "w", RegValue::Dword(8)),
        (r"Software\Policies\Soft", "**soft.s", RegValue::Dword(9)),
        (r"Software\Policies\Soft", "**SecureKey", RegValue::Dword(1)),
        (r"Software\Policies\Soft", "**Comment:by hand", list("")),
    ]);
    let ix = PolIndex::new(f.clone());
    let effect = |k: &str, n: &str| ix.effect(k, n).map(|(e, _)| e);
    assert_eq!(effect(SECURITY, "A"), Some(Effect::Set(RegValue::Dword(1))));
    assert_eq!(effect(SECURITY, "b"), Some(Effect::Deleted));
    assert_eq!(
        effect(&SECURITY.to_uppercase(), "c"),
        Some(Effect::Set(RegValue::Dword(4))),
        "set again after the deletion; names and keys fold case"
    );
    assert_eq!(effect(SECURITY, "d"), None);
    assert_eq!(
        effect(r"Software\Policies\Other", "x"),
        Some(Effect::Deleted)
    );
    assert_eq!(
        effect(r"Software\Policies\Other", "y"),
        Some(Effect::Set(RegValue::Dword(6)))
    );
    assert_eq!(
        effect(r"Software\Policies\Other", "never-named"),
        Some(Effect::Deleted),
        "**DelVals deletes every value of the key"
    );
    assert_eq!(
        effect(r"Software\Policies\Gone\Deeper", "z"),
        Some(Effect::Set(RegValue::Dword(7))),
        "written after the key deletion"
    );
    assert_eq!(
        effect(r"Software\Policies\Gone\Deeper", "q"),
        Some(Effect::Deleted),
        "below a deleted key"
    );
    assert_eq!(
        effect(r"Software\Policies\Gone", "w"),
        Some(Effect::Set(RegValue::Dword(8)))
    );
    assert_eq!(
        effect(r"Software\Policies\Soft", "s"),
        Some(Effect::Soft(RegValue::Dword(9)))
    );
    let (_, decided) = ix.effect(SECURITY, "b").unwrap();
    assert_eq!(decided.value, "**DeleteValues");
    assert_eq!(
        f.entries[12].action(),
        Action::SecureKey(true),
        "**SecureKey is about the key's ACL, not a value"
    );
    assert_eq!(f.entries[13].action(), Action::Comment("by hand".into()));
}

#[test]
fn a_disabled_policy_deletes_its_value() {
    let mut f = PolFile::default();
    f.set(SECURITY, "enablerememberpwd", &RegValue::Dword(0))
        .delete(SECURITY, "enablerememberpwd");
    let parsed = parse(&render(&f)).unwrap();
    assert_eq!(
        PolIndex::new(parsed.clone())
            .effect(SECURITY, "enablerememberpwd")
            .unwrap()
            .0,
        Effect::Deleted
    );
    assert_eq!(parsed.entries[1].offset, f_len_first(&f));
}

fn f_len_first(f: &PolFile) -> usize {
    let first = PolFile {
        entries: vec![f.entries[0].clone()],
    };
    render(&first).len()
}

fn entry_strategy() -> impl Strategy<Value = PolEntry> {
    (
        "[A-Za-z0-9 \\\\._é✓-]{1,40}",
        "[A-Za-z0-9 *.;é-]{0,20}",
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(key, value, ty, data)| PolEntry {
            offset: 0,
            key,
            value,
            ty,
            data,
        })
}

proptest! {
    #[test]
    fn whatever_is_rendered_parses_back(entries in proptest::collection::vec(entry_strategy(), 0..8)) {
        let file = PolFile { entries };
        let bytes = render(&file);
        let mut back = parse(&bytes).unwrap();
        prop_assert_eq!(render(&back), bytes);
        for e in &mut back.entries {
            e.offset = 0;
        }
        prop_assert_eq!(back, file);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if bytes.len() >= 8 && bytes[0] % 2 == 0 {
            bytes[..8].copy_from_slice(&header());
        }
        match parse(&bytes) {
            Ok(file) => prop_assert_eq!(render(&file), bytes),
            Err(e) => prop_assert!(e.offset <= bytes.len()),
        }
    }
}
