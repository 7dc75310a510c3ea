//! Fuzzes the AutoConfig evaluator (`thunderbird::autoconfig::evaluate`), which reads a file an
//! administrator (or anyone who can write the installation directory) controls.
//!
//! For any bytes: `evaluate` never panics and stays bounded; an error names a line within the
//! file (the first line is skipped, so line ≥ 2); every effect is on a line within the file;
//! and obscuring the file by k (every byte + k) and evaluating with `obscure_value` k gives
//! exactly what the plain file gives with 0, as Thunderbird's un-obscuring does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwarden_clients::thunderbird::autoconfig::evaluate;

fn env(var: &str) -> Option<String> {
    (var == "USER").then(|| "alice".to_owned())
}

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let plain = evaluate(data, 0, &env);
    match &plain {
        Ok(cfg) => {
            for e in &cfg.effects {
                assert!(e.line >= 2 && e.line <= lines, "effect on line {}", e.line);
                assert!(e.text.chars().count() <= 120);
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= lines.max(1), "{e}"),
    }
    let k = data.first().map_or(1, |&b| b.max(1));
    let shifted: Vec<u8> = data.iter().map(|b| b.wrapping_add(k)).collect();
    assert_eq!(
        evaluate(&shifted, i64::from(k), &env),
        plain,
        "obscured by {k} reads differently"
    );
});
