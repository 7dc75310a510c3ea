//! Generated Thunderbird homes for the benchmarks and examples.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// A Thunderbird profile with `accounts` accounts (odd POP3, even IMAP), like a real prefs.js.
pub fn thunderbird_home(home: &Path, accounts: usize) {
    let dir = home.join(".thunderbird/bench.default");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        home.join(".thunderbird/profiles.ini"),
        "[Profile0]\nName=bench\nIsRelative=1\nPath=bench.default\n",
    )
    .unwrap();
    let mut p = String::from("// Mozilla User Preferences\n\n");
    let keys: Vec<String> = (1..=accounts).map(|i| format!("account{i}")).collect();
    let _ = writeln!(
        p,
        "user_pref(\"mail.accountmanager.accounts\", \"{}\");",
        keys.join(",")
    );
    for i in 1..=accounts {
        let kind = if i % 2 == 0 { "imap" } else { "pop3" };
        for line in [
            format!("user_pref(\"mail.account.account{i}.identities\", \"id{i}\");"),
            format!("user_pref(\"mail.account.account{i}.server\", \"server{i}\");"),
            format!("user_pref(\"mail.identity.id{i}.useremail\", \"user{i}@example.org\");"),
            format!("user_pref(\"mail.identity.id{i}.smtpServer\", \"smtp{i}\");"),
            format!("user_pref(\"mail.server.server{i}.type\", \"{kind}\");"),
            format!("user_pref(\"mail.server.server{i}.hostname\", \"mail{i}.example.org\");"),
            format!("user_pref(\"mail.server.server{i}.userName\", \"user{i}\");"),
            format!("user_pref(\"mail.server.server{i}.check_time\", 5);"),
            format!("user_pref(\"mail.server.server{i}.leave_on_server\", true);"),
            format!("user_pref(\"mail.smtpserver.smtp{i}.hostname\", \"smtp{i}.example.org\");"),
            format!("user_pref(\"mail.smtpserver.smtp{i}.authMethod\", 1);"),
        ] {
            p.push_str(&line);
            p.push('\n');
        }
    }
    // Thunderbird keeps many unrelated prefs too; a realistic file is a few thousand lines.
    for i in 0..2000 {
        let _ = writeln!(
            p,
            "user_pref(\"extensions.bench.filler{i}\", \"value {i} with \\\"quotes\\\"\");"
        );
    }
    fs::write(dir.join("prefs.js"), p).unwrap();
}
