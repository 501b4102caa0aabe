//! Operators and moderation through the real `chat-server` binary and real `nc` users, a room
//! alone: `--op-token-file` and what it refuses, `/op` and its bound, `/who`'s `@`, the
//! commands unknown without it, the bans and mutes stored beside `--log` across a SIGTERM and
//! a start, their ends, and the admin API over a plain TCP connection.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_tests::{Nc, Peer, Server, TempDir};

const SECRET: &str = "0123456789abcdef-op-secret";

/// A file holding `SECRET`, readable by its owner only.
fn token_file(dir: &TempDir) -> PathBuf {
    let path = dir.join("op-token");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    set_mode(&path, 0o600);
    path
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An nc user who has joined as `name`.
async fn joined(server: &Server, name: &str) -> Nc {
    let (nc, welcome) = server.nc_join(name).await;
    assert!(
        welcome.starts_with(&format!("Welcome, {name}!")),
        "{welcome}"
    );
    nc
}

/// An nc user who has joined as `name` and typed `/op SECRET`.
async fn operator(server: &Server, name: &str) -> Nc {
    let mut nc = joined(server, name).await;
    nc.type_line(&format!("/op {SECRET}"));
    nc.expect("You are now an operator.\n").await;
    nc
}

/// What is left for `nc` until the server closes its connection. (nc's input is closed
/// first: with it open, nc would stay after the server closed; without it, it waits for the
/// server's close.)
async fn closed(nc: &mut Nc) -> String {
    nc.close_stdin();
    nc.finished().await.0
}

/// An nc user who types `name` at the prompt and is turned away: what it is told, whole.
async fn turned_away(server: &Server, name: &str) -> String {
    let mut nc = Nc::connect(server.tcp, name);
    nc.type_line(name);
    closed(&mut nc).await
}

/// One HTTP request over a plain TCP connection; the whole answer.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut peer = Peer::connect(addr);
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    peer.stream.write_all(request.as_bytes()).unwrap();
    peer.read_to_end()
}

#[tokio::test]
async fn op_answers_the_token_bounds_the_tries_and_who_marks_operators() {
    let dir = TempDir::new("op-tries");
    let token = token_file(&dir);
    let server = Server::start(&["--op-token-file", token.to_str().unwrap()]).await;
    // The first try of the address (loopback counts too): the right one.
    let mut alice = operator(&server, "alice").await;
    let mut bob = joined(&server, "bob").await;
    alice.expect("*** bob has joined the chat ***\n").await;
    bob.type_line("/kick alice");
    bob.expect("You are not an operator.\n").await;
    for _ in 0..4 {
        bob.type_line("/op not-the-secret");
        bob.expect("Wrong operator token.\n").await;
    }
    // The sixth try of this address within the minute: refused before it is compared.
    bob.type_line(&format!("/op {SECRET}"));
    bob.expect("Too many tries; wait a minute.\n").await;
    bob.type_line("/who");
    bob.expect("Online (2): @alice, bob\n").await;
    // Only operators hear of the operators' commands.
    alice.type_line("/help");
    let help = alice.expect("/bans").await;
    assert!(help.contains("/kick NAME [REASON]"), "{help}");
    bob.type_line("/help");
    let help = bob.expect("/quit").await;
    bob.type_line("/who");
    let rest = bob.expect("Online (2): @alice, bob\n").await;
    assert!(
        !help.contains("/kick") && !rest.contains("/kick"),
        "{help}{rest}"
    );
}

#[tokio::test]
async fn without_an_op_token_file_the_operators_commands_are_unknown() {
    let server = Server::start(&[]).await;
    let mut alice = joined(&server, "alice").await;
    let _bob = joined(&server, "bob").await;
    alice.expect("*** bob has joined the chat ***\n").await;
    for typed in [
        "/kick bob",
        "/op 0123456789abcdef-op-secret",
        "/ban bob 5",
        "/bans",
    ] {
        alice.type_line(typed);
        let line = alice.line().await;
        assert!(line.starts_with("Unknown command"), "{typed}: {line}");
    }
    // And the admin API is not there.
    let answer = http(server.http, "GET", "/admin/online", "");
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
}

#[tokio::test]
async fn bans_and_mutes_survive_a_restart_beside_the_log() {
    let dir = TempDir::new("bans-restart");
    let token = token_file(&dir);
    let log = dir.join("chat.jsonl");
    let bans = dir.join("chat.jsonl.bans.json");
    let mut server = Server::command()
        .args([
            "--op-token-file",
            token.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ])
        .keep_stderr()
        .start()
        .await;
    let mut alice = operator(&server, "alice").await;
    let mut bob = joined(&server, "bob").await;
    let mut carol = joined(&server, "carol").await;
    alice.expect("*** carol has joined the chat ***\n").await;
    alice.type_line("/ban bob 5 spam");
    alice.expect("bob is banned for 5 minutes.\n").await;
    bob.expect("*** You were banned by alice: spam ***\n").await;
    assert_eq!(closed(&mut bob).await, "");
    carol
        .expect("*** bob was banned by alice: spam ***\n")
        .await;
    alice.type_line("/mute carol");
    alice.expect("carol is muted for 60 minutes.\n").await;
    carol.expect("*** You were muted by alice ***\n").await;

    let stderr = server.stop().await;
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bans).expect("the bans file")).unwrap();
    let stored = stored.as_array().expect("a JSON array");
    assert_eq!(stored.len(), 2, "{stored:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bans).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the file holds addresses: {mode:o}");

    server.start_again().await;
    assert_eq!(
        turned_away(&server, "bob").await,
        "Enter your name: You are banned from this room for 5 more minutes.\n"
    );
    let mut carol = joined(&server, "carol").await;
    carol.type_line("still here?");
    carol.expect("You are muted.\n").await;
    let mut alice = operator(&server, "alice").await;
    alice.type_line("/bans");
    alice
        .expect(
            "Bans and mutes in force (2):\n  ban bob by alice, 5 more minutes: spam\n  \
             mute carol by alice, 60 more minutes\n",
        )
        .await;
    // The history read back at start skipped none of the moderation records as malformed.
    let stderr = server.stop().await;
    assert!(!stderr.contains("not a record"), "{stderr}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "moderation")
        .collect();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["operator", "sanction", "sanction", "operator"],
        "{records:?}"
    );
}

