//! What a user asks of the room, whichever wire it came over.
//!
//! An nc user types lines, which [`parse_line`] turns into [`Request`]s; the browser client
//! parses its input box with the same function and sends the resulting `Request` as JSON.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;
use crate::text::clean_text;

/// One thing a user asks for. A field the request does not have is refused, not ignored: a
/// typo (`"minuts"`) must not become a ban of the default length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Take this name and enter the room (the first line on the line wire).
    Join {
        /// The name as typed; the room cleans and validates it.
        name: String,
        /// Where a reconnecting client left off: the room then replays only the public
        /// messages it missed (see [`Resume`]). Absent on a first join and on the line wire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
    },
    /// A public message to everyone else.
    Say {
        /// The message as typed.
        text: String,
    },
    /// A private message: `/msg NAME TEXT`.
    Msg {
        /// Whom to send it to, compared case-insensitively.
        to: String,
        /// The message.
        text: String,
    },
    /// `/who`: list who is online.
    Who,
    /// `/help`: list the commands.
    Help,
    /// `/quit`: say goodbye and leave.
    Quit,
    /// `/op TOKEN`: become an operator (with `--op-token-file`).
    Op {
        /// The secret as typed.
        token: String,
    },
    /// `/kick NAME [REASON]` (operators).
    Kick {
        /// Whom.
        name: String,
        /// Why; `no reason given` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `/ban NAME [MINUTES] [REASON]` (operators).
    Ban {
        /// Whom.
        name: String,
        /// How long; 60 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u64>,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `/mute NAME [MINUTES]` (operators).
    Mute {
        /// Whom.
        name: String,
        /// How long; 60 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u64>,
    },
    /// `/unban NAME` (operators).
    Unban {
        /// Whose ban.
        name: String,
    },
    /// `/unmute NAME` (operators).
    Unmute {
        /// Whose mute.
        name: String,
    },
    /// `/bans`: the bans and mutes in force (operators).
    Bans,
}

impl Request {
    /// The command word of an operator's request (`kick` for `/kick`), `None` for the others:
    /// what the room names when nobody can be an operator.
    pub fn operator_word(&self) -> Option<&'static str> {
        Some(match self {
            Request::Op { .. } => "op",
            Request::Kick { .. } => "kick",
            Request::Ban { .. } => "ban",
            Request::Mute { .. } => "mute",
            Request::Unban { .. } => "unban",
            Request::Unmute { .. } => "unmute",
            Request::Bans => "bans",
            _ => return None,
        })
    }
}

/// The last public message a client saw, named by the room's numbering: the `epoch` of the
/// welcome it got and the `seq` of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The `epoch` from the client's last welcome.
    pub epoch: u64,
    /// The highest `seq` the client has seen (0 if none).
    pub seq: u64,
}

/// A typed line that is not a valid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A `/word` that is not a command; carries the word as typed.
    UnknownCommand(String),
    /// A known command with missing arguments; carries the usage line.
    Usage(&'static str),
}

impl ParseError {
    /// The operator command's word when this is one's usage (`kick` for `/kick`'s): a room
    /// where nobody can be an operator answers it as an unknown command.
    pub fn operator_word(&self) -> Option<&'static str> {
        let ParseError::Usage(usage) = self else {
            return None;
        };
        ["op", "kick", "ban", "mute", "unban", "unmute"]
            .into_iter()
            .find(|w| {
                usage
                    .strip_prefix('/')
                    .and_then(|u| u.strip_prefix(w))
                    .is_some_and(|r| r.starts_with(' '))
            })
    }

    /// The kind of refusal, as the `error` event's code names it.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::UnknownCommand(_) => ErrorCode::UnknownCommand,
            ParseError::Usage(_) => ErrorCode::Usage,
        }
    }
}

/// The sentence the room answers with, so every client refuses a line in the same words.
impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The word is the user's own input: echo it cleaned as any text is.
            ParseError::UnknownCommand(word) => write!(
                f,
                "Unknown command '{}'. Type /help for the list of commands.",
                clean_text(word)
            ),
            ParseError::Usage(usage) => write!(f, "Usage: {usage}"),
        }
    }
}

/// The commands, as `/help` lists them: usage and what it does.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/msg NAME TEXT", "send TEXT to NAME only"),
    ("/who", "list who is online"),
    ("/help", "show this list"),
    ("/quit", "leave the chat"),
];

/// The operators' commands, which `/help` lists to operators only.
pub const OPERATOR_COMMANDS: &[(&str, &str)] = &[
    ("/kick NAME [REASON]", "put NAME out of the room"),
    (
        BAN_USAGE,
        "keep NAME (and its address) out, 60 minutes by default",
    ),
    (MUTE_USAGE, "make NAME's public lines reach nobody"),
    ("/unban NAME", "lift the ban on NAME"),
    ("/unmute NAME", "lift the mute on NAME"),
    ("/bans", "list the bans and mutes in force"),
];

