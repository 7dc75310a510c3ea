use super::*;

fn env(var: &str) -> Option<String> {
    match var {
        "USER" => Some("alice".into()),
        "HOME" => Some("/home/alice".into()),
        _ => None,
    }
}

fn eval(text: &str) -> AutoConfig {
    evaluate(text.as_bytes(), 0, &env).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn pref(name: &str) -> CfgTarget {
    CfgTarget::Pref(name.into())
}

fn int(i: i64) -> CfgValue {
    CfgValue::Known(PrefValue::Int(i))
}

fn ops(cfg: &AutoConfig) -> Vec<(usize, CfgTarget, CfgOp)> {
    cfg.effects
        .iter()
        .map(|e| (e.line, e.target.clone(), e.op.clone()))
        .collect()
}

#[test]
fn every_prefcalls_function() {
    let cfg = eval(
        "// first line\n\
         pref(\"a\", 1);\n\
         defaultPref(\"b\", true);\n\
         lockPref(\"c\", \"x\");\n\
         unlockPref(\"c\");\n\
         clearPref(\"a\");\n",
    );
    assert_eq!(
        ops(&cfg),
        vec![
            (2, pref("a"), CfgOp::User(int(1))),
            (
                3,
                pref("b"),
                CfgOp::Default(CfgValue::Known(PrefValue::Bool(true)))
            ),
            (
                4,
                pref("c"),
                CfgOp::Lock(CfgValue::Known(PrefValue::Str("x".into())))
            ),
            (5, pref("c"), CfgOp::Unlock),
            (6, pref("a"), CfgOp::Clear),
        ]
    );
    assert_eq!(cfg.effects[2].text, "lockPref(\"c\", \"x\")");
}

#[test]
fn the_first_line_is_skipped_even_when_it_is_code() {
    let cfg = eval("lockPref(\"a\", 1);\nlockPref(\"b\", 2);\n");
    assert_eq!(ops(&cfg), vec![(2, pref("b"), CfgOp::Lock(int(2)))]);
    assert!(eval("lockPref(\"a\", 1);").effects.is_empty());
}

#[test]
fn obscured_files_read_like_plain_ones() {
    let plain = "// x\nlockPref(\"mail.server.default.check_time\", 30);\n";
    let shifted: Vec<u8> = plain.bytes().map(|b| b.wrapping_add(13)).collect();
    assert_eq!(
        evaluate(&shifted, 13, &env).unwrap(),
        evaluate(plain.as_bytes(), 0, &env).unwrap()
    );
    // A plain file read with obscure_value 13 has no line break left: all of it is the
    // skipped first line (measured: Thunderbird ignores it silently).
    assert!(evaluate(plain.as_bytes(), 13, &env)
        .unwrap()
        .effects
        .is_empty());
}

#[test]
fn getenv_of_known_and_unknown_variables() {
    let cfg = eval(
        "//\n\
         var who = getenv(\"USER\");\n\
         lockPref(\"mail.identity.id1.useremail\", who + \"@example.org\");\n\
         lockPref(\"mail.identity.id1.fullName\", getenv(\"FULLNAME\"));\n",
    );
    assert_eq!(
        cfg.effects[0].op,
        CfgOp::Lock(CfgValue::Known(PrefValue::Str("alice@example.org".into())))
    );
    match &cfg.effects[1].op {
        CfgOp::Lock(CfgValue::Unknown(why)) => assert!(why.contains("FULLNAME"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn concatenation_follows_javascript() {
    let cfg = eval(
        "//\nvar n = 3; var s = \"v\" + n + 1; pref(\"a\", s); pref(\"b\", 1 + 2); \
         pref(\"c\", -5); pref(\"d\", 1.5); pref(\"e\", 0x10);\n",
    );
    let vals: Vec<CfgOp> = cfg.effects.iter().map(|e| e.op.clone()).collect();
    assert_eq!(
        vals[0],
        CfgOp::User(CfgValue::Known(PrefValue::Str("v31".into())))
    );
    assert_eq!(vals[1], CfgOp::User(int(3)));
    assert_eq!(vals[2], CfgOp::User(int(-5)));
    assert!(matches!(vals[3], CfgOp::User(CfgValue::Unknown(_))));
    assert_eq!(vals[4], CfgOp::User(int(16)));
}

#[test]
fn computed_names_and_unmodelled_code_may_change_any_pref() {
    let cfg = eval(
        "//\n\
         var k = getenv(\"SERVER\");\n\
         lockPref(\"mail.server.\" + k + \".check_time\", 30);\n\
         Services.prefs.lockPref(\"signon.rememberSignons\");\n\
         function f() { lockPref(\"x\", 1); }\n\
         for (var i = 0; i < 3; i++) { pref(\"y\" + i, i); }\n\
         doSomething();\n\
         var harmless = \"text\";\n",
    );
    let anys: Vec<usize> = cfg
        .effects
        .iter()
        .filter(|e| matches!(e.target, CfgTarget::Any(_)))
        .map(|e| e.line)
        .collect();
    assert_eq!(anys, vec![3, 4, 5, 6, 7], "{:#?}", cfg.effects);
}

#[test]
fn conditions_make_values_unknown_and_try_bodies_run() {
    let cfg = eval(
        "//\n\
         try {\n\
           lockPref(\"a\", 1);\n\
         } catch (e) {\n\
           displayError(\"x\", e);\n\
           lockPref(\"b\", 2);\n\
         }\n\
         if (getenv(\"DEPT\") == \"sales\") { lockPref(\"c\", 3); } else lockPref(\"c\", 4);\n",
    );
    assert_eq!(cfg.effects[0].op, CfgOp::Lock(int(1)));
    for e in &cfg.effects[1..] {
        assert!(
            matches!(&e.op, CfgOp::Lock(CfgValue::Unknown(why)) if why.contains("condition")),
            "{e:?}"
        );
    }
    assert_eq!(cfg.effects.len(), 4);
}

#[test]
fn statements_without_semicolons_and_comments_everywhere() {
    let cfg = eval(
        "// a comment\n\
         /* block\n comment */ lockPref(\"a\",\n    1)\n\
         pref('b', 'it\\'s') // trailing\n",
    );
    assert_eq!(
        ops(&cfg),
        vec![
            (3, pref("a"), CfgOp::Lock(int(1))),
            (
                5,
                pref("b"),
                CfgOp::User(CfgValue::Known(PrefValue::Str("it's".into())))
            ),
        ]
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = evaluate(b"// x\nlockPref(\"a\", 30;\n", 0, &env).unwrap_err();
    assert_eq!((e.line, e.column), (2, 17), "{e}");
    let e = evaluate(b"// x\n\nlockPref(\"a, 30);\n", 0, &env).unwrap_err();
    assert_eq!((e.line, e.column), (3, 10), "{e}");
    let e = evaluate(b"// x\n{ pref(\"a\", 1);\n", 0, &env).unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    let e = evaluate(b"// x\n/* never closed\n", 0, &env).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let deep = format!("//\n{}1{}\n", "(".repeat(100), ")".repeat(100));
    assert!(evaluate(deep.as_bytes(), 0, &env).is_err());
    // Found by fuzzing: a catch without a body.
    let e = evaluate(b"//\ntry { pref(\"a\", 1); } catch ()\n", 0, &env).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(evaluate(b"//\nif (x)", 0, &env).is_err());
    let big = vec![b' '; MAX_BYTES + 1];
    assert!(evaluate(&big, 0, &env).is_err());
}

#[test]
fn a_realistic_administrators_file() {
    let cfg = eval(
        "// IMPORTANT: Start your code on the 2nd line\n\
         // Corporate Thunderbird settings\n\
         var user = getenv(\"USER\");\n\
         var domain = \"corp.example\";\n\
         try {\n\
           lockPref(\"mail.server.default.check_time\", 30);\n\
           pref(\"signon.rememberSignons\", false);\n\
           clearPref(\"mail.identity.id1.reply_to\");\n\
           defaultPref(\"mail.identity.id1.useremail\", user + \"@\" + domain);\n\
         } catch (e) {\n\
           displayError(\"lockedPref\", e);\n\
         }\n",
    );
    assert_eq!(
        ops(&cfg),
        vec![
            (
                6,
                pref("mail.server.default.check_time"),
                CfgOp::Lock(int(30))
            ),
            (
                7,
                pref("signon.rememberSignons"),
                CfgOp::User(CfgValue::Known(PrefValue::Bool(false)))
            ),
            (8, pref("mail.identity.id1.reply_to"), CfgOp::Clear),
            (
                9,
                pref("mail.identity.id1.useremail"),
                CfgOp::Default(CfgValue::Known(PrefValue::Str("alice@corp.example".into())))
            ),
        ]
    );
}
