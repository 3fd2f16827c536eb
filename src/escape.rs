//! Text from applications and providers, made safe to print: control characters (C0, DEL, C1,
//! and the line and paragraph separators) are written as escapes, so no value can forge a log
//! line or drive a terminal.

use std::borrow::Cow;

/// Whether `c` must not reach a log line or a terminal as itself.
pub fn unsafe_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` as it is when it holds nothing unsafe (the usual case, no copy), else with every
/// unsafe character escaped (`\n`, `\u{85}`, `\u{1b}`).
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An optional value as [`shown`], or `-`.
pub fn shown_or_dash(text: Option<&str>) -> Cow<'_, str> {
    text.map_or(Cow::Borrowed("-"), shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(shown("ORDER12345"), Cow::Borrowed("ORDER12345")));
        assert_eq!(shown("Maseru ✓"), "Maseru ✓");
        assert_eq!(shown("a\nINFO forged"), "a\\nINFO forged");
        assert_eq!(shown("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(shown("nel\u{85}x\u{7f}\0"), "nel\\u{85}x\\u{7f}\\u{0}");
        assert_eq!(shown("sep\u{2028}"), "sep\\u{2028}");
        assert_eq!(shown_or_dash(None), "-");
    }
}
