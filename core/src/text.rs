//! Text hygiene shared by every wire: what a peer may put in front of other people.

use std::borrow::Cow;

/// True for the characters nobody may send to another user's terminal: C0 controls other than
/// tab, DEL, and C1 controls (which include ESC's 8-bit form CSI).
pub fn is_forbidden_control(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// Removes forbidden control characters, so no peer can drive another user's terminal
/// (colours, cursor movement, clearing the screen, ringing the bell).
///
/// Borrows when there is nothing to remove, which is the common case.
pub fn strip_controls(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_forbidden_control) {
        Cow::Owned(text.chars().filter(|&c| !is_forbidden_control(c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// What a typed message becomes before anyone sees it: controls removed, then trimmed.
/// Empty means "nothing to send".
pub fn clean_message(text: &str) -> String {
    strip_controls(text).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_escape_sequences_bell_and_c1_but_keeps_tab_and_unicode() {
        assert_eq!(
            strip_controls("\x1b[2Jhi\x07\tthere\u{9b}31m é ✓\x7f"),
            "[2Jhi\tthere31m é ✓"
        );
    }

    #[test]
    fn borrows_clean_text() {
        assert!(matches!(strip_controls("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn clean_message_trims_after_stripping() {
        assert_eq!(clean_message(" \x01 hello \r"), "hello");
        assert_eq!(clean_message("\x1b\x1b  "), "");
    }
}
