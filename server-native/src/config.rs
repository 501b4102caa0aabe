//! The command line: every flag of `docs/protocol.md`, each with an environment variable.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_core::proxy::{Cidr, TrustedProxies};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

/// One chat room, reachable with nc or telnet over TCP and from a browser over HTTP.
///
/// Every flag can also be set through the environment variable shown with it; a flag given on
/// the command line wins.
#[derive(Parser, Debug, Clone)]
#[command(name = "chat-server", version, about, long_about = None)]
pub struct Config {
    /// Line-protocol listener (nc, telnet). Port 0 picks a free port.
    #[arg(
        long,
        env = "CHAT_TCP",
        value_name = "ADDR",
        default_value = "127.0.0.1:8888"
    )]
    pub tcp: String,

    /// HTTP listener: the page, the wasm bundle and the /ws WebSocket. Port 0 picks a free port.
    #[arg(
        long,
        env = "CHAT_HTTP",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http: String,

    /// Connections admitted at once, both transports together; one more gets "Server is full".
    #[arg(long, env = "CHAT_MAX_USERS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_users: u32,

    /// Seconds without a line before a connection is dropped; 0 never drops anyone.
    #[arg(
        long,
        env = "CHAT_IDLE_TIMEOUT",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub idle_timeout: u64,

    /// Longest accepted line or WebSocket message, in bytes; a longer one is discarded.
    #[arg(long, env = "CHAT_MAX_LINE", value_name = "BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    pub max_line: u32,

    /// Public messages replayed to a user who joins.
    #[arg(long, env = "CHAT_HISTORY", value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub history: u32,

    /// Append the message log here, one JSON object per line (joins, leaves, public messages).
    #[arg(long, env = "CHAT_LOG", value_name = "PATH")]
    pub log: Option<PathBuf>,

    /// Milliseconds a log record may wait in memory: each is written to the file (and the file
    /// fdatasync'ed) at most this long after the room accepted it, so a kill -9 loses at most
    /// that much. 0 writes and syncs whenever the writer's queue runs dry.
    #[arg(long, env = "CHAT_LOG_FLUSH", value_name = "MILLIS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub log_flush: u64,

    /// Rotate the log once it would pass this many bytes: PATH becomes PATH.1, PATH.1 PATH.2,
    /// and so on. 0 never rotates by size (SIGHUP still reopens PATH, for logrotate).
    #[arg(
        long,
        env = "CHAT_LOG_MAX_SIZE",
        value_name = "BYTES",
        default_value_t = 0
    )]
    pub log_max_size: u64,

    /// Rotated log files kept by --log-max-size, PATH.1 (newest) to PATH.N.
    #[arg(long, env = "CHAT_LOG_KEEP", value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=crate::log::MAX_ROTATED as i64))]
    pub log_keep: u32,

    /// Flood control: a burst of 20 lines, then 5 lines a second; faster lines are dropped
    /// with a notice.
    #[arg(long, env = "CHAT_FLOOD", value_name = "on|off", default_value = "on")]
    pub flood: Switch,

    /// Unsent output, in bytes, a connection may have queued before it is dropped as too slow.
    #[arg(long, env = "CHAT_MAX_QUEUE", value_name = "BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue: u64,

    /// Serve the browser client's files from this directory (`/` is its index.html). Without
    /// it, `/` is a page that says how to get the web client and how to chat with nc.
    #[arg(long, env = "CHAT_WEB_ROOT", value_name = "DIR")]
    pub web_root: Option<PathBuf>,

    /// Also accept WebSocket handshakes from pages of this origin (e.g.
    /// `https://chat.example.org`); repeatable, comma-separated in the variable; `*` accepts
    /// any. Always accepted: no Origin (non-browser clients) and the server's own page.
    #[arg(
        long,
        env = "CHAT_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,

    /// Also answer requests for this host name (e.g. `chat.example.org`, the server's public
    /// name, or a proxy's in front); repeatable, comma-separated in the variable; `*` answers
    /// any. A request whose Host is another name gets 403, so that a page elsewhere cannot
    /// point its own name at this server (DNS rebinding). Always answered: IP addresses,
    /// localhost, the name in --http and the hosts of --allow-origin.
    #[arg(
        long,
        env = "CHAT_ALLOW_HOST",
        value_name = "NAME",
        value_delimiter = ',',
        value_parser = host_name
    )]
    pub allow_host: Vec<String>,

    /// Seconds between WebSocket pings; a peer that sends nothing, not even a pong, for two of
    /// them is dropped. 0 turns pings off.
    #[arg(long, env = "CHAT_WS_PING", value_name = "SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub ws_ping: u64,

    /// Connections one address (IPv6: one /64) may hold at once, both listeners together; one
    /// more is refused. 0: no limit. Loopback is exempt unless --limit-loopback.
    #[arg(
        long,
        env = "CHAT_MAX_CONNS_PER_IP",
        value_name = "N",
        default_value_t = 32
    )]
    pub max_conns_per_ip: u32,

    /// New connections one address (IPv6: one /64) may open a minute, both listeners together,
    /// in a burst of as many; faster ones are refused. 0: no limit.
    #[arg(
        long,
        env = "CHAT_MAX_NEW_PER_IP",
        value_name = "N",
        default_value_t = 120
    )]
    pub max_new_per_ip: u32,

    /// Joins one address (IPv6: one /64) may make a minute, in a burst of as many; a faster
    /// one is refused at the name prompt with the wait ("Too many joins from your address;
    /// ..."), so that nobody can fill a small room with join and leave lines. 0: no limit.
    #[arg(
        long,
        env = "CHAT_MAX_JOINS_PER_IP",
        value_name = "N",
        default_value_t = 10
    )]
    pub max_joins_per_ip: u32,

    /// Apply the per-address limits (--max-conns-per-ip, --max-new-per-ip,
    /// --max-joins-per-ip) to loopback connections too (exempt by default).
    #[arg(long, env = "CHAT_LIMIT_LOOPBACK")]
    pub limit_loopback: bool,

    /// Seconds an HTTP client has to send its request head and take the answer to a WebSocket
    /// upgrade; a slower one gets 408 and is closed.
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub handshake_timeout: u64,
    /// Speak TLS on both listeners with this certificate chain (PEM, the server's own
    /// certificate first): the line listener for `openssl s_client`, HTTPS and WSS on the
    /// HTTP one. Needs --tls-key.
    #[arg(long, env = "CHAT_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM, unencrypted: PKCS#8, PKCS#1 or SEC1). Needs
    /// --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a connection may stay at the name prompt, however many names it tries, before
    /// "Disconnected: no name given in time."; 0 leaves it to the idle timeout.
    #[arg(
        long,
        env = "CHAT_NAME_TIMEOUT",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub name_timeout: u64,

    /// Above this many users, joins and leaves are announced in one digest per
    /// --announce-interval instead of a line each.
    #[arg(
        long,
        env = "CHAT_ANNOUNCE_LIMIT",
        value_name = "N",
        default_value_t = 200
    )]
    pub announce_limit: u32,

    /// Seconds between two digests of joins and leaves in a room above --announce-limit.
    #[arg(long, env = "CHAT_ANNOUNCE_INTERVAL", value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub announce_interval: u64,

    /// Serve the server's metrics on the HTTP listener's /metrics (Prometheus, OpenMetrics
    /// text). Anyone who reaches the HTTP listener can read them: on a public address, block
    /// /metrics at the proxy in front, or turn it off. Off also stops counting.
    #[arg(
        long,
        env = "CHAT_METRICS",
        value_name = "on|off",
        default_value = "on"
    )]
    pub metrics: Switch,

    /// A load balancer or reverse proxy (a network such as 10.0.0.0/8 or 2001:db8::/32, or one
    /// address) whose connections say who their client is: the PROXY protocol (v1 or v2, as
    /// HAProxy's send-proxy sends it) on the line listener, X-Forwarded-For or Forwarded on the
    /// HTTP listener. That client's address is then the one that the per-address limits and the
    /// log use. Every line connection from these addresses must begin with a PROXY header.
    /// Repeatable, comma-separated in the variable. From any other address a PROXY line is just
    /// text and forwarding headers are ignored.
    #[arg(
        long,
        env = "CHAT_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = str::parse::<Cidr>
    )]
    pub trusted_proxy: Vec<Cidr>,

    /// Share the room through this Redis (7.0 or later) or Valkey, such as
    /// redis://127.0.0.1:6379/0: every chat-server with the same URL and --redis-prefix is one
    /// room. Without it this server is a room alone and needs nothing else.
    #[arg(long, env = "CHAT_REDIS", value_name = "URL", value_parser = redis_url)]
    pub redis: Option<String>,

    /// The room's keys in that Redis; other prefixes are other rooms.
    #[arg(long, env = "CHAT_REDIS_PREFIX", value_name = "NAME", default_value = "chat",
          value_parser = plain_name)]
    pub redis_prefix: String,

    /// Seconds a node may go unheard before it counts as gone: its users then leave the room on
    /// every other node.
    #[arg(long, env = "CHAT_NODE_TIMEOUT", value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub node_timeout: u64,

    /// This node's name in logs, metrics and /readyz; by default made of the host name, the
    /// line listener's port and the start time.
    #[arg(long, env = "CHAT_NODE_ID", value_name = "NAME", value_parser = plain_name)]
    pub node_id: Option<String>,

    /// Operators: the file's first line is the secret a user types after /op (a file, so
    /// that it never shows in ps). Without it nobody is an operator.
    #[arg(long, env = "CHAT_OP_TOKEN_FILE", value_name = "PATH", value_parser = op_token)]
    pub op_token_file: Option<OpToken>,
}

