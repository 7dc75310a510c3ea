//! Who the user is: login names checked before they reach a command line, and passwd entries
//! (the format of `/etc/passwd` and of `getent passwd`).

use std::path::PathBuf;

/// The longest login name accepted (Linux allows 32 bytes, Windows 104 characters with the
/// domain; this is generous and still keeps a name from becoming a command line of its own).
const MAX_USER_NAME: usize = 256;

/// Refuses what cannot be a login name before it reaches a command line: empty, too long, a
/// leading `-` (an option to `getent` or `id`), control characters, the passwd separator `:`, a
/// path's `/`, and `*` and `"` (every session, and quoting, to Windows tools). `@` and `\` stay:
/// SSSD's fully qualified names (`jdoe@corp.example`) and Windows' `CORP\jdoe` use them.
pub(crate) fn check_user_name(user: &str) -> Result<(), String> {
    let why = if user.is_empty() {
        "is empty".to_owned()
    } else if user.len() > MAX_USER_NAME {
        format!("is longer than {MAX_USER_NAME} bytes")
    } else if user.starts_with('-') {
        "starts with '-'".to_owned()
    } else if user.chars().any(char::is_control) {
        "contains a control character".to_owned()
    } else if let Some(c) = user.chars().find(|c| matches!(c, ':' | '/' | '*' | '"')) {
        format!("contains {c:?}")
    } else {
        return Ok(());
    };
    Err(format!("user name {user:?} {why}"))
}

/// One user's passwd entry, as far as reaching their session needs it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Reads one passwd line, `name:password:uid:gid:gecos:home:shell`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_passwd_line(line: &str) -> Result<Account, String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() != 7 {
        return Err(format!(
            "passwd entry {line:?} has {} fields, not 7",
            fields.len()
        ));
    }
    let number = |what: &str, text: &str| {
        text.parse::<u32>()
            .map_err(|_| format!("passwd entry {line:?} has {what} {text:?}, not a number"))
    };
    if fields[0].is_empty() {
        return Err(format!("passwd entry {line:?} has no name"));
    }
    if fields[5].is_empty() {
        return Err(format!("passwd entry {line:?} has no home folder"));
    }
    Ok(Account {
        name: fields[0].to_owned(),
        uid: number("uid", fields[2])?,
        gid: number("gid", fields[3])?,
        home: PathBuf::from(fields[5]),
    })
}

/// The entry of `user` in `getent passwd -- user`'s output. `getent` answers a numeric name
/// with the entry of that uid, so the entry must carry the name asked for.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn account_from_getent(user: &str, output: &str) -> Result<Account, String> {
    let line = output
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("no user named {user:?}"))?;
    let account = parse_passwd_line(line)?;
    if account.name != user {
        return Err(format!(
            "asked for user {user:?}, the user database answered {:?}",
            account.name
        ));
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        let ok = |line: &str, name: &str, uid: u32, gid: u32, home: &str| {
            assert_eq!(
                parse_passwd_line(line),
                Ok(Account {
                    name: name.into(),
                    uid,
                    gid,
                    home: home.into()
                }),
                "{line:?}"
            );
        };
        ok("root:x:0:0:root:/root:/bin/bash", "root", 0, 0, "/root");
        ok(
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            "nobody",
            65534,
            65534,
            "/nonexistent",
        );
        ok(
            "alice:*:1000:1000:Alice Example,,,:/home/alice:",
            "alice",
            1000,
            1000,
            "/home/alice",
        );
        // SSSD users, as getent prints them.
        ok(
            "jdoe@corp.example:*:1234500001:1234500513:John Doe:/home/jdoe@corp.example:/bin/bash",
            "jdoe@corp.example",
            1_234_500_001,
            1_234_500_513,
            "/home/jdoe@corp.example",
        );

        let err = |line: &str, needle: &str| {
            let e = parse_passwd_line(line).unwrap_err();
            assert!(e.contains(needle), "{line:?}: {e}");
        };
        err("alice:x:1000:1000:/home/alice:/bin/sh", "6 fields");
        err("alice:x:1000:1000::/home/alice:/bin/sh:extra", "8 fields");
        err("alice:x:-1:1000::/home/alice:/bin/sh", "uid \"-1\"");
        err("alice:x:1000:4294967296::/home/alice:/bin/sh", "gid");
        err(":x:1000:1000::/home/alice:/bin/sh", "no name");
        err("alice:x:1000:1000:::/bin/sh", "no home");
    }

    #[test]
    fn getent_answers() {
        let alice = "alice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(account_from_getent("alice", alice).unwrap().uid, 1000);
        let e = account_from_getent("1000", alice).unwrap_err();
        assert!(e.contains("answered \"alice\""), "{e}");
        let e = account_from_getent("bob", "").unwrap_err();
        assert_eq!(e, "no user named \"bob\"");
    }

    #[test]
    fn user_names() {
        for ok in [
            "alice",
            "jdoe.ext",
            "Jürgen",
            "svc_mail",
            "CORP\\alice",
            "user$",
            "jdoe@corp.example",
        ] {
            assert_eq!(check_user_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(MAX_USER_NAME + 1);
        for (bad, why) in [
            ("", "is empty"),
            (long.as_str(), "longer than 256 bytes"),
            ("-n", "starts with '-'"),
            ("a\tb", "control"),
            ("a\u{7f}", "control"),
            ("a:b", "':'"),
            ("../etc", "'/'"),
            ("*", "'*'"),
            ("a\"b", "'\"'"),
        ] {
            let e = check_user_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
