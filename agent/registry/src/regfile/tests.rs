use proptest::prelude::*;

use super::*;

fn key(path: &str) -> KeyPath {
    KeyPath::parse(path).unwrap()
}

fn set(name: &str, value: RegValue) -> Entry {
    Entry {
        name: name.into(),
        op: Op::Set(value),
    }
}

fn section(path: &str, entries: Vec<Entry>) -> Section {
    Section {
        key: key(path),
        delete: false,
        entries,
    }
}

/// The text as regedit stores it: UTF-16LE after the byte-order mark FF FE.
fn utf16(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xfe];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

fn text_of(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes[2..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

/// Written out by hand in regedit's format. Importing it into Wine (`regedit /s`) and exporting
/// the key again (`reg export`) gives these lines back byte for byte, less the two deletions.
const EXPORT: &str = "Windows Registry Editor Version 5.00\r\n\
\r\n\
[-HKEY_CURRENT_USER\\Software\\Postwarden\\Old]\r\n\
\r\n\
[HKEY_CURRENT_USER\\Software\\Postwarden\\Test]\r\n\
@=\"Default 📫\"\r\n\
\"Blob\"=hex:00,01,02,03,04,05,06,07,08,09,0a,0b,0c,0d,0e,0f,10,11,12,13,14,15,\\\r\n\
\x20 16,17,18,19,1a,1b,1c,1d,1e,1f,20,21,22,23,24,25,26,27\r\n\
\"Count\"=dword:0000001f\r\n\
\"Gone\"=-\r\n\
\"Path\"=hex(2):25,00,41,00,50,00,50,00,44,00,41,00,54,00,41,00,25,00,5c,00,50,\\\r\n\
\x20 00,6f,00,73,00,74,00,77,00,61,00,72,00,64,00,65,00,6e,00,00,00\r\n\
\"Quoted\"=\"say \\\"hi\\\" from C:\\\\Mail ü€\"\r\n\
\"Servers\"=hex(7):69,00,6d,00,61,00,70,00,2e,00,65,00,78,00,61,00,6d,00,70,00,\\\r\n\
\x20 6c,00,65,00,2e,00,6f,00,72,00,67,00,00,00,73,00,6d,00,74,00,70,00,2e,00,65,\\\r\n\
\x20 00,78,00,61,00,6d,00,70,00,6c,00,65,00,2e,00,6f,00,72,00,67,00,00,00,00,00\r\n\
\"Size\"=hex(b):02,00,00,00,01,00,00,00\r\n\
\r\n";

fn export_model() -> RegFile {
    RegFile {
        sections: vec![
            Section {
                key: key(r"HKEY_CURRENT_USER\Software\Postwarden\Old"),
                delete: true,
                entries: vec![],
            },
            section(
                r"HKEY_CURRENT_USER\Software\Postwarden\Test",
                vec![
                    set("", RegValue::Sz("Default 📫".into())),
                    set("Blob", RegValue::Binary((0..40).collect())),
                    set("Count", RegValue::Dword(31)),
                    Entry {
                        name: "Gone".into(),
                        op: Op::Delete,
                    },
                    set("Path", RegValue::ExpandSz(r"%APPDATA%\Postwarden".into())),
                    set("Quoted", RegValue::Sz(r#"say "hi" from C:\Mail ü€"#.into())),
                    set(
                        "Servers",
                        RegValue::MultiSz(vec![
                            "imap.example.org".into(),
                            "smtp.example.org".into(),
                        ]),
                    ),
                    set("Size", RegValue::Qword(0x1_0000_0002)),
                ],
            ),
        ],
    }
}

#[test]
fn regedit_export_parses_and_renders_back_byte_identical() {
    let bytes = utf16(EXPORT);
    assert_eq!(&bytes[..6], &[0xff, 0xfe, b'W', 0, b'i', 0]);
    let file = parse(&bytes).unwrap();
    assert_eq!(file, export_model());
    assert_eq!(text_of(&render(&file)), EXPORT);
    assert_eq!(render(&file), bytes);
}

/// `complex_data_test` from Wine's reg.exe conformance tests (programs/reg/tests/export.c),
/// which pass against Windows' own `reg export`.
#[test]
fn renders_what_windows_reg_export_writes() {
    let expected = "Windows Registry Editor Version 5.00\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test]\r\n\
\"DWORD\"=dword:00000100\r\n\
\"String\"=\"Your text here...\"\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test\\Subkey1]\r\n\
\"Binary\"=hex:11,22,33,44\r\n\
\"Undefined hex\"=hex(100):25,50,41,54,48,25,00\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test\\Subkey2a]\r\n\
\"double\\\"quote\"=\"\\\"Hello, World!\\\"\"\r\n\
\"single'quote\"=dword:00000008\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test\\Subkey2a\\Subkey2b]\r\n\
@=\"Default value name\"\r\n\
\"Multiple strings\"=hex(7):4c,00,69,00,6e,00,65,00,31,00,00,00,4c,00,69,00,6e,\\\r\n\
\x20 00,65,00,32,00,00,00,4c,00,69,00,6e,00,65,00,33,00,00,00,00,00\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test\\Subkey3a]\r\n\
\"Backslash\"=\"Use \\\\\\\\ to escape a backslash\"\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test\\Subkey3a\\Subkey3b]\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test\\Subkey3a\\Subkey3b\\Subkey3c]\r\n\
\"String expansion\"=hex(2):25,00,48,00,4f,00,4d,00,45,00,25,00,5c,00,25,00,50,\\\r\n\
\x20 00,41,00,54,00,48,00,25,00,00,00\r\n\
\"Zero data type\"=hex(0):56,61,6c,75,65,00\r\n\r\n\
[HKEY_CURRENT_USER\\Software\\Wine\\reg_test\\Subkey4]\r\n\
@=dword:12345678\r\n\
\"43981\"=hex(abcd):56,61,6c,75,65,00\r\n\r\n";
    let base = r"HKEY_CURRENT_USER\Software\Wine\reg_test";
    let other = |ty, data: &[u8]| RegValue::Other {
        ty,
        data: data.to_vec(),
    };
    let model = RegFile {
        sections: vec![
            section(
                base,
                vec![
                    set("DWORD", RegValue::Dword(0x100)),
                    set("String", RegValue::Sz("Your text here...".into())),
                ],
            ),
            section(
                &format!(r"{base}\Subkey1"),
                vec![
                    set("Binary", RegValue::Binary(vec![0x11, 0x22, 0x33, 0x44])),
                    set("Undefined hex", other(0x100, b"%PATH%\0")),
                ],
            ),
            section(
                &format!(r"{base}\Subkey2a"),
                vec![
                    set("double\"quote", RegValue::Sz("\"Hello, World!\"".into())),
                    set("single'quote", RegValue::Dword(8)),
                ],
            ),
            section(
                &format!(r"{base}\Subkey2a\Subkey2b"),
                vec![
                    set("", RegValue::Sz("Default value name".into())),
                    set(
                        "Multiple strings",
                        RegValue::MultiSz(vec!["Line1".into(), "Line2".into(), "Line3".into()]),
                    ),
                ],
            ),
            section(
                &format!(r"{base}\Subkey3a"),
                vec![set(
                    "Backslash",
                    RegValue::Sz(r"Use \\ to escape a backslash".into()),
                )],
            ),
            section(&format!(r"{base}\Subkey3a\Subkey3b"), vec![]),
            section(
                &format!(r"{base}\Subkey3a\Subkey3b\Subkey3c"),
                vec![
                    set(
                        "String expansion",
                        RegValue::ExpandSz(r"%HOME%\%PATH%".into()),
                    ),
                    set("Zero data type", other(0, b"Value\0")),
                ],
            ),
            section(
                &format!(r"{base}\Subkey4"),
                vec![
                    set("", RegValue::Dword(0x12345678)),
                    set("43981", other(0xabcd, b"Value\0")),
                ],
            ),
        ],
    };
    assert_eq!(text_of(&render(&model)), expected);
    assert_eq!(parse(&utf16(expected)).unwrap(), model);
}

/// Where Wine's regedit and reg.exe break hex lines (checked against `wine reg export`): after a
/// comma once the line reaches 77 characters, so 25 bytes on each continuation line, and after
/// the first byte when the name alone is that long.
#[test]
fn hex_lines_wrap_where_regedit_wraps_them() {
    let render_one = |name: &str, value: RegValue| {
        let file = RegFile {
            sections: vec![section("HKCU", vec![set(name, value)])],
        };
        text_of(&render(&file))
    };
    let bin = render_one("bin", RegValue::Binary((0..100).collect()));
    let lines: Vec<&str> = bin.lines().skip(3).take(5).collect();
    assert_eq!(
        lines,
        [
            "\"bin\"=hex:00,01,02,03,04,05,06,07,08,09,0a,0b,0c,0d,0e,0f,10,11,12,13,14,15,16,\\",
            "  17,18,19,1a,1b,1c,1d,1e,1f,20,21,22,23,24,25,26,27,28,29,2a,2b,2c,2d,2e,2f,\\",
            "  30,31,32,33,34,35,36,37,38,39,3a,3b,3c,3d,3e,3f,40,41,42,43,44,45,46,47,48,\\",
            "  49,4a,4b,4c,4d,4e,4f,50,51,52,53,54,55,56,57,58,59,5a,5b,5c,5d,5e,5f,60,61,\\",
            "  62,63",
        ]
    );
    let long_name = "n".repeat(90);
    let long = render_one(&long_name, RegValue::Binary((0..10).collect()));
    assert!(long.contains(&format!(
        "\"{long_name}\"=hex:00,\\\r\n  01,02,03,04,05,06,07,08,09\r\n"
    )));
    // Exactly 25 bytes fit a continuation line: no `\` after the last byte.
    let exact = render_one("a", RegValue::Binary(vec![0xab; 23 + 25]));
    assert!(exact.ends_with(&format!("  {}\r\n\r\n", ["ab"; 25].join(","))));
    assert_eq!(
        render_one("e", RegValue::Binary(vec![])).lines().nth(3),
        Some("\"e\"=hex:")
    );
}

#[test]
fn strings_a_quoted_string_cannot_carry_go_out_as_hex1() {
    for text in ["a\0b", "line 1\r\nline 2", "cr\r", ""] {
        let file = RegFile {
            sections: vec![section(
                "HKCU\\x",
                vec![set("v", RegValue::Sz(text.into()))],
            )],
        };
        let rendered = text_of(&render(&file));
        let quoted = !text.contains(['\0', '\r', '\n']);
        assert_eq!(rendered.contains("\"v\"=hex(1):"), !quoted, "{rendered}");
        assert_eq!(parse(&render(&file)).unwrap(), file);
    }
    // Names have no hex form: line breaks in them are escaped as Wine escapes them.
    let file = RegFile {
        sections: vec![section("HKCU", vec![set("a\nb\r", RegValue::Dword(1))])],
    };
    assert!(text_of(&render(&file)).contains("\"a\\nb\\r\"=dword:00000001"));
    assert_eq!(parse(&render(&file)).unwrap(), file);
}

#[test]
fn reads_utf8_regedit4_comments_continuations_and_short_roots() {
    let text = "\u{feff}REGEDIT4\n\
; a comment\n\
[hkcu\\Software\\X]\n\
# also a comment, as regedit reads it\n\
\"Exp\"=hex(2):25,50,41,\\ ; continued\n\
\n\
  ; a comment inside the continuation\n\
  54,48,25,00\n\
\"Multi\"=hex(7):61,00,62,00,00\n\
\"Dw\" = dword:0000000A ; trailing comment\n\
\"\"=\"default\";comment\n\
@=-\n\
\"Bin\"=hex:01, 02,\n\
\"Nl\"=\"a\\nb\"\n\
[-HKLM\\Software\\Y]\n\
[HKU\\.DEFAULT]\n";
    let file = parse(text.as_bytes()).unwrap();
    let deleted = Section {
        key: key(r"HKEY_LOCAL_MACHINE\Software\Y"),
        delete: true,
        entries: vec![],
    };
    assert_eq!(
        file.sections,
        vec![
            section(
                r"HKEY_CURRENT_USER\Software\X",
                vec![
                    set("Exp", RegValue::ExpandSz("%PATH%".into())),
                    set("Multi", RegValue::MultiSz(vec!["a".into(), "b".into()])),
                    set("Dw", RegValue::Dword(10)),
                    set("", RegValue::Sz("default".into())),
                    Entry {
                        name: String::new(),
                        op: Op::Delete,
                    },
                    set("Bin", RegValue::Binary(vec![1, 2])),
                    set("Nl", RegValue::Sz("a\nb".into())),
                ],
            ),
            deleted,
            section(r"HKEY_USERS\.DEFAULT", vec![]),
        ]
    );
    assert_eq!(
        file.sections[0].key.to_string(),
        r"HKEY_CURRENT_USER\Software\X"
    );
    // The same in a 5.00 file with CRLF and no BOM: hex(2) data is UTF-16 there, taken as is.
    let v5 =
        "Windows Registry Editor Version 5.00\r\n\r\n[HKCU\\X]\r\n\"E\"=hex(2):41,00,00,00\r\n";
    assert_eq!(
        parse(v5.as_bytes()).unwrap().sections[0].entries,
        vec![set("E", RegValue::ExpandSz("A".into()))]
    );
}

#[test]
fn hex_data_that_is_not_its_types_exact_encoding_stays_raw() {
    let value = |data: &str| {
        let text = format!("Windows Registry Editor Version 5.00\n[HKCU]\n\"v\"={data}\n");
        match &parse(text.as_bytes()).unwrap().sections[0].entries[0].op {
            Op::Set(value) => value.clone(),
            Op::Delete => unreachable!(),
        }
    };
    let other = |ty, data: &[u8]| RegValue::Other {
        ty,
        data: data.to_vec(),
    };
    assert_eq!(value("hex(4):01,00,00,00"), RegValue::Dword(1));
    assert_eq!(value("hex(4):01,00,00"), other(4, &[1, 0, 0]));
    assert_eq!(value("hex(b):01"), other(11, &[1]));
    assert_eq!(value("hex(3):ff"), RegValue::Binary(vec![0xff]));
    assert_eq!(value("hex(1):"), other(1, &[]));
    assert_eq!(value("hex(1):61,00"), other(1, b"a\0"));
    assert_eq!(value("hex(1):61,00,00,00"), RegValue::Sz("a".into()));
    assert_eq!(value("hex(1):00,d8,00,00"), other(1, &[0, 0xd8, 0, 0]));
    assert_eq!(
        value("hex(1):61,00,00,00,62,00,00,00"),
        RegValue::Sz("a\0b".into())
    );
    assert_eq!(value("hex(7):"), other(7, &[]));
    assert_eq!(value("hex(7):00,00"), RegValue::MultiSz(vec![]));
    assert_eq!(
        value("hex(7):61,00,00,00,00,00,00,00"),
        RegValue::MultiSz(vec!["a".into(), String::new()])
    );
    assert_eq!(value("hex(ffffffff):"), other(u32::MAX, &[]));
}

#[test]
fn errors_name_the_line_and_the_problem() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "missing header"),
        ("REGEDIT5\n", 1, "missing header"),
        ("\nREGEDIT4\n", 1, "missing header"),
        (
            "REGEDIT4\n\n\"a\"=dword:00000001\n",
            3,
            "before any `[KEY]`",
        ),
        (
            "REGEDIT4\n[HKEY_CLASSES_ROOT\\x]\n",
            2,
            "unknown root key `HKEY_CLASSES_ROOT`",
        ),
        ("REGEDIT4\n[HKEY_CURRENT_USERS\\x]\n", 2, "unknown root key"),
        ("REGEDIT4\n[ HKCU\\x]\n", 2, "unknown root key ` HKCU`"),
        ("REGEDIT4\n[HKCU\\x\n", 2, "does not end with `]`"),
        ("REGEDIT4\n[HKCU\\a\\\\b]\n", 2, "empty key name"),
        ("REGEDIT4\n[HKCU\\a\\]\n", 2, "empty key name"),
        ("REGEDIT4\n[-HKCU\\a]\n\"v\"=-\n", 3, "deletes the key"),
        ("REGEDIT4\n[HKCU]\nv=\"x\"\n", 3, "expected `[KEY]`"),
        ("REGEDIT4\n[HKCU]\n\"v\"\n", 3, "expected `=`"),
        ("REGEDIT4\n[HKCU]\n\"v=\"x\"\n", 3, "expected `=`"),
        ("REGEDIT4\n[HKCU]\n\"v\"=\"x\n", 3, "unterminated string"),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=\"x\\\"\n",
            3,
            "unterminated string",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=\"a\\0\"\n",
            3,
            "unknown escape `\\0`",
        ),
        ("REGEDIT4\n[HKCU]\n\"v\"=\"a\" #c\n", 3, "unexpected `#c`"),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=\"a\"\"b\"\n",
            3,
            "unexpected `\"b\"`",
        ),
        ("REGEDIT4\n[HKCU]\n\"v\"=\n", 3, "unknown data ``"),
        ("REGEDIT4\n[HKCU]\n\"v\"=str:\"x\"\n", 3, "unknown data"),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=dword:1\n",
            3,
            "`1` is not 8 hex digits",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=dword:000000001\n",
            3,
            "not 8 hex digits",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=dword:+0000001\n",
            3,
            "not 8 hex digits",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=dword:0000000g\n",
            3,
            "not 8 hex digits",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=dword:00000001 #c\n",
            3,
            "not 8 hex digits",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex(0x2):00\n",
            3,
            "bad type `hex(0x2)`",
        ),
        ("REGEDIT4\n[HKCU]\n\"v\"=hex(100000000):00\n", 3, "bad type"),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex(2)00\n",
            3,
            "expected `hex(N):`",
        ),
        ("REGEDIT4\n[HKCU]\n\"v\"=hex:0g\n", 3, "bad hex byte `0g`"),
        ("REGEDIT4\n[HKCU]\n\"v\"=hex:1\n", 3, "bad hex byte `1`"),
        ("REGEDIT4\n[HKCU]\n\"v\"=hex:100\n", 3, "bad hex byte `100`"),
        ("REGEDIT4\n[HKCU]\n\"v\"=hex:01,,02\n", 3, "bad hex byte ``"),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex:,\\\n  01\n",
            3,
            "bad hex byte ``",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex:01\\\n  02\n",
            3,
            "must end in a comma",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex:01,\\\n  ,02\n",
            4,
            "bad hex byte ``",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex:01,\\\n\n#c\n",
            5,
            "bad hex byte `#c`",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex:01,\\\n\"w\"=-\n",
            4,
            "bad hex byte `\"w\"=-`",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex:01,\\\n;c\n",
            3,
            "the file ends",
        ),
        (
            "REGEDIT4\n[HKCU]\n\"v\"=hex(2):e9,00\n",
            3,
            "byte e9 in REGEDIT4",
        ),
        ("REGEDIT4\n[HKCU]\n\"v\"=- x\n", 3, "unexpected `x`"),
    ];
    for &(text, line, message) in cases {
        let err = parse(text.as_bytes()).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.message.contains(message), "{text:?}: {err}");
        assert_eq!(err.to_string(), format!("line {line}: {}", err.message));
    }
    let utf16_cases: &[(&[u8], usize, &str)] = &[
        (&[0xfe, 0xff, 0, b'R'], 1, "UTF-16BE"),
        (
            &[0xff, 0xfe, b'R', 0, b'\n', 0, 0x00, 0xdc],
            2,
            "unpaired surrogate",
        ),
        (&[0xff, 0xfe, b'R', 0, b'E'], 1, "half a character"),
        (b"REGEDIT4\n[HKCU]\n\"v\"=\"\xff\"\n", 3, "invalid UTF-8"),
    ];
    for &(bytes, line, message) in utf16_cases {
        let err = parse(bytes).unwrap_err();
        assert_eq!(
            (err.line, err.message.contains(message)),
            (line, true),
            "{err}"
        );
    }
    let err = parse(&utf16(
        "Windows Registry Editor Version 5.00\r\n\r\n[HKLM]\r\n\"x\"=dword:1\r\n",
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 4: dword value `1` is not 8 hex digits"
    );
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 \"\\\\;=@\\[\\]\\-,:#%\\tüß€日本😀\\r\\n\\x00]{0,12}",
    ]
}

