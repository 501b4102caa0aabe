//! Text hygiene shared by every wire: what a peer may put in front of other people.
//!
//! [`clean_text`] is the one rule, applied to names, public and private messages and every
//! reply that echoes what a user typed, before anyone (or the message log) sees it:
//!
//! - control characters (C0 but tab, DEL, C1, and so ESC) are removed, so nobody can drive
//!   another user's terminal;
//! - the bidirectional controls (U+202A–U+202E, U+2066–U+2069, and the marks U+200E, U+200F,
//!   U+061C) are removed, so nobody can turn a line around or reorder what follows it;
//! - invisible format characters are removed: every default-ignorable code point (zero-width
//!   space, zero-width non-joiner, word joiner, BOM, soft hyphen, the Mongolian vowel
//!   separator, the unassigned ones, ...) and the interlinear annotation controls, except
//!   what text needs: ZWJ (U+200D) and the variation selectors, which emoji are made of, the
//!   Hangul fillers, which are letters (the name rules refuse them), and tag characters
//!   inside an emoji tag sequence;
//! - the line and paragraph separators (U+2028, U+2029) become spaces, so no reader of the
//!   message log that splits lines on them sees a line that was never sent;
//! - the result is NFC, so that one text has one spelling.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc, is_nfc_quick};

/// True for the characters nobody may send to another user's terminal: C0 controls other than
/// tab, DEL, and C1 controls (which include ESC's 8-bit form CSI).
pub fn is_forbidden_control(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt, unchanged since
/// Unicode 6.0 but for its reserved ranges, which it already covers): the code points a
/// renderer shows as nothing when it does not know them. The unit tests check this table
/// against the one `unicode-security` carries.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// The tag characters, of which emoji tag sequences are made (the flags of England, Scotland
/// and Wales are 🏴 followed by tag letters and the cancel tag).
fn is_tag(c: char) -> bool {
    ('\u{e0020}'..='\u{e007f}').contains(&c)
}

/// The base of the emoji tag sequences in use: U+1F3F4 WAVING BLACK FLAG.
const TAG_BASE: char = '\u{1f3f4}';
/// The end of an emoji tag sequence.
const CANCEL_TAG: char = '\u{e007f}';

/// The default-ignorable code points that text keeps: ZWJ and the variation selectors, which
/// emoji (and Mongolian) need, and the Hangul fillers, which are letters. Tags are decided by
/// [`clean_text`] from what surrounds them.
fn is_kept_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200d}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{e0100}'..='\u{e01ef}'
            | '\u{180b}'..='\u{180d}'
            | '\u{180f}'
            | '\u{115f}'..='\u{1160}'
            | '\u{3164}'
            | '\u{ffa0}'
    )
}

/// True for what [`clean_text`] removes wherever it is: the forbidden controls, the
/// bidirectional controls and marks, and the invisible format characters.
fn is_removed(c: char) -> bool {
    is_forbidden_control(c)
        || (is_default_ignorable(c) && !is_kept_invisible(c) && !is_tag(c))
        // The interlinear annotation controls, which some renderers use to hide text.
        || ('\u{fff9}'..='\u{fffb}').contains(&c)
}

/// U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR, which become spaces.
fn is_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Whether [`clean_text`] would change `text`.
fn needs_cleaning(text: &str) -> bool {
    // The common case, printable ASCII (and tab), is clean and NFC as it is.
    if text.bytes().all(|b| matches!(b, b' '..=b'~' | b'\t')) {
        return false;
    }
    if text
        .chars()
        .any(|c| is_removed(c) || is_tag(c) || is_separator(c))
    {
        return true;
    }
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => false,
        IsNormalized::No => true,
        IsNormalized::Maybe => !is_nfc(text),
    }
}

/// Makes `text` fit to show to other people, by the rules of this module's documentation.
///
/// Borrows when there is nothing to change, which is the common case: printable ASCII is
/// decided by one pass over the bytes.
pub fn clean_text(text: &str) -> Cow<'_, str> {
    if !needs_cleaning(text) {
        return Cow::Borrowed(text);
    }
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if is_tag(c) {
            // A run of tags, up to the first cancel tag, stays only as a whole emoji tag
            // sequence: right after the flag, one or more tag letters, then the cancel tag.
            let run = rest.len() - rest.trim_start_matches(is_tag).len();
            let run = rest[..run]
                .find(CANCEL_TAG)
                .map_or(run, |end| end + CANCEL_TAG.len_utf8());
            let (tags, after) = rest.split_at(run);
            if kept.ends_with(TAG_BASE) && is_tag_sequence(tags) {
                kept.push_str(tags);
            }
            rest = after;
            continue;
        }
        if is_separator(c) {
            kept.push(' ');
        } else if !is_removed(c) {
            kept.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    // Removing characters can leave a base and a mark side by side: normalise last.
    if is_nfc(&kept) {
        Cow::Owned(kept)
    } else {
        Cow::Owned(kept.nfc().collect())
    }
}

/// A tag spec and its end: one or more of U+E0020–U+E007E, then U+E007F.
fn is_tag_sequence(tags: &str) -> bool {
    tags.strip_suffix(CANCEL_TAG)
        .is_some_and(|spec| !spec.is_empty() && !spec.contains(CANCEL_TAG))
}

