//! Fuzzes the `Registry.pol` reader (`postwarden_registry::pol`).
//!
//! For any bytes: `parse` never panics and never reads past the end; an error names a byte
//! offset inside the input (at most its length); whatever parses renders back to exactly the
//! input bytes (the reader is lossless), and looking up any value the file names answers
//! without panicking, with a record of the file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwarden_registry::pol::{parse, render, PolIndex, MAX_FILE_SIZE};

fuzz_target!(|data: &[u8]| {
    let file = match parse(data) {
        Ok(file) => file,
        Err(e) => {
            assert!(
                e.offset <= data.len().min(MAX_FILE_SIZE),
                "offset {} past the end ({} bytes): {e}",
                e.offset,
                data.len()
            );
            assert!(!e.message.is_empty());
            return;
        }
    };
    assert_eq!(
        render(&file),
        data,
        "rendering does not give the input back"
    );
    let index = PolIndex::new(file.clone());
    for e in &file.entries {
        assert!(e.offset < data.len());
        let _ = e.action();
        let name = e.value.rsplit('.').next().unwrap_or_default();
        if let Some((_, decided)) = index.effect(&e.key, name) {
            assert!(file.entries.contains(decided));
        }
    }
});