/// The operator secret, read from `--op-token-file`; never printed.
#[derive(Clone)]
pub struct OpToken(String);

impl std::fmt::Debug for OpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpToken(..)")
    }
}

/// The first line of the file at `path`, which must not be empty.
fn op_token(path: &str) -> Result<OpToken, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Err(format!(
            "the first line of {path} is empty: it must hold the secret"
        ));
    }
    Ok(OpToken(secret.to_owned()))
}

/// `on` or `off`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl Config {
    /// Reads flags from `args` (the program name first) and nothing else: no `CHAT_*`
    /// variable fills in what they leave out. For embedding the server, and for tests that
    /// must not depend on the shell they run in.
    pub fn from_args_only<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Config::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(args)?;
        Config::from_arg_matches(&matches)
    }

    /// The message log's settings, with `--log`.
    pub fn log_options(&self) -> Option<crate::log::LogOptions> {
        self.log.as_ref().map(|path| crate::log::LogOptions {
            path: path.clone(),
            flush: Duration::from_millis(self.log_flush),
            max_size: self.log_max_size,
            keep: self.log_keep,
        })
    }

    /// What the room needs to know of it. The message numbering's epoch is the current time
    /// in milliseconds, so every start of the server numbers under a new epoch (afresh, or
    /// with `--log` on after the log's last message).
    pub fn room_config(&self) -> chat_core::Config {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        chat_core::Config {
            max_users: self.max_users as usize,
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            max_line: self.max_line as usize,
            history: self.history as usize,
            flood: (self.flood == Switch::On).then(chat_core::FloodConfig::default),
            epoch,
            name_timeout: (self.name_timeout > 0).then(|| Duration::from_secs(self.name_timeout)),
            announce_limit: self.announce_limit as usize,
            announce_interval: Duration::from_secs(self.announce_interval),
            joins_per_minute: (self.max_joins_per_ip > 0).then_some(self.max_joins_per_ip),
            lobby: self.lobby_config(),
            limit_loopback: self.limit_loopback,
            cluster: None,
            cluster_grace: Duration::from_secs(self.node_timeout),
            op_token: self.op_token_file.as_ref().map(|t| t.0.clone()),
            // The server's clock starts just before this is made (a millisecond at most).
            wall_clock: epoch,
        }
    }

    /// This node's name: `--node-id`, or the host's name, the line listener's port and the
    /// start time (seconds), such as `web1-8888-1764800000`.
    pub fn node_id(&self, tcp_port: u16) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty() && plain_name(h).is_ok())
            .unwrap_or_else(|| "node".to_owned());
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        format!("{host}-{tcp_port}-{started}")
    }

    /// The networks of `--trusted-proxy`.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::new(self.trusted_proxy.iter().copied())
    }

    /// The name prompt's bounds: a quarter of `--max-users` before room is made, and 8 per
    /// address while the per-address limits are on (`--max-conns-per-ip`).
    fn lobby_config(&self) -> chat_core::LobbyConfig {
        let mut lobby = chat_core::Config::lobby_for(self.max_users as usize);
        if self.max_conns_per_ip == 0 {
            lobby.share = None;
        }
        lobby
    }

    /// The per-address limits at the door.
    pub fn admission_config(&self) -> chat_core::AdmissionConfig {
        chat_core::AdmissionConfig {
            max_open: (self.max_conns_per_ip > 0).then_some(self.max_conns_per_ip),
            new_per_minute: (self.max_new_per_ip > 0).then_some(self.max_new_per_ip),
            limit_loopback: self.limit_loopback,
            ..chat_core::AdmissionConfig::default()
        }
    }
}