/// What a typed message becomes before anyone sees it: [`clean_text`], then trimmed.
/// Empty means "nothing to send". Takes the text by value so that a clean one keeps its
/// buffer.
pub fn clean_message(text: String) -> String {
    let cleaned = match clean_text(&text) {
        Cow::Borrowed(_) => None,
        Cow::Owned(cleaned) => Some(cleaned),
    };
    trim_in_place(cleaned.unwrap_or(text))
}

/// `text.trim()`, without a new buffer.
fn trim_in_place(mut text: String) -> String {
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    text.drain(..start);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_escape_sequences_bell_and_c1_but_keeps_tab_and_unicode() {
        assert_eq!(
            clean_text("\x1b[2Jhi\x07\tthere\u{9b}31m é ✓\x7f"),
            "[2Jhi\tthere31m é ✓"
        );
    }

    #[test]
    fn borrows_clean_text() {
        for clean in [
            "plain text",
            "tab\there",
            "café ✓ שלום 👨\u{200d}👩\u{200d}👧",
            "",
        ] {
            assert!(matches!(clean_text(clean), Cow::Borrowed(_)), "{clean:?}");
        }
    }

    #[test]
    fn removes_bidi_controls_and_marks() {
        let rlo =
            "\u{202e}txt.exe\u{202c} \u{2066}a\u{2069}\u{2067}b\u{2068}c\u{202a}\u{202b}\u{202d}";
        assert_eq!(clean_text(rlo), "txt.exe abc");
        assert_eq!(clean_text("a\u{200e}b\u{200f}c\u{61c}d"), "abcd");
    }

    #[test]
    fn removes_invisible_format_characters() {
        let hidden =
            "z\u{200b}w\u{200c}s\u{2060}w\u{feff}j\u{ad}s\u{180e}h\u{34f}i\u{fff9}a\u{fffb}";
        assert_eq!(clean_text(hidden), "zwswjshia");
        // Unassigned default-ignorable code points too, whatever they become one day.
        assert_eq!(clean_text("a\u{2065}b\u{fff0}c\u{e0fff}d"), "abcd");
    }

    #[test]
    fn keeps_what_emoji_need() {
        let family = "👨\u{200d}👩\u{200d}👧";
        let heart = "\u{2764}\u{fe0f}";
        let keycap = "1\u{fe0f}\u{20e3}";
        let skin = "👋\u{1f3fd}";
        let fr = "\u{1f1eb}\u{1f1f7}";
        for emoji in [family, heart, keycap, skin, fr] {
            assert_eq!(clean_text(emoji), emoji);
        }
    }

    #[test]
    fn tags_stay_in_an_emoji_tag_sequence_only() {
        let england = "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
        let scotland = "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}";
        for flag in [england, scotland] {
            assert_eq!(clean_text(flag), flag);
            assert_eq!(clean_text(&format!("go {flag}!")), format!("go {flag}!"));
        }
        // Hidden text in tags, after nothing or after a letter, goes.
        assert_eq!(clean_text("hi\u{e0068}\u{e0069}\u{e007f}"), "hi");
        assert_eq!(clean_text("\u{e0041}\u{e0042}x"), "x");
        // Not well formed: no end, no letters.
        assert_eq!(clean_text("🏴\u{e0067}\u{e0062}"), "🏴");
        assert_eq!(clean_text("🏴\u{e0067}\u{e0062} x"), "🏴 x");
        assert_eq!(clean_text("🏴\u{e007f}"), "🏴");
        // Tags after a whole sequence are not part of it.
        assert_eq!(clean_text(&format!("{england}\u{e0041}\u{e007f}")), england);
        // The deprecated language tag and the tags past the tag letters go too.
        assert_eq!(clean_text("a\u{e0001}\u{e0080}b"), "ab");
    }

    #[test]
    fn line_and_paragraph_separators_become_spaces() {
        assert_eq!(clean_text("one\u{2028}two\u{2029}three"), "one two three");
    }

    #[test]
    fn text_is_nfc() {
        assert_eq!(clean_text("Jose\u{301}"), "José");
        assert_eq!(clean_text("\u{212b}"), "\u{c5}", "the angstrom sign is Å");
        // A base and its mark brought together by a removal compose.
        assert_eq!(clean_text("e\u{200b}\u{301}"), "é");
        // NFC, not NFKC: the fullwidth letters stay what they are.
        assert_eq!(clean_text("ａｌｉｃｅ"), "ａｌｉｃｅ");
    }

    #[test]
    fn clean_message_trims_after_cleaning() {
        assert_eq!(clean_message(" \x01 hello \r".into()), "hello");
        assert_eq!(clean_message("\x1b\x1b  ".into()), "");
        assert_eq!(clean_message("\u{2028} hi \u{2029}".into()), "hi");
        assert_eq!(clean_message("  kept  ".into()), "kept");
    }

    #[test]
    fn a_clean_message_keeps_its_buffer() {
        let text = String::from("hello there");
        let at = text.as_ptr();
        let cleaned = clean_message(text);
        assert_eq!(cleaned.as_ptr(), at);
    }

    #[test]
    fn the_default_ignorable_table_is_unicode_security_s() {
        // UTS #39's skeleton drops exactly the default-ignorable code points, and no
        // confusable maps to nothing: a character whose skeleton is empty is one.
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let mut buf = [0; 4];
            let empty = unicode_security::skeleton(c.encode_utf8(&mut buf))
                .next()
                .is_none();
            assert_eq!(is_default_ignorable(c), empty, "U+{:04X}", c as u32);
        }
    }
}