const BAN_USAGE: &str = "/ban NAME [MINUTES] [REASON]";
const MUTE_USAGE: &str = "/mute NAME [MINUTES]";

/// The usage line of `/msg`.
pub const MSG_USAGE: &str = "/msg NAME TEXT";

/// The command word of a private message, as [`parse_line`] matches it (after `/`).
const MSG: &str = "msg";

/// The start of a private message to `name`, as [`parse_line`] reads it: what a client puts
/// in its input box when a name is picked, for the user to type the message after.
pub fn private_prefix(name: &str) -> String {
    format!("/{MSG} {name} ")
}

/// Parses one typed line of a user who has joined.
///
/// Returns `Ok(None)` for a line with nothing to say (blank after trimming). A line starting
/// with `/` is a command, whose name is matched case-insensitively; any other line is a
/// public message, trimmed. Control characters are not this function's business: the room
/// removes them from everything it relays.
pub fn parse_line(line: &str) -> Result<Option<Request>, ParseError> {
    let Some(rest) = line.strip_prefix('/') else {
        let text = line.trim();
        return Ok((!text.is_empty()).then(|| Request::Say {
            text: text.to_owned(),
        }));
    };
    let (word, args) = match rest.split_once(char::is_whitespace) {
        Some((word, args)) => (word, args.trim()),
        None => (rest.trim_end(), ""),
    };
    match word.to_ascii_lowercase().as_str() {
        MSG => {
            let (to, text) = args
                .split_once(char::is_whitespace)
                .map(|(to, text)| (to, text.trim()))
                .unwrap_or((args, ""));
            if to.is_empty() || text.is_empty() {
                return Err(ParseError::Usage(MSG_USAGE));
            }
            Ok(Some(Request::Msg {
                to: to.to_owned(),
                text: text.to_owned(),
            }))
        }
        // Without a token too: a wrong one, and a try.
        "op" => Ok(Some(Request::Op {
            token: args.to_owned(),
        })),
        "kick" => {
            let (name, reason) = first_word(args);
            if name.is_empty() {
                return Err(ParseError::Usage("/kick NAME [REASON]"));
            }
            Ok(Some(Request::Kick { name, reason }))
        }
        "ban" => {
            let (name, rest) = first_word(args);
            if name.is_empty() {
                return Err(ParseError::Usage(BAN_USAGE));
            }
            let (minutes, reason) = match rest.as_deref().map(first_word) {
                Some((word, after)) if looks_numeric(&word) => {
                    (Some(minutes(&word, BAN_USAGE)?), after)
                }
                _ => (None, rest),
            };
            Ok(Some(Request::Ban {
                name,
                minutes,
                reason,
            }))
        }
        "mute" => {
            let (name, rest) = first_word(args);
            let minutes = match rest.as_deref() {
                None => None,
                Some(word) if looks_numeric(word) => Some(minutes(word, MUTE_USAGE)?),
                Some(_) => return Err(ParseError::Usage(MUTE_USAGE)),
            };
            if name.is_empty() {
                return Err(ParseError::Usage(MUTE_USAGE));
            }
            Ok(Some(Request::Mute { name, minutes }))
        }
        "unban" | "unmute" => {
            let (name, rest) = first_word(args);
            let unban = word.eq_ignore_ascii_case("unban");
            if name.is_empty() || rest.is_some() {
                let usage = if unban { "/unban NAME" } else { "/unmute NAME" };
                return Err(ParseError::Usage(usage));
            }
            Ok(Some(if unban {
                Request::Unban { name }
            } else {
                Request::Unmute { name }
            }))
        }
        "bans" => Ok(Some(Request::Bans)),
        "who" => Ok(Some(Request::Who)),
        "help" => Ok(Some(Request::Help)),
        "quit" => Ok(Some(Request::Quit)),
        _ => Err(ParseError::UnknownCommand(format!("/{word}"))),
    }
}

/// The first word of `args` and the rest, trimmed (`None` when nothing is left).
fn first_word(args: &str) -> (String, Option<String>) {
    let (word, rest) = args
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((args, ""));
    (word.to_owned(), (!rest.is_empty()).then(|| rest.to_owned()))
}

/// Whether `word` is meant as a number (`5`, `-5`, `1.5`, `+5`): a count of minutes, then,
/// and not the first word of a reason.
fn looks_numeric(word: &str) -> bool {
    let digits = word.strip_prefix(['+', '-']).unwrap_or(word);
    digits.starts_with(|c: char| c.is_ascii_digit())
}

