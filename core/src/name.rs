//! The name rules, which the room enforces and the browser checks as the user types.
//!
//! The browser client calls the same function as the room to give instant feedback, so the two
//! can never disagree.
//!
//! Two keys say when two names cannot both be online: [`name_key`], under which names that
//! differ only in case are the same name, and [`look_key`], under which names that look alike
//! (UTS #39's confusable skeleton, whatever their case) are.

use std::fmt;

use unicode_security::skeleton;

use crate::text::{clean_text, is_default_ignorable};

/// The longest name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 32;

/// Why a name was refused before even looking at who is online.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Nothing left after trimming.
    Empty,
    /// More than [`MAX_NAME_CHARS`] characters.
    TooLong,
    /// A character other than a letter, a digit, `_`, `-` or `.`.
    InvalidChar(char),
    /// An invisible character (a default-ignorable code point, such as a Hangul filler),
    /// which would make the name look like another.
    Invisible(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "Name cannot be empty."),
            NameError::TooLong => {
                write!(f, "Name is too long: at most {MAX_NAME_CHARS} characters.")
            }
            NameError::InvalidChar(c) => write!(
                f,
                "Name cannot contain {c:?}: use letters, digits, '_', '-' and '.' only."
            ),
            NameError::Invisible(c) => write!(
                f,
                "Name cannot contain the invisible character U+{:04X}: use letters, digits, \
                 '_', '-' and '.' only.",
                u32::from(*c)
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a name as typed and returns it cleaned (as [`clean_text`] cleans any text: controls
/// and invisible format characters removed, NFC), trimmed, or why not.
///
/// Letters and digits are Unicode letters and digits (`José` and `Zoë` are fine, typed
/// composed or not); the Hangul fillers, letters that show as nothing, are refused. Whether a
/// name is free is the room's business, see [`name_key`] and [`look_key`].
pub fn validate_name(raw: &str) -> Result<String, NameError> {
    let cleaned = clean_text(raw);
    let name = cleaned.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    for c in name.chars() {
        if is_default_ignorable(c) {
            return Err(NameError::Invisible(c));
        }
        if !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(NameError::InvalidChar(c));
        }
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    Ok(name.to_owned())
}

/// The form under which names are compared: two names are the same name when their keys are
/// equal, so `Alice` and `ALICE` cannot both be online.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The form under which names are compared for looks: two names whose keys are equal look
/// too much alike to be both online, so `аlice` (Cyrillic `а`), `ａｌｉｃｅ`, `𝐚𝐥𝐢𝐜𝐞` and
/// `AIice` (a capital `I`) are all kept out while `alice` is in.
///
/// UTS #39's skeleton maps each character to the one it is confusable with, but it is
/// case-sensitive (`I` becomes `l`, `i` stays `i`), while a name is one name whatever its
/// case: `AIice` looks like `Alice`, which is `alice`. So the key is taken of every spelling
/// of the name at once: the skeleton of its lower case, upper-cased (so that what only
/// capitals are confusable with comes in), the skeleton of that, lower-cased. Names equal
/// under [`name_key`] are equal under this key too. The price is that letters a capital
/// makes alike count as one: `i`, `I`, `l`, `L` and `1` are one letter here, and `o`, `O`
/// and `0` another.
///
/// A few microseconds for a name of 32 characters: the room takes it once per join and keeps
/// it in a map, so a join costs a lookup however many are online.
pub fn look_key(name: &str) -> String {
    let lower: String = skeleton(&name.to_lowercase()).collect();
    let upper: String = skeleton(&lower.to_uppercase()).collect();
    upper.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_and_punctuation_and_trims() {
        assert_eq!(
            validate_name("  alice_1.b-c \r").as_deref(),
            Ok("alice_1.b-c")
        );
        assert_eq!(validate_name("José").as_deref(), Ok("José"));
        assert_eq!(validate_name(&"x".repeat(32)).map(|n| n.len()), Ok(32));
    }

    #[test]
    fn rejects_empty_long_and_odd_names() {
        assert_eq!(validate_name("   "), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(33)), Err(NameError::TooLong));
        assert_eq!(validate_name("bob smith"), Err(NameError::InvalidChar(' ')));
        assert_eq!(validate_name("bob!"), Err(NameError::InvalidChar('!')));
        assert_eq!(validate_name("/quit"), Err(NameError::InvalidChar('/')));
    }

    #[test]
    fn controls_and_format_characters_are_removed_before_the_check() {
        assert_eq!(validate_name("al\x07ice").as_deref(), Ok("alice"));
        assert_eq!(
            validate_name("\u{202e}al\u{200b}ice").as_deref(),
            Ok("alice")
        );
    }

    #[test]
    fn names_are_nfc() {
        assert_eq!(validate_name("Jose\u{301}").as_deref(), Ok("José"));
        assert_eq!(validate_name("Jose\u{301}"), validate_name("José"));
    }

    #[test]
    fn invisible_letters_are_refused() {
        for filler in ['\u{115f}', '\u{1160}', '\u{3164}', '\u{ffa0}'] {
            assert!(
                filler.is_alphanumeric(),
                "a letter, so the check must be its own"
            );
            assert_eq!(
                validate_name(&format!("bob{filler}")),
                Err(NameError::Invisible(filler))
            );
            assert_eq!(
                validate_name(&filler.to_string()),
                Err(NameError::Invisible(filler))
            );
        }
        // What text keeps for emoji is no part of a name either.
        assert_eq!(
            validate_name("bob\u{200d}"),
            Err(NameError::Invisible('\u{200d}'))
        );
        assert_eq!(
            NameError::Invisible('\u{3164}').to_string(),
            "Name cannot contain the invisible character U+3164: use letters, digits, '_', '-' \
             and '.' only."
        );
    }

    #[test]
    fn look_alikes_share_a_key() {
        let alice = look_key("alice");
        for alike in ["аlice", "ａｌｉｃｅ", "𝐚𝐥𝐢𝐜𝐞", "AIice", "ALICE", "al1ce"]
        {
            assert_eq!(look_key(alike), alice, "{alike:?}");
        }
        assert_eq!(look_key("b0b"), look_key("bob"));
        assert_eq!(look_key("rnary"), look_key("Mary"));
        for other in ["alicia", "alize", "bob", "alíce"] {
            assert_ne!(look_key(other), alice, "{other:?}");
        }
    }

    #[test]
    fn names_equal_regardless_of_case_share_a_look_key() {
        for name in [
            "alice",
            "José",
            "Zoë_2.0-beta",
            "Ελένη",
            "Мария",
            "straße",
            "Iñigo",
        ] {
            for variant in [name.to_uppercase(), name.to_lowercase()] {
                assert_eq!(look_key(&variant), look_key(name), "{variant:?}");
            }
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(validate_name(&"é".repeat(32)).is_ok());
        assert_eq!(validate_name(&"é".repeat(33)), Err(NameError::TooLong));
    }

    #[test]
    fn keys_ignore_case() {
        assert_eq!(name_key("ALICE"), name_key("alice"));
        assert_ne!(name_key("alice"), name_key("alicia"));
    }
}
