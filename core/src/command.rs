//! What a user asks of the room, whichever wire it came over.
//!
//! An nc user types lines, which [`parse_line`] turns into [`Request`]s; the browser client
//! parses its input box with the same function and sends the resulting `Request` as JSON.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;
use crate::text::clean_text;

/// One thing a user asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
        "who" => Ok(Some(Request::Who)),
        "help" => Ok(Some(Request::Help)),
        "quit" => Ok(Some(Request::Quit)),
        _ => Err(ParseError::UnknownCommand(format!("/{word}"))),
    }
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
}
