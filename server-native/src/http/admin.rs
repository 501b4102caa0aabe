//! The admin API under `/admin/` (with `--op-token-file`): for scripts and dashboards, the
//! operator's commands over HTTP, with the operator secret as a bearer token. JSON in and out;
//! `docs/admin.md` is its reference.
//!
//! This file only checks and carries: the route and method, that the request comes from no
//! page of another site, the token (in constant time, failed tries bounded per address as
//! `/op`'s are), and the body (at most [`MAX_BODY`], within `--handshake-timeout`) read into a
//! `chat_core::moderation::AdminRequest`. The room decides the rest (`Room::handle_admin`) and
//! its answer becomes the status: `done` 200, `not_found` 404, `invalid` 400.

use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use chat_core::admission::AddrKey;
use chat_core::moderation::{
    AdminReply, AdminRequest, OP_WINDOW, OnlineUser, Sanction, TryKey, WrongTokens, token_matches,
};
use hyper::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, HOST, HeaderValue, ORIGIN, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::headers::text;
use super::response::{self, Body};
use crate::clock::Clock;
use crate::room_task::RoomInput;

/// The largest request body taken; a larger one gets `413`.
pub const MAX_BODY: usize = 16 * 1024;
/// The content type of every answer.
const JSON: &str = "application/json";
/// What a refused try's answers say, as `/op` does.
const TOO_MANY_TRIES: &str = "Too many tries; wait a minute.";

/// What an admin route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Online,
    Bans,
    Kick,
    Ban,
    Unban,
    Mute,
    Unmute,
    Notice,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/admin/online" => Route::Online,
            "/admin/bans" => Route::Bans,
            "/admin/kick" => Route::Kick,
            "/admin/ban" => Route::Ban,
            "/admin/unban" => Route::Unban,
            "/admin/mute" => Route::Mute,
            "/admin/unmute" => Route::Unmute,
            "/admin/notice" => Route::Notice,
            _ => return None,
        })
    }

    /// The one method it takes.
    fn method(self) -> Method {
        match self {
            Route::Online | Route::Bans => Method::GET,
            _ => Method::POST,
        }
    }

    /// The request's `type`, as `AdminRequest` names it, and the fields its body may hold.
    fn request(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Route::Online => ("online", &[]),
            Route::Bans => ("sanctions", &[]),
            Route::Kick => ("kick", &["name", "reason", "by"]),
            Route::Ban => ("ban", &["name", "minutes", "reason", "by"]),
            Route::Unban => ("unban", &["name", "by"]),
            Route::Mute => ("mute", &["name", "minutes", "by"]),
            Route::Unmute => ("unmute", &["name", "by"]),
            Route::Notice => ("notice", &["text", "by"]),
        }
    }
}

/// The admin API of one server: the secret, the room to carry requests to, and the failed
/// tries of each address.
pub struct Admin {
    secret: String,
    room: mpsc::Sender<RoomInput>,
    clock: Clock,
    /// How long a request's body may take to come whole (`--handshake-timeout`).
    body_timeout: Duration,
    tries: Mutex<WrongTokens>,
}

/// What a request gets past the checks: its status, and its body as JSON text.
struct Answer(StatusCode, String);

impl Answer {
    /// `value` as the body, its fields in the order they are declared.
    fn of(status: StatusCode, value: &impl Serialize) -> Answer {
        Answer(
            status,
            serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
        )
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    Answer::of(status, &json!({ "error": message.into() }))
}

/// `GET /admin/online`'s body.
#[derive(Serialize)]
struct Online {
    users: Vec<OnlineUser>,
}

/// `GET /admin/bans`'s body.
#[derive(Serialize)]
struct Bans {
    sanctions: Vec<Sanction>,
}

impl Admin {
    pub fn new(
        secret: String,
        room: mpsc::Sender<RoomInput>,
        clock: Clock,
        body_timeout: Duration,
    ) -> Admin {
        Admin {
            secret,
            room,
            clock,
            body_timeout,
            tries: Mutex::new(WrongTokens::default()),
        }
    }

    /// Whether `path` is the admin API's (every other path is the site's).
    pub fn owns(path: &str) -> bool {
        path == "/admin" || path.starts_with("/admin/")
    }

