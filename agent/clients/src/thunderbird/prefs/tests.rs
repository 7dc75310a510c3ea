use super::*;
use proptest::prelude::*;

fn parse_ok(text: &str) -> PrefsFile {
    match PrefsFile::parse(text) {
        Ok(f) => f,
        Err(e) => panic!("{text:?} should parse, got {e}"),
    }
}

fn s(v: &str) -> PrefValue {
    PrefValue::Str(v.to_owned())
}

/// (kind, name, value, locked, sticky, line)
type Expected<'a> = (PrefKind, &'a str, PrefValue, bool, bool, usize);

fn summary(f: &PrefsFile) -> Vec<(PrefKind, String, PrefValue, bool, bool, usize)> {
    f.entries()
        .iter()
        .map(|e| {
            (
                e.kind,
                e.name.clone(),
                e.value.clone(),
                e.locked,
                e.sticky,
                e.line,
            )
        })
        .collect()
}

fn check_entries(text: &str, expected: &[Expected<'_>]) {
    let f = parse_ok(text);
    let want: Vec<_> = expected
        .iter()
        .map(|(k, n, v, l, st, line)| (*k, (*n).to_owned(), v.clone(), *l, *st, *line))
        .collect();
    assert_eq!(summary(&f), want, "entries of {text:?}");
    assert_eq!(f.render(), text, "render of {text:?}");
}

use PrefKind::{Default as Def, DefaultPref as DefP, Lock, Sticky, User};
use PrefValue::{Bool, Int};

#[test]
fn parses_statements_comments_and_layouts() {
    let cases: Vec<(&str, Vec<Expected<'_>>)> = vec![
        ("", vec![]),
        ("   \n\t\n", vec![]),
        (
            "user_pref(\"a.b\", true);\n",
            vec![(User, "a.b", Bool(true), false, false, 1)],
        ),
        (
            "user_pref(\"a\", false);",
            vec![(User, "a", Bool(false), false, false, 1)],
        ),
        // Integers: signs, zero, leading zeros, extremes, sign separated
        // from the digits by whitespace and comments (libpref tokenizes the
        // sign separately).
        (
            "pref(\"a\", 42);\npref(\"b\", -7);\npref(\"c\", +3);\npref(\"d\", 0);\npref(\"e\", 007);\n\
             pref(\"f\", -9223372036854775808);\npref(\"g\", 9223372036854775807);\n\
             pref(\"h\", - /* gap */\n 5);\n",
            vec![
                (Def, "a", Int(42), false, false, 1),
                (Def, "b", Int(-7), false, false, 2),
                (Def, "c", Int(3), false, false, 3),
                (Def, "d", Int(0), false, false, 4),
                (Def, "e", Int(7), false, false, 5),
                (Def, "f", Int(i64::MIN), false, false, 6),
                (Def, "g", Int(i64::MAX), false, false, 7),
                (Def, "h", Int(-5), false, false, 8),
            ],
        ),
        // Single quotes, for names and values.
        (
            "user_pref('single', 'x \"y\" z');",
            vec![(User, "single", s("x \"y\" z"), false, false, 1)],
        ),
        // All three comment kinds, including a multi-line block comment
        // and comments between every token.
        (
            "// line comment\n# hash comment\n/* block\n   comment */\n\
             user_pref/*1*/(/*2*/\"a\"/*3*/,/*4*/1/*5*/)/*6*/;// trailing\n\
             user_pref # h\n ( \"b\" // c\n , 2 ) ;\n",
            vec![
                (User, "a", Int(1), false, false, 5),
                (User, "b", Int(2), false, false, 6),
            ],
        ),
        // Comment-like text inside strings is data.
        (
            "user_pref(\"a\", \"// not /* a */ # comment\");",
            vec![(User, "a", s("// not /* a */ # comment"), false, false, 1)],
        ),
        // Several statements on one line, no whitespace at all.
        (
            "user_pref(\"a\",1);user_pref(\"b\",'x'); pref(\"c\",true);\n",
            vec![
                (User, "a", Int(1), false, false, 1),
                (User, "b", s("x"), false, false, 1),
                (Def, "c", Bool(true), false, false, 1),
            ],
        ),
        // Statement split over lines, odd whitespace (\v, \f, tabs).
        (
            "\x0B\x0Cuser_pref\t(\n\"a\"\n,\n\t-1\n)\n;\n",
            vec![(User, "a", Int(-1), false, false, 1)],
        ),
        // Attributes in any order; the kinds that imply them.
        (
            "pref(\"a\", 1, locked);\npref(\"b\", 2, sticky);\npref(\"c\", 3, locked, sticky);\n\
             pref(\"d\", 4, sticky , locked);\nsticky_pref(\"e\", 5);\nlockPref(\"f\", 6);\n\
             defaultPref(\"g\", 7);\nsticky_pref(\"h\", 8, locked);\nlockPref(\"i\", 9, sticky);\n\
             pref(\"j\", 10, locked, locked);\n",
            vec![
                (Def, "a", Int(1), true, false, 1),
                (Def, "b", Int(2), false, true, 2),
                (Def, "c", Int(3), true, true, 3),
                (Def, "d", Int(4), true, true, 4),
                (Sticky, "e", Int(5), false, true, 5),
                (Lock, "f", Int(6), true, false, 6),
                (DefP, "g", Int(7), false, false, 7),
                (Sticky, "h", Int(8), true, true, 8),
                (Lock, "i", Int(9), true, true, 9),
                (Def, "j", Int(10), true, false, 10),
            ],
        ),
        // CRLF, lone CR and mixed line endings all count as one line break.
        (
            "user_pref(\"a\", 1);\r\nuser_pref(\"b\", 2);\r\n\r\nuser_pref(\"c\", 3);\r\n",
            vec![
                (User, "a", Int(1), false, false, 1),
                (User, "b", Int(2), false, false, 2),
                (User, "c", Int(3), false, false, 4),
            ],
        ),
        (
            "user_pref(\"a\", 1);\ruser_pref(\"b\", 2);\n\r\nuser_pref(\"c\", 3);",
            vec![
                (User, "a", Int(1), false, false, 1),
                (User, "b", Int(2), false, false, 2),
                (User, "c", Int(3), false, false, 4),
            ],
        ),
        // A BOM at the start.
        (
            "\u{FEFF}user_pref(\"a\", 1);\n",
            vec![(User, "a", Int(1), false, false, 1)],
        ),
        (
            "\u{FEFF}",
            vec![],
        ),
        // Raw non-ASCII and raw line breaks inside strings; line numbers of
        // later statements account for them.
        (
            "user_pref(\"ü.名前\", \"Zoë 😀\nsecond line\");\nuser_pref(\"b\", 1);\n",
            vec![
                (User, "ü.名前", s("Zoë 😀\nsecond line"), false, false, 1),
                (User, "b", Int(1), false, false, 3),
            ],
        ),
        // Empty name and value.
        (
            "user_pref(\"\", \"\");",
            vec![(User, "", s(""), false, false, 1)],
        ),
        // File ending in a line comment without a newline.
        (
            "user_pref(\"a\", 1); // end",
            vec![(User, "a", Int(1), false, false, 1)],
        ),
    ];
    for (text, expected) in cases {
        check_entries(text, &expected);
    }
}

#[test]
fn decodes_every_escape() {
    let cases: &[(&str, &str)] = &[
        (r#""a\"b""#, "a\"b"),
        (r#"'a\'b'"#, "a'b"),
        (r#""a\'b""#, "a'b"),
        (r#"'a\"b'"#, "a\"b"),
        (r#""a'b""#, "a'b"),
        (r#"'a"b'"#, "a\"b"),
        (r#""back\\slash""#, "back\\slash"),
        (r#""\\\\""#, "\\\\"),
        (r#""l1\nl2""#, "l1\nl2"),
        (r#""cr\r""#, "cr\r"),
        (r#""\x41\x7e\x7E""#, "A~~"),
        // \x inserts raw bytes: two of them can form one UTF-8 character.
        (r#""\xC3\xA9""#, "é"),
        (r#""\xe2\x82\xac\xF0\x9F\x98\x80\x41""#, "€😀A"),
        (r#""a\xC3\xA9b\u00e9\xC3\xA9""#, "aébéé"),
        (r#""\u00e9\u20AC\u0041""#, "é€A"),
        (r#""\uD83D\uDE00""#, "😀"),
        (r#""\ud83d\ude00!""#, "😀!"),
        (r#""\uFFFF""#, "\u{FFFF}"),
        // libpref rejects these; accepted here so that `quote` round-trips.
        (r#""\x00""#, "\0"),
        (r#""\u0000""#, "\0"),
        (r#""\u0009\u001b\u007f""#, "\t\u{1b}\u{7f}"),
        ("\"raw é 😀 名前\"", "raw é 😀 名前"),
        ("\"raw\nnewline\r\nand\rcr\"", "raw\nnewline\r\nand\rcr"),
        ("\"raw\ttab\"", "raw\ttab"),
        (r#""""#, ""),
        (r#"''"#, ""),
    ];
    for (literal, want) in cases {
        let text = format!("user_pref({literal}, {literal});");
        let f = parse_ok(&text);
        assert_eq!(f.entries()[0].name, *want, "name {literal}");
        assert_eq!(f.entries()[0].value, s(want), "value {literal}");
        assert_eq!(f.render(), text);
    }
}

#[test]
fn errors_have_exact_positions() {
    // (text, line, column, part of the message)
    let cases: &[(&str, usize, usize, &str)] = &[
        // Unterminated string: reported at the opening quote.
        (
            "user_pref(\"a, 1);",
            1,
            11,
            "unterminated string literal (no closing \")",
        ),
        (
            "\n\nuser_pref(\"x\", 'abc);\n",
            3,
            16,
            "unterminated string literal (no closing ')",
        ),
        ("user_pref(\"a\", \"ab\\", 1, 16, "unterminated string literal"),
        // Unterminated block comment: reported at the `/*`.
        (
            "user_pref(\"a\", 1);\n  /* never closed\n",
            2,
            3,
            "unterminated /* comment",
        ),
        ("user_pref(\"a\", /*/ 1);", 1, 16, "unterminated /* comment"),
        // Bad escapes: reported at the backslash.
        ("user_pref(\"a\", \"\\xZZ\");", 1, 17, "malformed \\x escape"),
        ("user_pref(\"a\", \"ab\\x4\");", 1, 19, "malformed \\x escape"),
        ("user_pref(\"a\", \"\\u12\");", 1, 17, "malformed \\u escape"),
        ("user_pref(\"a\", \"\\u12G4\");", 1, 17, "malformed \\u escape"),
        (
            "user_pref(\"a\", \"\\t\");",
            1,
            17,
            "unknown escape sequence `\\t`",
        ),
        (
            "user_pref(\"a\", \"\\\n\");",
            1,
            17,
            "unknown escape sequence '\\' followed by '\\n'",
        ),
        // Lone surrogates.
        (
            "user_pref(\"a\", \"ab\\uD83D\");",
            1,
            19,
            "lone surrogate \\uD83D",
        ),
        (
            "user_pref(\"a\", \"\\uD83D\\u0041\");",
            1,
            17,
            "lone surrogate \\uD83D",
        ),
        (
            "user_pref(\"a\", \"\\uD83Dx\");",
            1,
            17,
            "lone surrogate \\uD83D",
        ),
        (
            "user_pref(\"a\", \"\\uDE00\");",
            1,
            17,
            "lone surrogate \\uDE00 (a low surrogate",
        ),
        // \x bytes that do not form UTF-8: reported at the offending \x.
        (
            "user_pref(\"a\", \"\\xC3\");",
            1,
            17,
            "\\xC3 does not start a valid UTF-8 sequence of \\x escapes",
        ),
        (
            "user_pref(\"a\", \"ab\\xC3A\");",
            1,
            19,
            "\\xC3 does not start a valid UTF-8 sequence",
        ),
        (
            "user_pref(\"a\", \"\\x80\");",
            1,
            17,
            "\\x80 does not start a valid UTF-8 sequence",
        ),
        (
            "user_pref(\"a\", \"\\xC3\\x41\");",
            1,
            17,
            "\\xC3 does not start",
        ),
        (
            "user_pref(\"a\", \"\\xE2\\x82\");",
            1,
            17,
            "\\xE2 does not start",
        ),
        (
            "user_pref(\"a\", \"\\xED\\xA0\\x80\");",
            1,
            17,
            "\\xED does not start",
        ),
        (
            "user_pref(\"a\", \"\\xC3\\xZZ\");",
            1,
            21,
            "malformed \\x escape",
        ),
        // Missing semicolon: reported at whatever follows the `)`.
        (
            "user_pref(\"a\", 1)\nuser_pref(\"b\", 2);",
            2,
            1,
            "expected ';' after ')', found `u`",
        ),
        (
            "user_pref(\"a\", 1)",
            1,
            18,
            "expected ';' after ')', found end of file",
        ),
        // Missing or wrong punctuation.
        (
            "user_pref(\"a\", 1;",
            1,
            17,
            "expected ')' after the pref value, found `;`",
        ),
        (
            "pref(\"a\", 1;",
            1,
            12,
            "expected ',' or ')' after the pref value, found `;`",
        ),
        (
            "pref(\"a\", 1, locked;",
            1,
            20,
            "expected ',' or ')' after the pref attribute",
        ),
        (
            "user_pref \"a\", 1);",
            1,
            11,
            "expected '(' after `user_pref`, found `\"`",
        ),
        (
            "user_pref(a, 1);",
            1,
            11,
            "expected a pref name (a quoted string) after '(', found `a`",
        ),
        (
            "user_pref(\"a\" 1);",
            1,
            15,
            "expected ',' after the pref name, found `1`",
        ),
        // Unknown function names and other garbage at statement level.
        (
            "  foo_pref(\"a\", 1);",
            1,
            3,
            "unknown pref function `foo_pref`",
        ),
        ("user_pref2(\"a\", 1);", 1, 1, "unknown pref function `user_pref2`"),
        ("UserPref(\"a\", 1);", 1, 1, "unknown pref function `UserPref`"),
        (
            "user_pref(\"a\", 1);\n;",
            2,
            1,
            "expected a pref statement (user_pref, pref, sticky_pref, lockPref or defaultPref), found `;`",
        ),
        ("\"a\";", 1, 1, "expected a pref statement"),
        ("user_pref('a', 'it''s');", 1, 20, "expected ')' after the pref value, found `'`"),
        // Values that are not bool/int/string.
        (
            "user_pref(\"a\", yes);",
            1,
            16,
            "expected a pref value (true, false, an integer or a quoted string), found `y`",
        ),
        ("user_pref(\"a\", True);", 1, 16, "expected a pref value"),
        ("user_pref(\"a\", null);", 1, 16, "expected a pref value"),
        ("user_pref(\"a\", );", 1, 16, "expected a pref value (true, false, an integer or a quoted string) after ','"),
        ("user_pref(\"a\", 1.5);", 1, 17, "expected ')' after the pref value, found `.`"),
        ("user_pref(\"a\", 0x10);", 1, 17, "unexpected character `x` in integer literal"),
        ("user_pref(\"a\", 12ab);", 1, 18, "unexpected character `a` in integer literal"),
        ("user_pref(\"a\", -);", 1, 17, "expected an integer literal after '-'"),
        ("user_pref(\"a\", +x);", 1, 17, "expected an integer literal after '+'"),
        ("user_pref(\"a\", --1);", 1, 17, "expected an integer literal after '-'"),
        // Integer overflow: reported at the start of the value.
        (
            "user_pref(\"a\", 9223372036854775808);",
            1,
            16,
            "integer literal `9223372036854775808` is out of range",
        ),
        (
            "user_pref(\"a\", -9223372036854775809);",
            1,
            16,
            "integer literal `-9223372036854775809` is out of range",
        ),
        (
            "user_pref(\"a\", 99999999999999999999999999);",
            1,
            16,
            "is out of range",
        ),
        // Attributes.
        (
            "user_pref(\"a\", 1, locked);",
            1,
            17,
            "expected ')' after the pref value, found `,` (`user_pref` takes no attributes)",
        ),
        (
            "defaultPref(\"a\", 1, sticky);",
            1,
            19,
            "`defaultPref` takes no attributes",
        ),
        (
            "pref(\"a\", 1, frozen);",
            1,
            14,
            "expected a pref attribute (`locked` or `sticky`) after ',', found `f`",
        ),
        ("pref(\"a\", 1, );", 1, 14, "expected a pref attribute"),
        // Stray slash, NUL, misplaced BOM, non-ASCII whitespace.
        (
            "user_pref(\"a\", 1); / x",
            1,
            20,
            "expected '/' or '*' after '/'",
        ),
        ("user_pref(\"a\", 1);\0", 1, 19, "NUL character"),
        ("user_pref(\"a\", \"x\0\");", 1, 18, "NUL character"),
        ("// x\0\n", 1, 5, "NUL character"),
        (
            "user_pref(\"a\", 1);\u{FEFF}",
            1,
            19,
            "found '\\u{feff}'",
        ),
        ("user_pref(\"a\",\u{a0}1);", 1, 15, "expected a pref value"),
        // Line/column bookkeeping: CRLF, lone CR, BOM, non-ASCII columns.
        (
            "user_pref(\"a\", 1);\r\nuser_pref(\"b\", x);\r\n",
            2,
            16,
            "expected a pref value",
        ),
        ("user_pref(\"a\", 1);\rbad", 2, 1, "unknown pref function `bad`"),
        ("\u{FEFF}user_pref(\"a\", x);", 1, 16, "expected a pref value"),
        ("user_pref(\"é😀\", x);", 1, 17, "expected a pref value"),
        (
            "user_pref(\"a\", \"multi\nline\");  oops",
            2,
            10,
            "unknown pref function `oops`",
        ),
    ];
    for &(text, line, column, message) in cases {
        match PrefsFile::parse(text) {
            Ok(_) => panic!("{text:?} should not parse"),
            Err(e) => {
                assert!(
                    e.message.contains(message),
                    "{text:?}: message {:?} lacks {message:?}",
                    e.message
                );
                assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
                assert_eq!(
                    e.to_string(),
                    format!("line {line}, column {column}: {}", e.message)
                );
            }
        }
    }
}

const TB_HEADER: &str = "// Mozilla User Preferences

// DO NOT EDIT THIS FILE.
//
// If you make changes to this file while the application is running,
// the changes will be overwritten when the application exits.
//
// To change a preference value, you can either:
// - modify it via the UI (e.g. via about:config in the browser); or
// - set it within a user.js file in your profile.

";

fn thunderbird_prefs() -> String {
    format!(
        "{TB_HEADER}user_pref(\"app.update.lastUpdateTime.addon-background-update-timer\", 1718000000);
user_pref(\"mail.account.account1.server\", \"server1\");
user_pref(\"mail.accountmanager.accounts\", \"account1,account2\");
user_pref(\"mail.identity.id1.fullName\", \"Zoë \\\"Z\\\" O'Brien\");
user_pref(\"mail.identity.id1.htmlSigText\", \"-- \\nZoë\\r\\nC:\\\\Users\\\\zoe\");
user_pref(\"mail.server.server2.port\", 993);
user_pref(\"mail.spellcheck.inline\", false);
user_pref(\"mailnews.start_page.enabled\", true);
"
    )
}

#[test]
fn reads_thunderbird_153_prefs_js() {
    let text = thunderbird_prefs();
    let f = parse_ok(&text);
    assert_eq!(f.render(), text);
    assert_eq!(f.entries().len(), 8);
    assert_eq!(f.entries()[0].line, 12);
    assert_eq!(
        f.get_user("mail.identity.id1.fullName"),
        Some(&s("Zoë \"Z\" O'Brien"))
    );
    assert_eq!(
        f.get_user("mail.identity.id1.htmlSigText"),
        Some(&s("-- \nZoë\r\nC:\\Users\\zoe"))
    );
    assert_eq!(f.get_user("mail.server.server2.port"), Some(&Int(993)));
    assert_eq!(f.get_user("mail.spellcheck.inline"), Some(&Bool(false)));
    assert_eq!(f.get_user("missing"), None);

    // Every value re-rendered by us is byte-identical to what Thunderbird
    // wrote, so re-setting everything changes nothing.
    for e in f.entries() {
        let line = text.lines().nth(e.line - 1).unwrap();
        assert_eq!(
            line,
            format!("user_pref({}, {});", quote(&e.name), render_value(&e.value))
        );
    }

    let mut g = f.clone();
    g.set_user("mail.server.server2.port", &Int(143));
    g.set_user("mail.identity.id1.fullName", &s("Zoë"));
    g.set_user("zzz.new", &s("tab\there"));
    let want = text
        .replace("993", "143")
        .replace("\"Zoë \\\"Z\\\" O'Brien\"", "\"Zoë\"")
        + "user_pref(\"zzz.new\", \"tab\\u0009here\");\n";
    assert_eq!(g.render(), want);
    assert_eq!(parse_ok(&want), g);
}

#[test]
fn later_statements_override_earlier_ones() {
    let text = "pref(\"a\", 1);\nuser_pref(\"a\", 2);\nuser_pref(\"a\", 3);\nlockPref(\"a\", 4);\n\
                user_pref(\"b\", 'x');\npref(\"b\", 'y');\n";
    let f = parse_ok(text);
    assert_eq!(
        f.get("a").map(|e| (&e.value, e.kind, e.line)),
        Some((&Int(4), Lock, 4))
    );
    assert_eq!(f.get_user("a"), Some(&Int(3)));
    assert_eq!(f.get("b").map(|e| &e.value), Some(&s("y")));
    assert_eq!(f.get_user("b"), Some(&s("x")));
    assert_eq!(f.get("c"), None);
    assert_eq!(f.entries().len(), 6);
}

#[test]
fn set_user_edits_only_the_value() {
    // (before, name, value, after)
    let cases: &[(&str, &str, PrefValue, &str)] = &[
        (
            "user_pref ( 'a' ,  /*c*/ 'old' ) ;  // x\n",
            "a",
            s("new"),
            "user_pref ( 'a' ,  /*c*/ \"new\" ) ;  // x\n",
        ),
        (
            "user_pref(\"a\", - 5);\n",
            "a",
            Int(-6),
            "user_pref(\"a\", -6);\n",
        ),
        (
            "user_pref(\"a\", true);user_pref(\"b\", 1);\n",
            "a",
            s("q\"b\\"),
            "user_pref(\"a\", \"q\\\"b\\\\\");user_pref(\"b\", 1);\n",
        ),
        // Only the last of several user_pref statements changes.
        (
            "user_pref(\"a\", 1);\nuser_pref(\"a\", 2);\nuser_pref(\"b\", 3);\n",
            "a",
            Int(9),
            "user_pref(\"a\", 1);\nuser_pref(\"a\", 9);\nuser_pref(\"b\", 3);\n",
        ),
        // An equal value leaves the text alone, even if spelled differently.
        (
            "user_pref('a', 'x');\nuser_pref(\"n\", +007);\n",
            "a",
            s("x"),
            "user_pref('a', 'x');\nuser_pref(\"n\", +007);\n",
        ),
        (
            "user_pref(\"n\", +007);\n",
            "n",
            Int(7),
            "user_pref(\"n\", +007);\n",
        ),
        // A default pref of the same name does not count: append.
        (
            "pref(\"a\", 1);\n",
            "a",
            Int(2),
            "pref(\"a\", 1);\nuser_pref(\"a\", 2);\n",
        ),
        // Appending: newline added when missing, none for empty files.
        ("", "a", Bool(true), "user_pref(\"a\", true);\n"),
        (
            "\u{FEFF}",
            "a",
            Bool(true),
            "\u{FEFF}user_pref(\"a\", true);\n",
        ),
        (
            "user_pref(\"x\", 1);",
            "a",
            Int(-1),
            "user_pref(\"x\", 1);\nuser_pref(\"a\", -1);\n",
        ),
        (
            "// comment without newline",
            "a",
            Int(1),
            "// comment without newline\nuser_pref(\"a\", 1);\n",
        ),
        // The file's dominant line ending is used.
        (
            "// a\r\n// b\r\nuser_pref(\"x\", 1);",
            "a",
            Int(1),
            "// a\r\n// b\r\nuser_pref(\"x\", 1);\r\nuser_pref(\"a\", 1);\r\n",
        ),
        (
            "// a\r\n// b\r\n",
            "a",
            Int(1),
            "// a\r\n// b\r\nuser_pref(\"a\", 1);\r\n",
        ),
        (
            "// a\r// b\r",
            "a",
            Int(1),
            "// a\r// b\ruser_pref(\"a\", 1);\r",
        ),
        (
            "// a\r\n// b\n// c\n",
            "a",
            Int(1),
            "// a\r\n// b\n// c\nuser_pref(\"a\", 1);\n",
        ),
        // Names and values are quoted Thunderbird-style.
        (
            "",
            "wéird \"name\"\\",
            s("line\nbreak\r\u{1}\u{7f}é😀"),
            "user_pref(\"wéird \\\"name\\\"\\\\\", \"line\\nbreak\\r\\u0001\\u007fé😀\");\n",
        ),
    ];
    for (before, name, value, after) in cases {
        let mut f = parse_ok(before);
        f.set_user(name, value);
        assert_eq!(f.render(), *after, "set_user({name:?}) on {before:?}");
        assert_eq!(f.get_user(name), Some(value));
        assert_eq!(parse_ok(after), f, "state after set_user on {before:?}");
    }
}

#[test]
fn set_user_keeps_line_numbers_right() {
    let mut f =
        parse_ok("user_pref(\"a\", \"x\ny\r\nz\");\nuser_pref(\"b\", 1);\nuser_pref(\"c\", 2);\n");
    assert_eq!(f.get("b").unwrap().line, 4);
    f.set_user("a", &s("x\ny"));
    assert_eq!(
        f.render(),
        "user_pref(\"a\", \"x\\ny\");\nuser_pref(\"b\", 1);\nuser_pref(\"c\", 2);\n"
    );
    assert_eq!(f.get("b").unwrap().line, 2);
    assert_eq!(f.get("c").unwrap().line, 3);
    f.set_user("d", &Int(0));
    assert_eq!(f.get("d").unwrap().line, 4);
    assert_eq!(parse_ok(&f.render()), f);
}

#[test]
fn remove_user_removes_statements_and_their_lines() {
    // (before, name, removed?, after)
    let cases: &[(&str, &str, bool, &str)] = &[
        ("user_pref(\"a\", 1);\n", "a", true, ""),
        (
            "// h\nuser_pref(\"a\", 1);\nuser_pref(\"b\", 2);\n",
            "a",
            true,
            "// h\nuser_pref(\"b\", 2);\n",
        ),
        // Indented, trailing whitespace, several lines, CRLF.
        (
            "pref(\"x\", 0);\r\n  user_pref(\"a\",\r\n 1) ;  \r\npref(\"y\", 0);\r\n",
            "a",
            true,
            "pref(\"x\", 0);\r\npref(\"y\", 0);\r\n",
        ),
        // Last line without a newline.
        (
            "pref(\"x\", 0);\nuser_pref(\"a\", 1);",
            "a",
            true,
            "pref(\"x\", 0);\n",
        ),
        // Sharing a line with other statements or comments.
        (
            "pref(\"p\", 1); user_pref(\"a\", 2); pref(\"q\", 3);\n",
            "a",
            true,
            "pref(\"p\", 1); pref(\"q\", 3);\n",
        ),
        (
            "pref(\"p\", 1); user_pref(\"a\", 2);\npref(\"q\", 3);\n",
            "a",
            true,
            "pref(\"p\", 1);\npref(\"q\", 3);\n",
        ),
        (
            "user_pref(\"a\", 2);  // why\n",
            "a",
            true,
            "// why\n",
        ),
        // Every duplicate goes; other kinds stay.
        (
            "user_pref(\"a\", 1);\npref(\"a\", 5);\nuser_pref(\"a\", 2);user_pref(\"a\", 3);\nlockPref(\"a\", 6);\n",
            "a",
            true,
            "pref(\"a\", 5);\n\nlockPref(\"a\", 6);\n",
        ),
        ("pref(\"a\", 1);\n", "a", false, "pref(\"a\", 1);\n"),
        ("", "a", false, ""),
        // A lone CR before and an empty LF line after: recounted correctly.
        (
            "pref(\"x\", 0);\ruser_pref(\"a\", 1);\r\n\npref(\"y\", 0);\n",
            "a",
            true,
            "pref(\"x\", 0);\r\npref(\"y\", 0);\n",
        ),
    ];
    for (before, name, removed, after) in cases {
        let mut f = parse_ok(before);
        assert_eq!(f.remove_user(name), *removed, "remove_user on {before:?}");
        assert_eq!(f.render(), *after, "remove_user on {before:?}");
        assert_eq!(f.get_user(name), None);
        assert_eq!(parse_ok(after), f, "state after remove_user on {before:?}");
    }
}

#[test]
fn quote_and_render_value() {
    let cases: &[(&str, &str)] = &[
        ("", r#""""#),
        ("plain.value", r#""plain.value""#),
        ("a\"b", r#""a\"b""#),
        ("a'b", r#""a'b""#),
        ("C:\\dir\\", r#""C:\\dir\\""#),
        ("l1\nl2\r", r#""l1\nl2\r""#),
        ("\t\0\u{1f}\u{7f}", r#""\u0009\u0000\u001f\u007f""#),
        ("é€😀\u{2028}\u{a0}", "\"é€😀\u{2028}\u{a0}\""),
    ];
    for (raw, quoted) in cases {
        assert_eq!(quote(raw), *quoted);
        assert_eq!(render_value(&s(raw)), *quoted);
        assert_eq!(s(raw).to_string(), *quoted);
    }
    assert_eq!(render_value(&Bool(true)), "true");
    assert_eq!(Bool(false).to_string(), "false");
    assert_eq!(render_value(&Int(-42)), "-42");
    assert_eq!(Int(i64::MIN).to_string(), "-9223372036854775808");
}

#[test]
fn libpref_compatibility() {
    assert!(Int(i64::from(i32::MAX)).is_libpref_compatible());
    assert!(Int(i64::from(i32::MIN)).is_libpref_compatible());
    assert!(!Int(i64::from(i32::MAX) + 1).is_libpref_compatible());
    assert!(!s("a\0b").is_libpref_compatible());
    assert!(s("é\n").is_libpref_compatible());
    assert!(Bool(true).is_libpref_compatible());
    assert_eq!(PrefKind::Lock.keyword(), "lockPref");
    assert_eq!(PrefKind::DefaultPref.keyword(), "defaultPref");
}

#[test]
fn parses_a_large_file() {
    let mut text = String::from(TB_HEADER);
    for i in 0..3000 {
        match i % 3 {
            0 => text.push_str(&format!("user_pref(\"test.pref.number{i}\", {i});\n")),
            1 => text.push_str(&format!(
                "user_pref(\"test.pref.string{i}\", \"value with \\\"quotes\\\" {i} é\");\n"
            )),
            _ => text.push_str(&format!("user_pref(\"test.pref.bool{i}\", true);\n")),
        }
    }
    let f = parse_ok(&text);
    assert_eq!(f.entries().len(), 3000);
    assert_eq!(f.entries()[2999].line, 3011);
    assert_eq!(f.render(), text);
}

// ---------------------------------------------------------------------------
// The name index
// ---------------------------------------------------------------------------

/// The index and line-ending counts are what a fresh computation from the entries and the text
/// gives (a fresh parse of the rendered text is compared separately).
fn assert_derived_state(f: &PrefsFile) {
    assert_eq!(f.index, build_index(&f.entries), "index of {:?}", f.text);
    assert_eq!(
        f.line_endings,
        count_line_endings(f.text.as_bytes()),
        "line endings of {:?}",
        f.text
    );
}

/// The lookups as they were before the index: scans of every statement, last first.
fn scan_get<'a>(f: &'a PrefsFile, name: &str) -> Option<&'a PrefEntry> {
    f.entries().iter().rev().find(|e| e.name == name)
}

fn scan_get_user<'a>(f: &'a PrefsFile, name: &str) -> Option<&'a PrefValue> {
    f.entries()
        .iter()
        .rev()
        .find(|e| e.kind == User && e.name == name)
        .map(|e| &e.value)
}

fn scan_named<'a>(f: &'a PrefsFile, name: &str) -> Vec<&'a PrefEntry> {
    f.entries().iter().filter(|e| e.name == name).collect()
}

/// Every lookup of `name` agrees with a scan.
fn assert_lookups(f: &PrefsFile, name: &str) {
    assert_eq!(f.get(name), scan_get(f, name), "get({name:?})");
    assert_eq!(
        f.get_user(name),
        scan_get_user(f, name),
        "get_user({name:?})"
    );
    let named: Vec<_> = f.entries_named(name).collect();
    assert_eq!(named, scan_named(f, name), "entries_named({name:?})");
    let reversed: Vec<_> = f.entries_named(name).rev().collect();
    assert_eq!(
        reversed,
        scan_named(f, name).into_iter().rev().collect::<Vec<_>>()
    );
}

/// One edit of a lookup test.
#[derive(Debug, Clone)]
enum Edit {
    Set(&'static str, PrefValue),
    Remove(&'static str),
}

impl Edit {
    fn apply(&self, f: &mut PrefsFile) {
        match self {
            Edit::Set(name, value) => f.set_user(name, value),
            Edit::Remove(name) => {
                f.remove_user(name);
            }
        }
    }
}

#[test]
fn lookups_stay_right_across_edits() {
    let text = "pref(\"dup\", 1);\nuser_pref(\"dup\", 2);\nuser_pref(\"other\", 3);\n\
                user_pref('dup', 4);lockPref(\"dup\", 5);\nuser_pref(\"Dup\", 6);\n\
                user_pref(\"\\x64up\", 7);\nuser_pref(\"tail\", 8);\n";
    // (edit, name, get_user afterwards, kind and value of `get` afterwards)
    type Case = (
        Edit,
        &'static str,
        Option<PrefValue>,
        Option<(PrefKind, PrefValue)>,
    );
    let cases: Vec<Case> = vec![
        // Duplicates: the last user_pref wins for get_user, the last statement for get.
        // "\x64up" is "dup" once decoded; "Dup" is another name (names are case-sensitive).
        (
            Edit::Set("other", Int(3)),
            "dup",
            Some(Int(7)),
            Some((User, Int(7))),
        ),
        (
            Edit::Set("other", Int(3)),
            "Dup",
            Some(Int(6)),
            Some((User, Int(6))),
        ),
        (Edit::Set("other", Int(3)), "DUP", None, None),
        // Setting an existing name edits its last user_pref in place.
        (
            Edit::Set("dup", Int(70)),
            "dup",
            Some(Int(70)),
            Some((User, Int(70))),
        ),
        (
            Edit::Set("other", s("x")),
            "other",
            Some(s("x")),
            Some((User, s("x"))),
        ),
        // A new name is appended and found; so is the name after it in the file.
        (
            Edit::Set("new", Bool(true)),
            "new",
            Some(Bool(true)),
            Some((User, Bool(true))),
        ),
        (
            Edit::Set("new", Bool(true)),
            "tail",
            Some(Int(8)),
            Some((User, Int(8))),
        ),
        // A name that only differs in case is new.
        (
            Edit::Set("OTHER", Int(9)),
            "other",
            Some(Int(3)),
            Some((User, Int(3))),
        ),
        (
            Edit::Set("OTHER", Int(9)),
            "OTHER",
            Some(Int(9)),
            Some((User, Int(9))),
        ),
        // Removing drops every user_pref of the name; pref and lockPref remain, and the
        // statements after the removed ones are still found at their new positions.
        (Edit::Remove("dup"), "dup", None, Some((Lock, Int(5)))),
        (
            Edit::Remove("dup"),
            "Dup",
            Some(Int(6)),
            Some((User, Int(6))),
        ),
        (
            Edit::Remove("dup"),
            "tail",
            Some(Int(8)),
            Some((User, Int(8))),
        ),
        (
            Edit::Remove("dup"),
            "other",
            Some(Int(3)),
            Some((User, Int(3))),
        ),
        (
            Edit::Remove("Dup"),
            "dup",
            Some(Int(7)),
            Some((User, Int(7))),
        ),
        (
            Edit::Remove("missing"),
            "dup",
            Some(Int(7)),
            Some((User, Int(7))),
        ),
    ];
    for (edit, name, user, last) in cases {
        let mut f = parse_ok(text);
        edit.apply(&mut f);
        assert_derived_state(&f);
        assert_eq!(
            f.get_user(name),
            user.as_ref(),
            "{edit:?}, get_user({name:?})"
        );
        assert_eq!(
            f.get(name).map(|e| (e.kind, e.value.clone())),
            last,
            "{edit:?}, get({name:?})"
        );
        for probe in [
            "dup", "Dup", "DUP", "other", "OTHER", "new", "tail", "missing",
        ] {
            assert_lookups(&f, probe);
        }
        assert_eq!(parse_ok(&f.render()), f, "{edit:?}");
    }
}

#[test]
fn lookups_stay_right_across_a_sequence_of_edits() {
    let mut f =
        parse_ok("user_pref(\"a\", 1);\r\nuser_pref(\"b\", 2);\r\nuser_pref(\"a\", 3);\r\n");
    let edits = [
        Edit::Set("c", Int(4)),
        Edit::Remove("a"),
        Edit::Set("a", Int(5)),
        Edit::Set("b", s("multi\nline")),
        Edit::Remove("b"),
        Edit::Set("b", Int(6)),
        Edit::Remove("c"),
        Edit::Set("a", Int(7)),
    ];
    for edit in &edits {
        edit.apply(&mut f);
        assert_derived_state(&f);
        for probe in ["a", "b", "c"] {
            assert_lookups(&f, probe);
        }
        assert_eq!(parse_ok(&f.render()), f, "after {edit:?}");
    }
    assert_eq!(
        f.render(),
        "user_pref(\"a\", 7);\r\nuser_pref(\"b\", 6);\r\n"
    );
    assert_eq!(f.get_user("a"), Some(&Int(7)));
}

#[test]
fn names_that_share_a_hash_are_told_apart() {
    // Real collisions of the 64-bit hash are not at hand: put "b" into the slot list of "a"
    // by hand, as a collision would.
    let mut f = parse_ok("user_pref(\"a\", 1);\nuser_pref(\"b\", 2);\nuser_pref(\"a\", 3);\n");
    let (ha, hb) = (name_hash("a"), name_hash("b"));
    f.index.remove(&hb);
    f.index.insert(ha, Slots::Many(vec![0, 1, 2]));
    assert_eq!(f.get_user("a"), Some(&Int(3)));
    assert_eq!(f.entries_named("a").count(), 2);
    assert_eq!(f.get("b"), None, "\"b\" now lives under the hash of \"a\"");
    assert!(f.remove_user("a"));
    assert_eq!(f.render(), "user_pref(\"b\", 2);\n");
    assert_eq!(
        f.index.get(&ha),
        Some(&Slots::One(0)),
        "\"b\" kept, renumbered"
    );
    assert_eq!(f.get_user("a"), None);
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

/// Characters that stress the string syntax.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range('a', 'z'),
        1 => Just('.'),
        1 => Just(' '),
        1 => Just('"'),
        1 => Just('\''),
        1 => Just('\\'),
        1 => Just('\n'),
        1 => Just('\r'),
        1 => Just('\t'),
        1 => Just('\0'),
        1 => Just('\u{1}'),
        1 => Just('\u{7f}'),
        1 => Just('/'),
        1 => Just('*'),
        1 => Just('#'),
        1 => Just(';'),
        1 => Just('é'),
        1 => Just('€'),
        1 => Just('名'),
        1 => Just('😀'),
        1 => Just('\u{FEFF}'),
        1 => any::<char>(),
    ]
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..10).prop_map(|v| v.into_iter().collect())
}

fn pref_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b.c", "mail.server.server1.port", "x"])
            .prop_map(str::to_owned),
        1 => tricky_string(),
    ]
}

/// Names for index tests: few, so that duplicates are common, some differing only in case.
fn index_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "A", "b.c", "B.c", "mail.server.server1.port", "x"])
            .prop_map(str::to_owned),
        1 => tricky_string(),
    ]
}

fn pref_value() -> impl Strategy<Value = PrefValue> {
    prop_oneof![
        any::<bool>().prop_map(PrefValue::Bool),
        any::<i64>().prop_map(PrefValue::Int),
        prop::sample::select(vec![0i64, 1, -1, i64::MIN, i64::MAX]).prop_map(PrefValue::Int),
        tricky_string().prop_map(PrefValue::Str),
    ]
}

/// Writes `value` as a string literal with quote `q`, choosing for each
/// character one of its possible spellings (raw, short escape, `\x` bytes,
/// `\u` units) with the help of `choices`.
fn encode_string(value: &str, q: char, choices: &[u8]) -> String {
    let mut out = String::new();
    out.push(q);
    for (i, c) in value.chars().enumerate() {
        let choice = choices.get(i).copied().unwrap_or(0);
        let mut options: Vec<String> = Vec::new();
        if c != q && c != '\\' && c != '\0' {
            options.push(c.to_string());
        }
        match c {
            '"' | '\'' | '\\' => options.push(format!("\\{c}")),
            '\n' => options.push("\\n".to_owned()),
            '\r' => options.push("\\r".to_owned()),
            _ => {}
        }
        let mut buf = [0u8; 4];
        options.push(
            c.encode_utf8(&mut buf)
                .bytes()
                .map(|b| format!("\\x{b:02X}"))
                .collect(),
        );
        let mut units = [0u16; 2];
        options.push(
            c.encode_utf16(&mut units)
                .iter()
                .map(|u| {
                    if choice % 2 == 0 {
                        format!("\\u{u:04x}")
                    } else {
                        format!("\\u{u:04X}")
                    }
                })
                .collect(),
        );
        out.push_str(&options[usize::from(choice) % options.len()]);
    }
    out.push(q);
    out
}

/// Whitespace and comments that may sit between any two tokens.
fn trivia() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "\x0B",
            "\x0C",
            "/* c */",
            "/* multi\r\nline * / é */",
            "/**/",
            "// c \"' é\n",
            "//\r\n",
            "# hash\n",
            "#\r",
        ]),
        0..3,
    )
    .prop_map(|v| v.concat())
}

fn kind() -> impl Strategy<Value = PrefKind> {
    prop::sample::select(vec![User, User, User, Def, Sticky, Lock, DefP])
}

#[derive(Debug, Clone)]
struct GenStatement {
    kind: PrefKind,
    name: String,
    value: PrefValue,
    attrs: Vec<bool>, // true = locked, false = sticky
    name_quote: char,
    value_quote: char,
    name_choices: Vec<u8>,
    value_choices: Vec<u8>,
    int_style: u8,
    gaps: Vec<String>,
}

fn statement() -> impl Strategy<Value = GenStatement> {
    (
        kind(),
        pref_name(),
        pref_value(),
        prop::collection::vec(any::<bool>(), 0..3),
        prop::sample::select(vec!['"', '\'']),
        prop::sample::select(vec!['"', '\'']),
        prop::collection::vec(any::<u8>(), 0..10),
        prop::collection::vec(any::<u8>(), 0..10),
        any::<u8>(),
        prop::collection::vec(trivia(), 12),
    )
        .prop_map(
            |(kind, name, value, attrs, name_quote, value_quote, nc, vc, int_style, gaps)| {
                GenStatement {
                    kind,
                    name,
                    value,
                    attrs: if kind.accepts_attributes() {
                        attrs
                    } else {
                        Vec::new()
                    },
                    name_quote,
                    value_quote,
                    name_choices: nc,
                    value_choices: vc,
                    int_style,
                    gaps,
                }
            },
        )
}

impl GenStatement {
    fn render(&self) -> String {
        let g = |i: usize| self.gaps[i % self.gaps.len()].as_str();
        let value = match &self.value {
            PrefValue::Bool(b) => b.to_string(),
            PrefValue::Str(v) => encode_string(v, self.value_quote, &self.value_choices),
            PrefValue::Int(i) => {
                let zeros = if self.int_style & 4 != 0 { "00" } else { "" };
                let digits = format!("{zeros}{}", i.unsigned_abs());
                if *i < 0 {
                    format!(
                        "-{}{digits}",
                        if self.int_style & 1 != 0 { g(10) } else { "" }
                    )
                } else if self.int_style & 2 != 0 {
                    format!(
                        "+{}{digits}",
                        if self.int_style & 1 != 0 { g(10) } else { "" }
                    )
                } else {
                    digits
                }
            }
        };
        let mut out = format!(
            "{}{}({}{}{},{}{}",
            self.kind.keyword(),
            g(0),
            g(1),
            encode_string(&self.name, self.name_quote, &self.name_choices),
            g(2),
            g(3),
            value
        );
        for (i, locked) in self.attrs.iter().enumerate() {
            out.push_str(g(4 + i));
            out.push(',');
            out.push_str(g(7));
            out.push_str(if *locked { "locked" } else { "sticky" });
        }
        out.push_str(g(8));
        out.push(')');
        out.push_str(g(9));
        out.push(';');
        out
    }

    fn locked(&self) -> bool {
        self.kind == Lock || self.attrs.iter().any(|&a| a)
    }

    fn sticky(&self) -> bool {
        self.kind == Sticky || self.attrs.iter().any(|&a| !a)
    }
}

#[derive(Debug, Clone)]
struct GenFile {
    text: String,
    /// Expected entries, with the byte offset where each statement starts.
    expected: Vec<(GenStatement, usize)>,
}

fn file() -> impl Strategy<Value = GenFile> {
    (
        any::<bool>(),
        prop::collection::vec((trivia(), statement(), any::<bool>()), 0..8),
        trivia(),
        prop::sample::select(vec!["", "", "// eof", "# eof", "/* eof */"]),
    )
        .prop_map(|(bom, items, tail, end)| {
            let mut text = String::new();
            if bom {
                text.push('\u{FEFF}');
            }
            let mut expected = Vec::new();
            for (lead, st, newline) in items {
                text.push_str(&lead);
                let start = text.len();
                text.push_str(&st.render());
                if newline {
                    text.push('\n');
                }
                expected.push((st, start));
            }
            text.push_str(&tail);
            text.push_str(end);
            GenFile { text, expected }
        })
}

/// Independent line counter: 1 + line breaks before `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    let before: Vec<char> = text[..offset].chars().collect();
    let mut line = 1;
    for (i, &c) in before.iter().enumerate() {
        if c == '\n' || (c == '\r' && before.get(i + 1) != Some(&'\n')) {
            line += 1;
        }
    }
    // A "\r" right before `offset` followed by "\n" after it cannot happen:
    // statements never start with "\n".
    line
}

/// An entry without its line number.
fn essence(e: &PrefEntry) -> (PrefKind, &str, &PrefValue, bool, bool) {
    (e.kind, e.name.as_str(), &e.value, e.locked, e.sticky)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_files_round_trip(gen in file()) {
        let f = match PrefsFile::parse(&gen.text) {
            Ok(f) => f,
            Err(e) => return Err(TestCaseError::fail(format!("{e} in {:?}", gen.text))),
        };
        prop_assert_eq!(f.render(), gen.text.clone());
        prop_assert_eq!(f.entries().len(), gen.expected.len());
        for (entry, (st, start)) in f.entries().iter().zip(&gen.expected) {
            prop_assert_eq!(entry.kind, st.kind);
            prop_assert_eq!(&entry.name, &st.name);
            prop_assert_eq!(&entry.value, &st.value);
            prop_assert_eq!(entry.locked, st.locked());
            prop_assert_eq!(entry.sticky, st.sticky());
            prop_assert_eq!(entry.line, line_at(&gen.text, *start));
        }
        // Setting every user pref to its current value writes nothing.
        let mut g = f.clone();
        for e in f.entries().iter().filter(|e| e.kind == User) {
            g.set_user(&e.name, f.get_user(&e.name).unwrap());
        }
        prop_assert_eq!(g, f);
    }

    #[test]
    fn set_user_round_trips(
        gen in file(),
        pick in any::<prop::sample::Index>(),
        use_existing in any::<bool>(),
        other_name in pref_name(),
        value in pref_value(),
    ) {
        let f = PrefsFile::parse(&gen.text).unwrap();
        let name = if use_existing && !f.entries().is_empty() {
            f.entries()[pick.index(f.entries().len())].name.clone()
        } else {
            other_name
        };
        let target = f.last_user_index(&name);
        let mut g = f.clone();
        g.set_user(&name, &value);
        let text = g.render();
        let h = match PrefsFile::parse(&text) {
            Ok(h) => h,
            Err(e) => return Err(TestCaseError::fail(format!("{e} in {text:?}"))),
        };
        prop_assert_eq!(h.get_user(&name), Some(&value));
        // The incrementally updated state equals a fresh parse.
        prop_assert_eq!(&h, &g);
        match target {
            Some(idx) => {
                prop_assert_eq!(h.entries().len(), f.entries().len());
                for (i, (a, b)) in f.entries().iter().zip(h.entries()).enumerate() {
                    if i != idx {
                        prop_assert_eq!(essence(a), essence(b));
                    }
                    if i <= idx {
                        prop_assert_eq!(a.line, b.line);
                    }
                }
                // Only the value bytes changed.
                let span = f.spans[idx];
                prop_assert!(text.starts_with(&gen.text[..span.value_start]));
                prop_assert!(text.ends_with(&gen.text[span.value_end..]));
            }
            None => {
                prop_assert_eq!(h.entries().len(), f.entries().len() + 1);
                prop_assert_eq!(&h.entries()[..f.entries().len()], f.entries());
                prop_assert!(text.starts_with(&gen.text));
                let appended = &text[gen.text.len()..];
                let line = format!("user_pref({}, {});", quote(&name), render_value(&value));
                prop_assert!(
                    appended.trim_start_matches(['\r', '\n']).trim_end_matches(['\r', '\n']) == line,
                    "appended {:?}", appended
                );
            }
        }
    }

    #[test]
    fn remove_user_round_trips(
        gen in file(),
        pick in any::<prop::sample::Index>(),
        other_name in pref_name(),
    ) {
        let f = PrefsFile::parse(&gen.text).unwrap();
        let name = if f.entries().is_empty() {
            other_name
        } else {
            f.entries()[pick.index(f.entries().len())].name.clone()
        };
        let mut g = f.clone();
        let had = f.get_user(&name).is_some();
        prop_assert_eq!(g.remove_user(&name), had);
        let text = g.render();
        let h = match PrefsFile::parse(&text) {
            Ok(h) => h,
            Err(e) => return Err(TestCaseError::fail(format!("{e} in {text:?}"))),
        };
        prop_assert_eq!(&h, &g);
        prop_assert_eq!(h.get_user(&name), None);
        let kept: Vec<_> = f
            .entries()
            .iter()
            .filter(|e| !(e.kind == User && e.name == name))
            .map(essence)
            .collect();
        let now: Vec<_> = h.entries().iter().map(essence).collect();
        prop_assert_eq!(kept, now);
    }

    #[test]
    fn indexed_lookups_equal_a_scan_across_edits(
        gen in file(),
        edits in prop::collection::vec(
            (any::<bool>(), any::<prop::sample::Index>(), index_name(), pref_value()),
            0..8,
        ),
        probes in prop::collection::vec(index_name(), 4),
    ) {
        let mut f = PrefsFile::parse(&gen.text).unwrap();
        for (remove, pick, other, value) in edits {
            // Half the edits touch a name the file has, the others a generated one.
            let name = if pick.index(2) == 0 && !f.entries().is_empty() {
                f.entries()[pick.index(f.entries().len())].name.clone()
            } else {
                other
            };
            if remove {
                let had = scan_get_user(&f, &name).is_some();
                prop_assert_eq!(f.remove_user(&name), had);
            } else {
                f.set_user(&name, &value);
            }
            prop_assert_eq!(&f.index, &build_index(&f.entries));
            prop_assert_eq!(f.line_endings, count_line_endings(f.text.as_bytes()));
            let names: Vec<String> = f
                .entries()
                .iter()
                .map(|e| e.name.clone())
                .chain(probes.iter().cloned())
                .chain([name])
                .collect();
            for n in &names {
                prop_assert_eq!(f.get(n), scan_get(&f, n));
                prop_assert_eq!(f.get_user(n), scan_get_user(&f, n));
                prop_assert_eq!(f.entries_named(n).collect::<Vec<_>>(), scan_named(&f, n));
            }
            let text = f.render();
            match PrefsFile::parse(&text) {
                Ok(fresh) => prop_assert_eq!(&fresh, &f),
                Err(e) => return Err(TestCaseError::fail(format!("{e} in {text:?}"))),
            }
        }
    }

    #[test]
    fn quote_parses_back(value in any::<String>(), tricky in tricky_string()) {
        for v in [value, tricky] {
            let q = quote(&v);
            // Thunderbird style: no raw control characters.
            prop_assert!(!q.chars().any(|c| c < ' ' || c == '\x7f'));
            let text = format!("user_pref({q}, {q});");
            let f = PrefsFile::parse(&text).unwrap();
            prop_assert_eq!(&f.entries()[0].name, &v);
            prop_assert_eq!(&f.entries()[0].value, &PrefValue::Str(v.clone()));
        }
    }

    #[test]
    fn garbage_never_panics(
        pieces in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "user_pref", "pref", "lockPref", "(", ")", ",", ";", "\"", "'", "\\", "\\x",
                    "\\u", "D83D", "DC00", "0", "-", "+", "true", "locked", "/", "*", "#", "\n",
                    "\r", " ", "é", "\u{FEFF}", "\0", "99999999999999999999",
                ]).prop_map(str::to_owned),
                any::<char>().prop_map(|c| c.to_string()),
            ],
            0..40,
        )
    ) {
        let text = pieces.concat();
        match PrefsFile::parse(&text) {
            Ok(f) => {
                prop_assert_eq!(f.render(), text.clone());
            }
            Err(e) => {
                prop_assert!(e.line >= 1 && e.column >= 1);
                prop_assert!(e.line <= 1 + count_line_breaks(&text));
            }
        }
    }

    #[test]
    fn mutated_files_never_panic(gen in file(), at in any::<prop::sample::Index>(), insert in tricky_char(), delete in any::<bool>()) {
        let mut text = gen.text.clone();
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let i = boundaries[at.index(boundaries.len())];
        if delete && i < text.len() {
            text.remove(i);
        } else {
            text.insert(i, insert);
        }
        if let Ok(f) = PrefsFile::parse(&text) {
            prop_assert_eq!(f.render(), text.clone());
            let mut g = f.clone();
            g.set_user("mutated", &PrefValue::Str(text.clone()));
            let h = PrefsFile::parse(&g.render()).unwrap();
            prop_assert_eq!(h.get_user("mutated"), Some(&PrefValue::Str(text)));
        }
    }
}
