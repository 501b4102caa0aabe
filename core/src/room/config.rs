//! The room's limits and policies: [`Config`], and flood control's [`FloodConfig`].

use std::time::Duration;

use crate::lobby::LobbyConfig;

/// The room's limits and policies.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connections admitted at once, named or not, all wires together.
    pub max_users: usize,
    /// Silence after which a connection is dropped; `None` never drops anyone.
    pub idle_timeout: Option<Duration>,
    /// How long a connection may stay at the name prompt, counted from when it opened, however
    /// much it sends; `None` leaves it to the idle timeout. Stops a peer that keeps a slot by
    /// trickling invalid names.
    pub name_timeout: Option<Duration>,
    /// Longest accepted line or JSON message, in bytes.
    pub max_line: usize,
    /// Public messages kept and replayed to newcomers.
    pub history: usize,
    /// Flood control; `None` turns it off.
    pub flood: Option<FloodConfig>,
    /// Names this run of the message numbering (sent in every welcome). A driver that starts
    /// the numbering afresh should pick a new value, such as its start time in milliseconds,
    /// so that a client's resume point from an earlier run is not mistaken for one of this run.
    pub epoch: u64,
    /// Above this many joined users, joins and leaves are no longer announced one by one but
    /// gathered into a digest (`Event::Presence`), so that churn in a large room cannot flood
    /// everyone. At or below it, every join and leave is announced as it happens.
    pub announce_limit: usize,
    /// The shortest time between two digests; a join or leave waits at most this long to be
    /// announced. Zero is taken as one millisecond.
    pub announce_interval: Duration,
    /// Joins one address (an IPv4 address, or an IPv6 /64) may make a minute, in a burst of as
    /// many; a join past them is refused at the prompt with the wait. `None`: no limit. Each
    /// join and leave of a room at or below `announce_limit` is a line to everyone: this keeps
    /// one machine from filling a small room's screens by joining and quitting in a loop.
    pub joins_per_minute: Option<u32>,
    /// Connections at the name prompt, as a [`Lobby`](crate::Lobby) by address: past `share`
    /// from one address a newcomer is refused, and past `capacity` in all (or when the room
    /// holds `max_users`) a newcomer makes room, the oldest at the prompt of the address with
    /// the most there being told the room is full. Joined users are not counted, nor
    /// connections whose address the driver did not give, nor exempt loopback ones. So a few
    /// addresses cannot keep the room's places with connections that never join.
    pub lobby: LobbyConfig,
    /// Whether loopback connections (`127.0.0.0/8`, `::1`) count towards `joins_per_minute`
    /// and `lobby` too; by default they are exempt, like at the door (the operator's own
    /// machine, or a proxy on it).
    pub limit_loopback: bool,
    /// Cluster mode ([`crate::cluster`]): this node's name, unique among the nodes sharing
    /// the room's log. `None`: the room is alone, numbering and admitting by itself.
    pub cluster: Option<String>,
    /// Cluster mode: how long the users of other nodes stay listed when the log began afresh
    /// without them (its engine came back empty), for their nodes to claim them again; those
    /// not claimed by then leave. The driver's node timeout.
    pub cluster_grace: Duration,
    /// The operator secret (`--op-token-file`): `/op` with it makes an operator. `None`:
    /// nobody is one, and the operators' commands are unknown.
    pub op_token: Option<String>,
    /// Unix time, in milliseconds, at the driver's `Timestamp::ZERO`: bans and mutes end at
    /// wall-clock times, so that they outlive a restart and mean the same on every node.
    pub wall_clock: u64,
}

impl Config {
    /// The lobby that suits `max_users`: 8 at the prompt per address, and room made past a
    /// quarter of the room (at least 16).
    pub fn lobby_for(max_users: usize) -> LobbyConfig {
        LobbyConfig {
            share: Some(8),
            capacity: (max_users / 4).max(16),
            grace: Duration::ZERO,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_users: 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            max_line: 4096,
            history: 50,
            flood: Some(FloodConfig::default()),
            epoch: 0,
            name_timeout: Some(Duration::from_secs(60)),
            announce_limit: 200,
            announce_interval: Duration::from_secs(10),
            joins_per_minute: Some(10),
            lobby: Config::lobby_for(1024),
            limit_loopback: false,
            cluster: None,
            cluster_grace: Duration::from_secs(10),
            op_token: None,
            wall_clock: 0,
        }
    }
}

/// Flood control as a token bucket (in its GCRA form): a burst of `burst` lines at once,
/// then one line per `interval`. A person typing, or pasting a few lines, never reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodConfig {
    /// Lines that may arrive at once.
    pub burst: u32,
    /// The sustained pace: one line per this much time.
    pub interval: Duration,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            burst: 20,
            interval: Duration::from_millis(200),
        }
    }
}