fn value() -> impl Strategy<Value = RegValue> {
    let typed = [1, 2, 3, 4, 7, 11];
    prop_oneof![
        any::<u32>().prop_map(RegValue::Dword),
        any::<u64>().prop_map(RegValue::Qword),
        text().prop_map(RegValue::Sz),
        text().prop_map(RegValue::ExpandSz),
        // Items cannot hold a NUL: it ends them.
        prop::collection::vec(text().prop_map(|s| s.replace('\0', "")), 0..4)
            .prop_map(RegValue::MultiSz),
        prop::collection::vec(any::<u8>(), 0..120).prop_map(RegValue::Binary),
        (
            any::<u32>().prop_filter("typed", move |ty| !typed.contains(ty)),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(ty, data)| RegValue::Other { ty, data }),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        text(),
        prop_oneof![1 => Just(Op::Delete), 6 => value().prop_map(Op::Set)],
    )
        .prop_map(|(name, op)| Entry { name, op })
}

/// Key names are printable and have no backslash.
fn key_path() -> impl Strategy<Value = KeyPath> {
    (
        prop_oneof![
            Just(Root::CurrentUser),
            Just(Root::LocalMachine),
            Just(Root::Users)
        ],
        prop::collection::vec("[^\\\\\\p{Cc}]{1,8}", 0..4),
    )
        .prop_map(|(root, parts)| KeyPath::new(root, parts.join("\\")))
}

fn section_strategy() -> impl Strategy<Value = Section> {
    prop_oneof![
        key_path().prop_map(|key| Section {
            key,
            delete: true,
            entries: vec![],
        }),
        (key_path(), prop::collection::vec(entry(), 0..6)).prop_map(|(key, entries)| Section {
            key,
            delete: false,
            entries,
        }),
    ]
}

proptest! {
    #[test]
    fn render_then_parse_gives_the_same_model(
        sections in prop::collection::vec(section_strategy(), 0..4)
    ) {
        let file = RegFile { sections };
        let bytes = render(&file);
        prop_assert_eq!(parse(&bytes).unwrap(), file.clone());
        // Keys keep their spelling, not just their case-insensitive identity.
        let keys: Vec<String> = parse(&bytes).unwrap().sections.iter().map(|s| s.key.to_string()).collect();
        let expected: Vec<String> = file.sections.iter().map(|s| s.key.to_string()).collect();
        prop_assert_eq!(keys, expected);
    }
}