/// A value of `--allow-host`: a host name (a port after it is ignored) or `*`, trimmed.
fn redis_url(value: &str) -> Result<String, String> {
    let url = value.trim();
    match redis::Client::open(url) {
        Ok(_) => Ok(url.to_owned()),
        Err(err) => Err(format!(
            "{value:?} is not a Redis URL this server can use ({err}): give one such as \
             redis://127.0.0.1:6379/0"
        )),
    }
}

/// A name for keys and logs: printable, no spaces, no braces, at most 64 bytes.
fn plain_name(value: &str) -> Result<String, String> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}');
    if value.is_empty() || value.len() > 64 || value.contains(bad) {
        return Err(format!(
            "{value:?} is not a plain name: 1 to 64 characters, no spaces and no braces"
        ));
    }
    Ok(value.to_owned())
}

fn host_name(value: &str) -> Result<String, String> {
    let name = value.trim();
    let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#');
    if name.is_empty() || name.contains(bad) {
        return Err(format!(
            "{value:?} is not a host name: give the name alone, such as chat.example.org \
             (a page's origin, with its scheme, goes to --allow-origin)"
        ));
    }
    Ok(name.to_owned())
}

/// Whether the diagnostics on standard error are in colour: only on a terminal (a file, a
/// pipe or journald gets plain text), and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>).
pub fn diagnostics_in_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_a_variable_and_args_only_reads_none() {
        // Setting variables in this process would race the other tests;
        // `tests/tests/process.rs` checks the variables on the real binary. Here: what clap is
        // told to read.
        let cmd = Config::command();
        let with_env = cmd
            .get_arguments()
            .filter(|a| a.get_env().is_some())
            .count();
        assert!(with_env >= 10, "every flag has its variable");
        let stripped = Config::command().mut_args(|a| a.env(None));
        assert_eq!(
            stripped
                .get_arguments()
                .filter(|a| a.get_env().is_some())
                .count(),
            0
        );
    }

    #[test]
    fn the_flags_are_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn diagnostics_are_in_colour_on_a_terminal_only_and_never_with_no_color() {
        use std::ffi::OsStr;
        assert!(diagnostics_in_colour(true, None));
        assert!(diagnostics_in_colour(true, Some(OsStr::new(""))));
        assert!(!diagnostics_in_colour(true, Some(OsStr::new("1"))));
        assert!(!diagnostics_in_colour(false, None));
        assert!(!diagnostics_in_colour(false, Some(OsStr::new("1"))));
    }

    #[test]
    fn defaults_are_those_of_the_protocol() {
        let c = Config::from_args_only(["chat-server"]).unwrap();
        assert_eq!(c.tcp, "127.0.0.1:8888");
        assert_eq!(c.http, "127.0.0.1:8080");
        let room = c.room_config();
        assert_eq!(room.max_users, 1024);
        assert_eq!(room.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(room.max_line, 4096);
        assert_eq!(room.history, 50);
        assert!(room.flood.is_some());
        assert_eq!(c.web_root, None);
        assert!(c.allow_origin.is_empty());
        assert_eq!(c.ws_ping, 20);
        let door = c.admission_config();
        assert_eq!(door.max_open, Some(32));
        assert_eq!(door.new_per_minute, Some(120));
        assert!(!door.limit_loopback);
        assert_eq!(room.joins_per_minute, Some(10));
        assert!(!room.limit_loopback);
        assert_eq!(c.handshake_timeout, 10);
        assert_eq!((c.tls_cert, c.tls_key), (None, None));
        assert_eq!(room.name_timeout, Some(Duration::from_secs(60)));
        assert_eq!(room.announce_limit, 200);
        assert_eq!(room.announce_interval, Duration::from_secs(10));
        assert_eq!(c.metrics, Switch::On);
    }

    #[test]
    fn metrics_can_be_turned_off() {
        let c = Config::from_args_only(["x", "--metrics", "off"]).unwrap();
        assert_eq!(c.metrics, Switch::Off);
        assert!(Config::from_args_only(["x", "--metrics", "maybe"]).is_err());
    }

    #[test]
    fn per_address_limits_can_be_set_turned_off_and_applied_to_loopback() {
        let c = Config::from_args_only([
            "x",
            "--max-conns-per-ip",
            "3",
            "--max-new-per-ip",
            "0",
            "--max-joins-per-ip",
            "4",
            "--limit-loopback",
            "--handshake-timeout",
            "2",
        ])
        .unwrap();
        let room = c.room_config();
        assert_eq!(room.joins_per_minute, Some(4));
        assert!(room.limit_loopback);
        let door = c.admission_config();
        assert_eq!(door.max_open, Some(3));
        assert_eq!(door.new_per_minute, None);
        assert!(door.limit_loopback);
        assert_eq!(c.handshake_timeout, 2);
        let off =
            Config::from_args_only(["x", "--max-conns-per-ip", "0", "--max-joins-per-ip", "0"])
                .unwrap();
        assert_eq!(off.admission_config().max_open, None);
        assert_eq!(off.room_config().joins_per_minute, None);
    }

    #[test]
    fn tls_takes_a_certificate_and_a_key_together() {
        let c = Config::from_args_only(["x", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
        for (given, missing) in [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")] {
            let err = Config::from_args_only(["x", given, "f.pem"]).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn name_timeout_and_announcements_follow_their_flags() {
        let c = Config::from_args_only([
            "x",
            "--name-timeout",
            "0",
            "--announce-limit",
            "5",
            "--announce-interval",
            "30",
        ])
        .unwrap();
        let room = c.room_config();
        assert_eq!(room.name_timeout, None);
        assert_eq!(room.announce_limit, 5);
        assert_eq!(room.announce_interval, Duration::from_secs(30));
        let c = Config::from_args_only(["x", "--name-timeout", "15"]).unwrap();
        assert_eq!(c.room_config().name_timeout, Some(Duration::from_secs(15)));
    }

    #[test]
    fn trusted_proxies_repeat_split_on_commas_and_take_both_families() {
        let none = Config::from_args_only(["x"]).unwrap();
        assert!(none.trusted_proxies().is_empty());
        let c = Config::from_args_only([
            "x",
            "--trusted-proxy",
            "10.0.0.0/8, 192.0.2.7",
            "--trusted-proxy",
            "2001:db8::/32",
            "--trusted-proxy",
            "::1",
        ])
        .unwrap();
        let shown: Vec<String> = c.trusted_proxy.iter().map(Cidr::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);
        let trusted = c.trusted_proxies();
        for yes in [
            "10.1.2.3",
            "192.0.2.7",
            "2001:db8::9",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(trusted.contains(yes.parse().unwrap()), "{yes}");
        }
        assert!(!trusted.contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_bad_trusted_proxy_is_refused_naming_the_flag() {
        for (bad, says) in [
            ("10.0.0.5/8", "bits set past the prefix"),
            ("proxy.example.org", "neither an IPv4 nor an IPv6 address"),
            ("10.0.0.0/40", "the prefix after '/' must be 0 to 32"),
            ("10.0.0.0/8,,192.0.2.1", "empty"),
        ] {
            let err = Config::from_args_only(["x", "--trusted-proxy", bad]).unwrap_err();
            let err = err.to_string();
            assert!(err.contains("--trusted-proxy <CIDR>"), "{bad}: {err}");
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn origins_repeat_and_split_on_commas() {
        let c = Config::from_args_only([
            "x",
            "--allow-origin",
            "http://a.example,https://b.example",
            "--allow-origin",
            "*",
        ])
        .unwrap();
        assert_eq!(
            c.allow_origin,
            ["http://a.example", "https://b.example", "*"]
        );
    }

    #[test]
    fn host_names_repeat_split_on_commas_and_refuse_urls() {
        let c = Config::from_args_only([
            "x",
            "--allow-host",
            "chat.example.org, *",
            "--allow-host",
            "other.example:8443",
        ])
        .unwrap();
        assert_eq!(
            c.allow_host,
            ["chat.example.org", "*", "other.example:8443"]
        );
        assert!(Config::from_args_only(["x"]).unwrap().allow_host.is_empty());
        for bad in ["https://chat.example.org", "", "a b", "user@host"] {
            let err = Config::from_args_only(["x", "--allow-host", bad]).unwrap_err();
            assert!(err.to_string().contains("--allow-origin"), "{bad}: {err}");
        }
    }

    #[test]
    fn zero_idle_timeout_means_never_and_flood_can_be_off() {
        let c = Config::from_args_only(["x", "--idle-timeout", "0", "--flood", "off"]).unwrap();
        assert_eq!(c.room_config().idle_timeout, None);
        assert_eq!(c.room_config().flood, None);
    }

    #[test]
    fn log_flags_become_log_options() {
        let c = Config::from_args_only(["x"]).unwrap();
        assert!(c.log_options().is_none());
        let c = Config::from_args_only(["x", "--log", "chat.jsonl"]).unwrap();
        let o = c.log_options().unwrap();
        assert_eq!(o.flush, Duration::from_millis(200));
        assert_eq!((o.max_size, o.keep), (0, 5));
        let c = Config::from_args_only([
            "x",
            "--log",
            "chat.jsonl",
            "--log-flush",
            "0",
            "--log-max-size",
            "1000000",
            "--log-keep",
            "2",
        ])
        .unwrap();
        let o = c.log_options().unwrap();
        assert_eq!(o.flush, Duration::ZERO);
        assert_eq!((o.max_size, o.keep), (1_000_000, 2));
        for bad in [["x", "--log-keep", "0"], ["x", "--log-flush", "soon"]] {
            assert!(Config::from_args_only(bad).is_err());
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        for args in [
            &["x", "--max-users", "0"][..],
            &["x", "--flood", "maybe"],
            &["x", "--max-line", "-1"],
            &["x", "--idle-timeout", "soon"],
            &["x", "--handshake-timeout", "0"],
            &["x", "--max-conns-per-ip", "-1"],
            &["x", "--announce-interval", "0"],
            &["x", "--announce-limit", "-1"],
            &["x", "--name-timeout", "later"],
        ] {
            let err = Config::from_args_only(args).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
    }
}