#[tokio::test]
async fn a_stored_ban_already_over_is_not_restored_and_one_ending_soon_ends_on_time() {
    let dir = TempDir::new("bans-expiry");
    let log = dir.join("chat.jsonl");
    let bans = dir.join("chat.jsonl.bans.json");
    let now = unix_ms();
    let soon = Duration::from_secs(3);
    let stored = serde_json::json!([
        {"kind": "ban", "name": "old", "until": now - 1000, "by": "alice"},
        {"kind": "ban", "name": "soon", "until": now + soon.as_millis() as u64, "by": "alice",
         "reason": "cool off"},
        {"kind": "mute", "name": "hush", "until": now + soon.as_millis() as u64, "by": "alice"},
    ]);
    std::fs::write(&bans, stored.to_string()).unwrap();
    let server = Server::start(&["--log", log.to_str().unwrap()]).await;
    let _old = joined(&server, "old").await;
    assert_eq!(
        turned_away(&server, "soon").await,
        "Enter your name: You are banned from this room for 1 more minutes.\n"
    );
    let mut hush = joined(&server, "hush").await;
    hush.type_line("hello?");
    hush.expect("You are muted.\n").await;
    // Once over, the ban and the mute end without anyone lifting them, and the file is
    // written again without them.
    let started = Instant::now();
    tokio::time::sleep(soon + Duration::from_millis(300)).await;
    let mut soon = joined(&server, "soon").await;
    hush.type_line("hello everyone");
    soon.expect("hush: hello everyone\n").await;
    let deadline = started + Duration::from_secs(15);
    loop {
        let now: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&bans).unwrap()).unwrap();
        if now == serde_json::json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "still stored: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_bans_file_that_is_not_a_list_stops_the_start_naming_it() {
    let dir = TempDir::new("bans-corrupt");
    let log = dir.join("chat.jsonl");
    let bans = dir.join("chat.jsonl.bans.json");
    std::fs::write(&bans, "[{\"kind\":\"ban\",\"name\":\"bob\"").unwrap();
    let out = Server::command()
        .args(["--log", log.to_str().unwrap()])
        .output()
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: the bans and mutes in {} are not a JSON array of sanctions",
            bans.display()
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn an_op_token_file_missing_or_too_short_stops_the_start_and_one_others_read_is_a_warning() {
    let dir = TempDir::new("op-token-file");
    let missing = dir.join("missing");
    let short = dir.join("short");
    std::fs::write(&short, "hunter2\n").unwrap();
    set_mode(&short, 0o600);
    for (path, why) in [
        (&missing, "cannot open it"),
        (
            &short,
            "the secret in its first line is 7 bytes; it must be 16 to 1024",
        ),
    ] {
        let out = Server::command()
            .args(["--op-token-file", path.to_str().unwrap()])
            .output()
            .await;
        assert!(!out.status.success(), "{path:?} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!("error: --op-token-file {}: {why}", path.display());
        assert!(err.contains(&want), "{want} in {err}");
    }
    // Readable by others: taken, with a warning; from the environment variable too.
    let token = token_file(&dir);
    set_mode(&token, 0o644);
    let mut server = Server::command()
        .env("CHAT_OP_TOKEN_FILE", token.to_str().unwrap())
        .keep_stderr()
        .start()
        .await;
    let _alice = operator(&server, "alice").await;
    let answer = http(server.http, "GET", "/admin/online", "");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"name\":\"alice\""), "{answer}");
    let stderr = server.stop().await;
    assert!(
        stderr.contains("WARN") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_ban_through_the_admin_api_turns_the_nc_user_away() {
    let dir = TempDir::new("api-ban");
    let token = token_file(&dir);
    let server = Server::start(&["--op-token-file", token.to_str().unwrap()]).await;
    let mut bob = joined(&server, "bob").await;
    let mut carol = joined(&server, "carol").await;
    bob.expect("*** carol has joined the chat ***\n").await;
    let answer = http(
        server.http,
        "POST",
        "/admin/ban",
        r#"{"name":"bob","reason":"flooding"}"#,
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n{\"ok\":true}\n"), "{answer}");
    bob.expect("*** You were banned by admin: flooding ***\n")
        .await;
    assert_eq!(closed(&mut bob).await, "", "closed after the line");
    carol
        .expect("*** bob was banned by admin: flooding ***\n")
        .await;
    assert_eq!(
        turned_away(&server, "bob").await,
        "Enter your name: You are banned from this room for 60 more minutes.\n"
    );
    let answer = http(
        server.http,
        "POST",
        "/admin/notice",
        r#"{"text":"be nice"}"#,
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    carol.expect("*** Notice: be nice ***\n").await;
}
