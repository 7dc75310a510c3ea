//! Fuzzes the `.reg` file reader/writer (`postwarden_registry::regfile`).
//!
//! For any bytes: `parse` never panics; an error names a line of the file; a UTF-8 input parses
//! exactly as the same text re-encoded the way regedit writes it (UTF-16LE with a byte-order
//! mark); whatever parses renders (UTF-16LE, BOM, CRLF) to bytes that parse back to the same
//! file, and rendering that again gives the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwarden_registry::regfile::{parse, render};

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let wide: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(
            parse(&wide),
            parsed,
            "UTF-8 and UTF-16LE encodings of one text differ"
        );
    }
    let file = match parsed {
        Ok(file) => file,
        Err(e) => {
            // Lines are counted in the decoded text; a UTF-16 file has at most one per two bytes.
            let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {lines}: {e}",
                e.line
            );
            return;
        }
    };
    let bytes = render(&file);
    assert!(
        bytes.starts_with(&[0xff, 0xfe]),
        "rendered without a byte-order mark"
    );
    match parse(&bytes) {
        Ok(again) => {
            assert_eq!(again, file, "rendered file reads back differently");
            assert_eq!(render(&again), bytes, "rendering is not a fixed point");
        }
        Err(e) => panic!(
            "rendered file does not parse: {e}\n{}",
            String::from_utf16_lossy(
                &bytes[2..]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>()
            )
        ),
    }
});
