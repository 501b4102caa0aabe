//! The admin API's side of the room: `handle_admin`, a script's request answered at once, and
//! the list of who is online it gives. What a request does is resolved and enacted as an
//! operator's command is (`moderate.rs`).

use super::Room;
use super::conn::Wire;
use crate::error_code::ErrorCode;
use crate::moderation::{
    API_OPERATOR, AdminReply, AdminRequest, Moderation, OnlineUser, SanctionKind,
};
use crate::name::validate_name;
use crate::text::{clean_message, clean_text};
use crate::time::Timestamp;

impl Room {
    /// The admin API's `request`, at `now`: answered at once; what it does is done as an
    /// operator's command is (in cluster mode, through the shared log).
    pub fn handle_admin(&mut self, now: Timestamp, request: AdminRequest) -> AdminReply {
        self.advance(now);
        // Whom the action is signed by, on everyone's screen: a name, so that no signature
        // can pass for more of the line than a name.
        let signed = request
            .by()
            .map(|b| clean_text(b.trim()).into_owned())
            .filter(|b| !b.is_empty());
        let signer = match signed.map(|b| validate_name(&b)) {
            None => API_OPERATOR.to_owned(),
            Some(Ok(name)) => name,
            Some(Err(err)) => {
                return AdminReply::Invalid {
                    message: format!("by: {err}"),
                };
            }
        };
        let by = |_: Option<String>| signer.clone();
        let resolved = match request {
            AdminRequest::Online => {
                return AdminReply::Online {
                    users: self.online_users(),
                };
            }
            AdminRequest::Sanctions => {
                return AdminReply::Sanctions {
                    sanctions: self.sanctions(),
                };
            }
            AdminRequest::Kick {
                name,
                reason,
                by: who,
            } => self.resolve_kick(&name, by(who), reason),
            AdminRequest::Ban {
                name,
                minutes,
                reason,
                by: who,
            } => self.resolve_sanction(SanctionKind::Ban, &name, minutes, by(who), reason),
            AdminRequest::Mute {
                name,
                minutes,
                by: who,
            } => self.resolve_sanction(SanctionKind::Mute, &name, minutes, by(who), None),
            AdminRequest::Unban { name, by: who } => {
                self.resolve_lift(SanctionKind::Ban, &name, by(who))
            }
            AdminRequest::Unmute { name, by: who } => {
                self.resolve_lift(SanctionKind::Mute, &name, by(who))
            }
            AdminRequest::Notice { text, by: who } => {
                let text = clean_message(text);
                if text.is_empty() {
                    return AdminReply::Invalid {
                        message: "A notice needs some text.".into(),
                    };
                }
                if text.len() > self.config.max_line {
                    return AdminReply::Invalid {
                        message: self.too_long("A notice"),
                    };
                }
                Ok((Moderation::Notice { text, by: by(who) }, None))
            }
        };
        match resolved {
            Ok((moderation, _)) => {
                self.enact(None, moderation);
                AdminReply::Done
            }
            Err((ErrorCode::NoSuchUser | ErrorCode::NoSuchSanction, message)) => {
                AdminReply::NotFound { message }
            }
            Err((_, message)) => AdminReply::Invalid { message },
        }
    }

    /// Everyone online, for the admin API: those here with their wire, address and join time;
    /// those of other nodes (cluster mode) with their node.
    fn online_users(&self) -> Vec<OnlineUser> {
        let node = self.cluster.as_ref().map(|c| c.node.clone());
        let wall = |t: Timestamp| {
            let ms = u64::try_from(t.as_duration().as_millis()).unwrap_or(u64::MAX);
            self.config.wall_clock.saturating_add(ms)
        };
        let mut users: Vec<(String, OnlineUser)> = self
            .names
            .iter()
            .filter_map(|(key, id)| {
                let c = self.conns.get(id)?;
                let user = OnlineUser {
                    name: c.name.clone()?,
                    wire: Some(match c.wire {
                        Wire::Line => "line".into(),
                        Wire::Json => "json".into(),
                    }),
                    node: node.clone(),
                    address: c.peer,
                    since: Some(wall(c.joined)),
                    operator: c.operator,
                };
                Some((key.clone(), user))
            })
            .collect();
        if let Some(cluster) = &self.cluster {
            let mine = &cluster.node;
            for (key, m) in cluster.remote.iter().filter(|(_, m)| &m.node != mine) {
                let user = OnlineUser {
                    name: m.name.clone(),
                    wire: None,
                    node: Some(m.node.clone()),
                    address: None,
                    since: None,
                    operator: cluster.remote_ops.contains(key),
                };
                users.push((key.clone(), user));
            }
        }
        users.sort_by(|a, b| a.0.cmp(&b.0));
        users.into_iter().map(|(_, u)| u).collect()
    }
}