/// A count of minutes as typed: whole and unsigned, else the usage. Too large a number is
/// `u64::MAX`: the room says how many minutes it takes (on every wire alike).
fn minutes(word: &str, usage: &'static str) -> Result<u64, ParseError> {
    if !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Usage(usage));
    }
    Ok(word.parse::<u64>().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(text: &str) -> Result<Option<Request>, ParseError> {
        Ok(Some(Request::Say { text: text.into() }))
    }

    #[test]
    fn plain_lines_are_trimmed_messages_and_blank_lines_are_nothing() {
        assert_eq!(parse_line("  hello there \r"), say("hello there"));
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line(" /quit"), say("/quit"));
    }

    #[test]
    fn commands_ignore_case_and_extra_spaces() {
        assert_eq!(parse_line("/quit"), Ok(Some(Request::Quit)));
        assert_eq!(parse_line("/QUIT  "), Ok(Some(Request::Quit)));
        assert_eq!(parse_line("/who"), Ok(Some(Request::Who)));
        assert_eq!(parse_line("/help"), Ok(Some(Request::Help)));
        assert_eq!(
            parse_line("/msg  Bob   hi  there "),
            Ok(Some(Request::Msg {
                to: "Bob".into(),
                text: "hi  there".into()
            }))
        );
    }

    #[test]
    fn msg_without_text_is_a_usage_error() {
        assert_eq!(parse_line("/msg"), Err(ParseError::Usage(MSG_USAGE)));
        assert_eq!(parse_line("/msg bob"), Err(ParseError::Usage(MSG_USAGE)));
        assert_eq!(parse_line("/msg bob   "), Err(ParseError::Usage(MSG_USAGE)));
    }

    #[test]
    fn a_private_prefix_with_text_after_it_is_a_private_message() {
        assert_eq!(private_prefix("Zoë"), "/msg Zoë ");
        assert_eq!(
            parse_line(&(private_prefix("Zoë") + "psst")),
            Ok(Some(Request::Msg {
                to: "Zoë".into(),
                text: "psst".into()
            }))
        );
        assert_eq!(
            parse_line(&private_prefix("Zoë")),
            Err(ParseError::Usage(MSG_USAGE)),
            "nothing typed after it yet"
        );
    }

    #[test]
    fn unknown_commands_are_named() {
        assert_eq!(
            parse_line("/dance wildly"),
            Err(ParseError::UnknownCommand("/dance".into()))
        );
        assert_eq!(parse_line("/"), Err(ParseError::UnknownCommand("/".into())));
    }

    #[test]
    fn operator_commands_take_their_arguments() {
        let kick = |name: &str, reason: Option<&str>| {
            Ok(Some(Request::Kick {
                name: name.into(),
                reason: reason.map(Into::into),
            }))
        };
        assert_eq!(parse_line("/kick bob"), kick("bob", None));
        assert_eq!(
            parse_line("/KICK bob  go away "),
            kick("bob", Some("go away"))
        );
        let ban = |minutes: Option<u64>, reason: Option<&str>| {
            Ok(Some(Request::Ban {
                name: "bob".into(),
                minutes,
                reason: reason.map(Into::into),
            }))
        };
        assert_eq!(parse_line("/ban bob"), ban(None, None));
        assert_eq!(parse_line("/ban bob 5"), ban(Some(5), None));
        assert_eq!(parse_line("/ban bob 5 spam"), ban(Some(5), Some("spam")));
        assert_eq!(parse_line("/ban bob spam 5"), ban(None, Some("spam 5")));
        // The room says which counts it takes, as it does on the JSON wire.
        assert_eq!(parse_line("/ban bob 0"), ban(Some(0), None));
        assert_eq!(
            parse_line("/ban bob 99999999999999999999999"),
            ban(Some(u64::MAX), None)
        );
        for odd in ["-5", "+5", "1.5", "5m"] {
            let typed = format!("/ban bob {odd} spam");
            assert_eq!(
                parse_line(&typed),
                Err(ParseError::Usage(BAN_USAGE)),
                "{odd}"
            );
        }
        assert_eq!(
            parse_line("/mute bob 3"),
            Ok(Some(Request::Mute {
                name: "bob".into(),
                minutes: Some(3)
            }))
        );
        assert_eq!(
            parse_line("/mute bob x"),
            Err(ParseError::Usage(MUTE_USAGE))
        );
        assert_eq!(
            parse_line("/unban bob"),
            Ok(Some(Request::Unban { name: "bob".into() }))
        );
        assert_eq!(
            parse_line("/unmute"),
            Err(ParseError::Usage("/unmute NAME"))
        );
        assert_eq!(parse_line("/bans"), Ok(Some(Request::Bans)));
        assert_eq!(
            parse_line("/op  s3cret "),
            Ok(Some(Request::Op {
                token: "s3cret".into()
            }))
        );
        assert_eq!(
            parse_line("/op"),
            Ok(Some(Request::Op { token: "".into() }))
        );
        assert_eq!(
            parse_line("/kick").unwrap_err().operator_word(),
            Some("kick")
        );
        assert_eq!(parse_line("/msg").unwrap_err().operator_word(), None);
    }
}
