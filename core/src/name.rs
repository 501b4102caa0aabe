//! The name rules, which the room enforces and the browser checks as the user types.
//!
//! The browser client calls the same function as the room to give instant feedback, so the two
//! can never disagree.

use std::fmt;

use crate::text::strip_controls;

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
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a name as typed and returns it cleaned (controls removed, trimmed), or why not.
///
/// Letters and digits are Unicode letters and digits (`José` and `Zoë` are fine); whether a
/// name is free is the room's business, see [`name_key`].
pub fn validate_name(raw: &str) -> Result<String, NameError> {
    let stripped = strip_controls(raw);
    let name = stripped.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(NameError::InvalidChar(c));
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
    fn controls_are_removed_before_the_check() {
        assert_eq!(validate_name("al\x07ice").as_deref(), Ok("alice"));
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