    /// Answers one request for a path under `/admin/` from `client`, whose `Host` has been
    /// found to be one of the server's names; `https`: the server's own page is `https://`.
    pub async fn answer<B>(
        &self,
        head: &Parts,
        body: B,
        client: IpAddr,
        https: bool,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let Some(route) = Route::of(head.uri.path()) else {
            return reply(error(
                StatusCode::NOT_FOUND,
                "No such admin route; see docs/admin.md.",
            ));
        };
        if head.method != route.method() {
            let method = route.method();
            let answer = error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} takes {method} only.", head.uri.path()),
            );
            let mut response = reply(answer);
            if let Ok(allow) = HeaderValue::from_str(method.as_str()) {
                response.headers_mut().insert(ALLOW, allow);
            }
            return response;
        }
        if let Err(refused) = from_own_page(head, https) {
            tracing::info!(origin = ?text(&head.headers, ORIGIN), "admin API: a request from a \
                page of another site, refused");
            return reply(refused);
        }
        if let Some(refused) = self.refusal(head, client) {
            return refused;
        }
        let request = match route.method() {
            Method::GET => None,
            _ => Some(self.read(head, body).await),
        };
        let request = match request {
            None => parse(route, b"{}"),
            Some(Ok(bytes)) => parse(route, &bytes),
            Some(Err(answer)) => Err(answer),
        };
        let answer = match request {
            Ok(request) => self.ask(request).await,
            Err(answer) => answer,
        };
        reply(answer)
    }

    /// The refusal of a request without the secret as its bearer token: `401` (none, or a
    /// wrong one: counted against the address), `429` past the tries. `None`: it has it.
    fn refusal(&self, head: &Parts, client: IpAddr) -> Option<Response<Body>> {
        let key = TryKey::Addr(AddrKey::of(client));
        let now = self.clock.now();
        let mut tries = self.tries.lock().unwrap_or_else(PoisonError::into_inner);
        if tries.held_off(key, now) {
            return Some(too_many());
        }
        // No bearer token at all (no header, another scheme, nothing after `Bearer`) is not
        // a guess, and is not counted.
        let token = head
            .headers
            .get(AUTHORIZATION)
            .and_then(|given| std::str::from_utf8(given.as_bytes()).ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Some(unauthorized(
                "This needs the header Authorization: Bearer SECRET, with the secret of \
                 --op-token-file.",
                None,
            ));
        };
        if token_matches(&self.secret, token) {
            return None;
        }
        if !tries.failed(key, now) {
            tracing::warn!(%client, "admin API: too many wrong tokens; held off for a minute");
            return Some(too_many());
        }
        tracing::warn!(%client, "admin API: a wrong token");
        Some(unauthorized(
            "Wrong token: the bearer token must be the secret of --op-token-file.",
            Some("invalid_token"),
        ))
    }

    /// The body, whole: at most [`MAX_BODY`] bytes, within the body timeout.
    async fn read<B>(&self, head: &Parts, body: B) -> Result<Vec<u8>, Answer>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The body must be at most {MAX_BODY} bytes."),
            )
        };
        let announced =
            text(&head.headers, CONTENT_LENGTH).and_then(|n| n.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let read = async {
            let mut body = pin!(body);
            let mut data = Vec::new();
            while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                let frame = frame.map_err(|err| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("The body could not be read: {err}."),
                    )
                })?;
                if let Ok(chunk) = frame.into_data() {
                    if data.len() + chunk.len() > MAX_BODY {
                        return Err(too_large());
                    }
                    data.extend_from_slice(&chunk);
                }
            }
            Ok(data)
        };
        tokio::time::timeout(self.body_timeout, read)
            .await
            .unwrap_or_else(|_| {
                Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "The body did not come whole in time.",
                ))
            })
    }

    /// Carries `request` to the room and turns its answer into a status and body.
    async fn ask(&self, request: AdminRequest) -> Answer {
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is shutting down.",
            )
        };
        if self
            .room
            .send(RoomInput::Admin { request, reply })
            .await
            .is_err()
        {
            return stopped();
        }
        let Ok(answer) = answer.await else {
            return stopped();
        };
        match answer {
            AdminReply::Online { users } => Answer::of(StatusCode::OK, &Online { users }),
            AdminReply::Sanctions { sanctions } => Answer::of(StatusCode::OK, &Bans { sanctions }),
            AdminReply::Done => Answer::of(StatusCode::OK, &json!({ "ok": true })),
            AdminReply::NotFound { message } => error(StatusCode::NOT_FOUND, message),
            AdminReply::Invalid { message } => error(StatusCode::BAD_REQUEST, message),
        }
    }
}

