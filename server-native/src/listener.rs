//! Which listener a connection came in on: it decides the words of a refusal and the label of
//! its metrics.

/// Which listener a connection came in on: it decides the words of a refusal, and the label of
/// its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The line protocol: refusals are one line of text.
    Line,
    /// HTTP (WebSocket included): refusals are an HTTP response.
    Http,
}

impl Listener {
    /// Its name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Line => "tcp",
            Listener::Http => "http",
        }
    }
}
