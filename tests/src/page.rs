//! What the chat page shows, read from the DOM in one script call: the status, the join form,
//! the user list and the messages.

use std::fmt;

use serde_json::Value;

/// One entry of `#messages`: its kind (the classes other than `entry`), its text and, for a
/// public message, its `data-seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: String,
    pub text: String,
    pub seq: Option<u64>,
}

impl Entry {
    pub fn is(&self, kind: &str) -> bool {
        self.kind.split_whitespace().any(|k| k == kind)
    }

    /// Whether it is of `kind` and its text contains every one of `needles`.
    pub fn matches(&self, kind: &str, needles: &[&str]) -> bool {
        self.is(kind) && needles.iter().all(|n| self.text.contains(n))
    }
}

/// What the page shows, read in one script call.
#[derive(Clone, Debug, Default)]
pub struct PageState {
    /// `#status[data-state]`.
    pub status: Option<String>,
    pub status_text: String,
    /// `body[data-joined]`.
    pub joined: Option<String>,
    /// `#name-error`'s text.
    pub name_error: String,
    /// `#chat`'s `hidden`.
    pub chat_hidden: Option<bool>,
    /// `#message-input`'s value.
    pub input: String,
    /// The texts of `#users button.user`.
    pub users: Vec<String>,
    pub user_count: String,
    pub entries: Vec<Entry>,
}

impl PageState {
    pub fn is_joined(&self) -> bool {
        self.joined.as_deref() == Some("true")
    }

    pub fn status_is(&self, state: &str) -> bool {
        self.status.as_deref() == Some(state)
    }

    /// Whether some entry is of `kind` and contains every one of `needles`.
    pub fn has(&self, kind: &str, needles: &[&str]) -> bool {
        self.entries.iter().any(|e| e.matches(kind, needles))
    }

    /// How many entries are of `kind` and contain every one of `needles`.
    pub fn count(&self, kind: &str, needles: &[&str]) -> usize {
        self.entries
            .iter()
            .filter(|e| e.matches(kind, needles))
            .count()
    }

    /// Whether any entry (of any kind) contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.entries.iter().any(|e| e.text.contains(needle))
    }

    pub(crate) fn from_json(v: &Value) -> PageState {
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        PageState {
            status: s("status"),
            status_text: s("statusText").unwrap_or_default(),
            joined: s("joined"),
            name_error: s("nameError").unwrap_or_default(),
            chat_hidden: v["chatHidden"].as_bool(),
            input: s("input").unwrap_or_default(),
            users: v["users"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            user_count: s("userCount").unwrap_or_default(),
            entries: v["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| Entry {
                            kind: e["kind"].as_str().unwrap_or_default().to_owned(),
                            text: e["text"].as_str().unwrap_or_default().to_owned(),
                            seq: e["seq"].as_str().and_then(|s| s.parse().ok()),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl fmt::Display for PageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  #status[data-state={:?}] {:?}",
            self.status, self.status_text
        )?;
        writeln!(
            f,
            "  body[data-joined={:?}]  #chat hidden={:?}",
            self.joined, self.chat_hidden
        )?;
        writeln!(f, "  #name-error: {:?}", self.name_error)?;
        writeln!(
            f,
            "  #users: {:?}  #user-count: {:?}",
            self.users, self.user_count
        )?;
        writeln!(f, "  #message-input: {:?}", self.input)?;
        writeln!(f, "  #messages ({} entries):", self.entries.len())?;
        for e in &self.entries {
            match e.seq {
                Some(seq) => writeln!(f, "    [{}] seq={seq} {:?}", e.kind, e.text)?,
                None => writeln!(f, "    [{}] {:?}", e.kind, e.text)?,
            }
        }
        Ok(())
    }
}

pub(crate) const READ_PAGE: &str = r#"
const q = (s) => document.querySelector(s);
const text = (s) => { const e = q(s); return e ? e.textContent : null; };
const status = q('#status');
const chat = q('#chat');
const input = q('#message-input');
return {
  status: status ? (status.dataset.state ?? null) : null,
  statusText: status ? status.textContent.trim() : null,
  joined: document.body ? (document.body.dataset.joined ?? null) : null,
  nameError: text('#name-error'),
  chatHidden: chat ? chat.hidden : null,
  input: input ? input.value : null,
  users: Array.from(document.querySelectorAll('#users button.user'), (b) => b.textContent.trim()),
  userCount: text('#user-count'),
  entries: Array.from(document.querySelectorAll('#messages li.entry'), (li) => ({
    kind: Array.from(li.classList).filter((c) => c !== 'entry').join(' '),
    text: li.textContent.trim(),
    seq: li.dataset.seq ?? null,
  })),
};
"#;