/// The request `route` stands for, with the fields of `body`, one JSON object holding only
/// the route's fields; otherwise a `400` that says what is wrong.
fn parse(route: Route, body: &[u8]) -> Result<AdminRequest, Answer> {
    let (kind, fields) = route.request();
    let bad = |why: String| error(StatusCode::BAD_REQUEST, why);
    let takes = || {
        let names: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
        format!("this route takes {}", names.join(", "))
    };
    let mut object: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(bad(format!(
                "The body must be one JSON object: {}.",
                takes()
            )));
        }
        Err(err) => return Err(bad(format!("The body is not JSON: {err}."))),
    };
    if let Some(unknown) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(bad(format!("Unknown field \"{unknown}\": {}.", takes())));
    }
    object.insert("type".into(), Value::String(kind.into()));
    serde_json::from_value(Value::Object(object))
        .map_err(|err| bad(format!("The body does not fit: {err}; {}.", takes())))
}

/// `Ok` unless the request comes from a browser page (it sends `Origin`) of another site than
/// the server's own: such a page must not drive the API, whatever it holds. (A bearer token
/// already needs a CORS preflight, which this server never allows.)
fn from_own_page(head: &Parts, https: bool) -> Result<(), Answer> {
    let Some(origin) = head.headers.get(ORIGIN) else {
        return Ok(());
    };
    let scheme = if https { "https" } else { "http" };
    let own = text(&head.headers, HOST).map(|host| format!("{scheme}://{}", host.trim()));
    let origin = origin.to_str().unwrap_or_default().trim();
    if own.is_some_and(|own| own.eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    Err(error(
        StatusCode::FORBIDDEN,
        "The admin API does not answer pages of other sites.",
    ))
}

fn unauthorized(message: &str, error_code: Option<&str>) -> Response<Body> {
    let mut response = reply(error(StatusCode::UNAUTHORIZED, message));
    let challenge = match error_code {
        None => "Bearer realm=\"chat-server\"".to_owned(),
        Some(code) => format!("Bearer realm=\"chat-server\", error=\"{code}\""),
    };
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    response
}

fn too_many() -> Response<Body> {
    let mut response = reply(error(StatusCode::TOO_MANY_REQUESTS, TOO_MANY_TRIES));
    let wait = OP_WINDOW.as_secs();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(wait));
    response
}

