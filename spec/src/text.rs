//! Names from images and objects (file, program, section, map names,
//! labels, annotations) are untrusted text. Printed raw, a control
//! character or a bidirectional override could rewrite the terminal or
//! make one name look like another; [`printable`] escapes them.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as is: control characters and
/// the Unicode bidirectional controls.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `s` with every control or bidirectional character written as `\u{..}`
/// (and a backslash doubled when anything is escaped, so the escaped form
/// cannot be forged); unchanged when there is none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert!(matches!(printable("xdp_stats"), Cow::Borrowed("xdp_stats")));
        assert_eq!(printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\ny"), "x\\u{a}y");
        assert_eq!(printable("evil\u{202e}o.txt"), "evil\\u{202e}o.txt");
        // Once escaping, a literal backslash is doubled: no forgery.
        assert_eq!(printable("a\\u{1b}\x07"), "a\\\\u{1b}\\u{7}");
    }
}
