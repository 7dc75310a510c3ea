//! Small text helpers shared by the modules: hex digests, and clipping what a client sent before
//! it is echoed in an error (bounded, control characters made visible).

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// `text` made safe to echo in an error message or a log line: control and invisible formatting
/// characters are written as escapes (`\0`, `\n`, `\u{202e}`), and the result is at most about
/// `max` bytes, cut at a character boundary and marked with `…`.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 4);
    for c in text.chars() {
        let before = out.len();
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_debug());
            // `escape_debug` leaves some format characters as they are; force an escape.
            if out.len() - before == c.len_utf8() {
                out.truncate(before);
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// Characters that are not control characters but print as nothing or reorder the text around
/// them: zero-width characters, bidirectional overrides and isolates (the "Trojan Source" set),
/// the byte-order mark and other format characters a name has no use for.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn clip_escapes_and_bounds() {
        assert_eq!(clip("plain", 10), "plain");
        assert_eq!(clip("a\0b\nc", 20), "a\\0b\\nc");
        assert_eq!(clip("evil\u{202e}txt", 30), "evil\\u{202e}txt");
        assert_eq!(clip("zero\u{200b}width", 30), "zero\\u{200b}width");
        let long = clip(&"x".repeat(100_000), 64);
        assert!(long.len() <= 64 + '…'.len_utf8(), "{}", long.len());
        assert!(long.ends_with('…'));
        // Multi-byte characters are never cut in half.
        let cut = clip(&"é".repeat(100), 7);
        assert_eq!(cut, "ééé…");
    }
}
