//! Text from untrusted sources (names, messages, certificate fields, annotations) made safe
//! for a terminal: control characters are escaped, so nothing read from a manifest, a
//! Secret or a certificate can move the cursor, clear the screen or forge lines.

/// `s` with control characters (C0, DEL, C1) and bidirectional overrides escaped as
/// `\u{..}` (`\n`, `\r`, `\t` as themselves, escaped).
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c) =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// An annotation's value as shown: passwords are never printed.
pub fn annotation_value(key: &str, value: &str) -> String {
    if key.to_ascii_lowercase().contains("password") {
        "(redacted)".into()
    } else {
        clean(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_passwords_redacted() {
        assert_eq!(
            clean("a\u{1b}[2Jb\nc\u{7f}\u{202e}"),
            "a\\u{1b}[2Jb\\nc\\u{7f}\\u{202e}"
        );
        assert_eq!(clean("plain-name.demo"), "plain-name.demo");
        assert_eq!(
            annotation_value(
                "cert-utils-operator.redhat-cop.io/java-keystore-password",
                "s3cret"
            ),
            "(redacted)"
        );
        assert_eq!(annotation_value("a", "b\u{7}"), "b\\u{7}");
    }
}