/// The answer as JSON (one line), never cached.
fn reply(Answer(status, mut text): Answer) -> Response<Body> {
    text.push('\n');
    let mut response = response::with_body(status, JSON, Body::Text(Some(text.into())));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(route: &str, body: &str) -> Result<AdminRequest, (u16, String)> {
        let route = Route::of(route).expect("a route");
        parse(route, body.as_bytes()).map_err(|Answer(status, text)| {
            let value: Value = serde_json::from_str(&text).unwrap();
            (status.as_u16(), value["error"].as_str().unwrap().to_owned())
        })
    }

    #[test]
    fn a_body_becomes_the_request_of_its_route() {
        assert_eq!(
            parsed(
                "/admin/ban",
                r#"{"name":"bob","minutes":5,"reason":"spam"}"#
            ),
            Ok(AdminRequest::Ban {
                name: "bob".into(),
                minutes: Some(5),
                reason: Some("spam".into()),
                by: None,
            })
        );
        assert_eq!(
            parsed("/admin/notice", r#"{"text":"hello","by":"host"}"#),
            Ok(AdminRequest::Notice {
                text: "hello".into(),
                by: Some("host".into()),
            })
        );
        assert_eq!(parsed("/admin/online", "{}"), Ok(AdminRequest::Online));
        assert_eq!(parsed("/admin/bans", "{}"), Ok(AdminRequest::Sanctions));
    }

    #[test]
    fn a_body_that_does_not_fit_its_route_is_refused_saying_why() {
        for (route, body, why) in [
            ("/admin/kick", "", "not JSON"),
            ("/admin/kick", "{\"name\":", "not JSON"),
            ("/admin/kick", "[\"bob\"]", "one JSON object"),
            ("/admin/kick", "{}", "missing field `name`"),
            (
                "/admin/ban",
                r#"{"name":"bob","minuts":5}"#,
                "Unknown field \"minuts\"",
            ),
            (
                "/admin/ban",
                r#"{"name":"bob","type":"kick"}"#,
                "Unknown field \"type\"",
            ),
            (
                "/admin/ban",
                r#"{"name":"bob","minutes":-1}"#,
                "invalid value",
            ),
            (
                "/admin/ban",
                r#"{"name":"bob","minutes":"5"}"#,
                "invalid type",
            ),
            (
                "/admin/mute",
                r#"{"name":"bob","reason":"x"}"#,
                "Unknown field \"reason\"",
            ),
        ] {
            let (status, message) = parsed(route, body).unwrap_err();
            assert_eq!(status, 400, "{route} {body}");
            assert!(message.contains(why), "{route} {body}: {message}");
        }
        let (_, message) = parsed("/admin/unban", "{\"who\":\"bob\"}").unwrap_err();
        assert!(
            message.ends_with("this route takes \"name\", \"by\"."),
            "{message}"
        );
    }

    #[test]
    fn a_page_of_another_site_is_refused_and_a_script_or_the_own_page_is_not() {
        let head = |origin: Option<&str>| {
            let mut request = hyper::Request::builder()
                .method("POST")
                .uri("/admin/kick")
                .header("host", "chat.example:8080");
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            request.body(()).unwrap().into_parts().0
        };
        assert!(from_own_page(&head(None), false).is_ok());
        assert!(from_own_page(&head(Some("http://chat.example:8080")), false).is_ok());
        assert!(from_own_page(&head(Some("http://chat.example:8080")), true).is_err());
        assert!(from_own_page(&head(Some("https://chat.example:8080")), true).is_ok());
        for other in ["http://evil.example", "null", "http://chat.example"] {
            let Err(Answer(status, _)) = from_own_page(&head(Some(other)), false) else {
                panic!("{other} was let through");
            };
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }

    /// `docs/admin.md` stays true: each curl example's body is a request of its route, each
    /// JSON example parses, and every moderation record shown is one the log writes.
    #[test]
    fn the_examples_of_the_admin_doc_are_requests_and_answers_of_this_api() {
        let doc = include_str!("../../../docs/admin.md");
        let mut routes = std::collections::BTreeSet::new();
        for line in doc.lines().filter(|l| l.starts_with("curl ")) {
            let path = line.rsplit(' ').next().unwrap();
            let path = &path[path.find("/admin/").expect(line)..];
            let route = Route::of(path).unwrap_or_else(|| panic!("no route {path}"));
            let body = match line.split_once(" -d '") {
                Some((_, rest)) => rest.split_once('\'').expect(line).0,
                None => "{}",
            };
            assert_eq!(
                line.contains(" -d '"),
                route.method() == Method::POST,
                "{line}"
            );
            if let Err(Answer(_, why)) = parse(route, body.as_bytes()) {
                panic!("{line}: {why}");
            }
            routes.insert(path);
        }
        assert_eq!(routes.len(), 8, "an example of every route: {routes:?}");
        let mut in_json = false;
        for line in doc.lines() {
            match line {
                "```json" => in_json = true,
                "```" => in_json = false,
                example if in_json => {
                    let value: Value = serde_json::from_str(example).expect(example);
                    // The lists, exactly as this file writes them.
                    let again = if let Some(users) = value.get("users") {
                        let users = serde_json::from_value(users.clone()).expect(example);
                        Some(Answer::of(StatusCode::OK, &Online { users }).1)
                    } else if let Some(sanctions) = value.get("sanctions") {
                        let sanctions = serde_json::from_value(sanctions.clone()).expect(example);
                        Some(Answer::of(StatusCode::OK, &Bans { sanctions }).1)
                    } else {
                        None
                    };
                    if let Some(again) = again {
                        assert_eq!(again, example);
                    }
                    if value["type"] == "moderation" || value["type"] == "op_refused" {
                        let record: chat_core::LogRecord =
                            serde_json::from_value(value).expect(example);
                        assert!(matches!(
                            record,
                            chat_core::LogRecord::Moderation { .. }
                                | chat_core::LogRecord::OpRefused { .. }
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}
