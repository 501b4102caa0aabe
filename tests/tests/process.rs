//! The real `chat-server` binary as a user runs it: its printed addresses, its flags and
//! environment variables, SIGTERM, and two real `nc` processes chatting through it.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

use chat_tests::{Nc, Peer, SCRIPT, Server, TempDir, require, script_installed};

#[tokio::test]
async fn port_zero_prints_the_addresses_and_sigterm_flushes_the_log_and_exits_0() {
    let dir = TempDir::new("sigterm");
    let log = dir.join("chat.jsonl");
    let log_arg = log.to_str().unwrap();
    let mut server = Server::command()
        .without_port_flags()
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--log",
            log_arg,
            "--flood",
            "off",
        ])
        .start()
        .await;
    let (tcp, http) = (server.tcp.to_string(), server.http.to_string());
    assert!(tcp.starts_with("127.0.0.1:") && !tcp.ends_with(":0"));
    assert!(http.starts_with("127.0.0.1:") && !http.ends_with(":0"));

    let mut ann = Peer::connect(server.tcp);
    ann.expect("Enter your name: ");
    ann.send("ann");
    ann.expect("Welcome, ann!");
    for i in 0..100 {
        ann.send(&format!("note {i}"));
    }
    ann.send("/msg ann done"); // Answered only after the 100 notes were taken in.
    ann.expect("[private to ann] done");

    server.signal("TERM");
    assert!(
        ann.read_to_end()
            .ends_with("*** Server is shutting down ***\n")
    );
    assert!(server.wait_exit().await.success());
    let content = std::fs::read_to_string(&log).unwrap();
    let texts: Vec<String> = content
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|r| r["type"] == "message")
        .map(|r| r["text"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("note {i}")).collect();
    assert_eq!(texts, want);
}

#[tokio::test]
async fn environment_variables_set_the_flags() {
    let server = Server::command()
        .without_port_flags()
        .envs(&[
            ("CHAT_TCP", "127.0.0.1:0"),
            ("CHAT_HTTP", "127.0.0.1:0"),
            ("CHAT_MAX_USERS", "1"),
            ("CHAT_MAX_LINE", "10"),
            ("CHAT_NAME_TIMEOUT", "1"),
        ])
        .start()
        .await;
    let mut first = Peer::connect(server.tcp);
    first.expect("Enter your name: ");
    let mut second = Peer::connect(server.tcp);
    assert!(second.read_to_end().contains("Server is full"));
    first.send("a_long_name_here");
    first.expect("Error: line too long");
    first.expect("Disconnected: no name given in time.");
}

/// One request to the HTTP listener; the whole response.
fn http_request(addr: SocketAddr, request: &str) -> String {
    let mut peer = Peer::connect(addr);
    peer.stream.write_all(request.as_bytes()).unwrap();
    peer.read_to_end()
}

#[tokio::test]
async fn the_web_root_allowed_origins_and_hosts_come_from_the_environment() {
    let root = TempDir::new("env-www");
    std::fs::write(root.join("index.html"), "<p>the web client</p>").unwrap();
    let server = Server::command()
        .envs(&[
            ("CHAT_WEB_ROOT", root.path().to_str().unwrap()),
            ("CHAT_ALLOW_ORIGIN", "https://a.example, https://b.example"),
            ("CHAT_ALLOW_HOST", "chat.example, other.example"),
        ])
        .start()
        .await;
    let page = http_request(server.http, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(page.ends_with("\r\n\r\n<p>the web client</p>"), "{page}");
    for host in ["chat.example", "other.example:8080", "a.example"] {
        let page = http_request(
            server.http,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{host}: {page}");
    }
    let refused = http_request(
        server.http,
        "GET / HTTP/1.1\r\nHost: c.example\r\nConnection: close\r\n\r\n",
    );
    assert!(
        refused.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{refused}"
    );
    let upgrade = |origin: &str| {
        http_request(
            server.http,
            &format!(
                "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Origin: {origin}\r\n\r\n"
            ),
        )
    };
    // An accepted handshake stays open: shut our side so the server closes too.
    let mut peer = Peer::connect(server.http);
    peer.stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Origin: https://b.example\r\n\r\n",
        )
        .unwrap();
    peer.expect("HTTP/1.1 101 Switching Protocols\r\n");
    assert!(upgrade("https://c.example").starts_with("HTTP/1.1 403 Forbidden\r\n"));
}

#[tokio::test]
async fn metrics_are_served_unless_chat_metrics_is_off() {
    let on = Server::start(&[]).await;
    let metrics = http_request(on.http, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(metrics.contains("\nchat_connections_accepted_total{listener=\"http\"} 1\n"));
    assert!(metrics.ends_with("\n# EOF\n"), "{metrics}");
    let off = Server::command().env("CHAT_METRICS", "off").start().await;
    let metrics = http_request(off.http, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        metrics.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{metrics}"
    );
    let health = http_request(off.http, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"));
}

#[tokio::test]
async fn help_documents_every_flag_with_its_environment_variable() {
    let out = Server::command()
        .without_port_flags()
        .args(["--help"])
        .output()
        .await;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, var) in [
        ("--tcp", "CHAT_TCP"),
        ("--http", "CHAT_HTTP"),
        ("--max-users", "CHAT_MAX_USERS"),
        ("--idle-timeout", "CHAT_IDLE_TIMEOUT"),
        ("--max-line", "CHAT_MAX_LINE"),
        ("--history", "CHAT_HISTORY"),
        ("--log", "CHAT_LOG"),
        ("--flood", "CHAT_FLOOD"),
        ("--max-queue", "CHAT_MAX_QUEUE"),
        ("--web-root", "CHAT_WEB_ROOT"),
        ("--allow-origin", "CHAT_ALLOW_ORIGIN"),
        ("--allow-host", "CHAT_ALLOW_HOST"),
        ("--ws-ping", "CHAT_WS_PING"),
        ("--max-conns-per-ip", "CHAT_MAX_CONNS_PER_IP"),
        ("--max-new-per-ip", "CHAT_MAX_NEW_PER_IP"),
        ("--max-joins-per-ip", "CHAT_MAX_JOINS_PER_IP"),
        ("--limit-loopback", "CHAT_LIMIT_LOOPBACK"),
        ("--handshake-timeout", "CHAT_HANDSHAKE_TIMEOUT"),
        ("--tls-cert", "CHAT_TLS_CERT"),
        ("--tls-key", "CHAT_TLS_KEY"),
        ("--name-timeout", "CHAT_NAME_TIMEOUT"),
        ("--announce-limit", "CHAT_ANNOUNCE_LIMIT"),
        ("--announce-interval", "CHAT_ANNOUNCE_INTERVAL"),
        ("--metrics", "CHAT_METRICS"),
        ("--trusted-proxy", "CHAT_TRUSTED_PROXY"),
        ("--op-token-file", "CHAT_OP_TOKEN_FILE"),
    ] {
        assert!(
            help.contains(flag) && help.contains(var),
            "{flag} {var} in\n{help}"
        );
    }
}

#[tokio::test]
async fn trusted_proxies_come_from_the_environment_and_a_bad_one_is_a_clear_error() {
    let server = Server::command()
        .env("CHAT_TRUSTED_PROXY", "10.0.0.0/8, 127.0.0.1")
        .start()
        .await;
    // From a trusted address the PROXY header comes first, and is required.
    let mut proxied = Peer::connect(server.tcp);
    proxied
        .stream
        .write_all(b"PROXY TCP4 203.0.113.1 127.0.0.1 4000 8888\r\nalice\n")
        .unwrap();
    proxied.expect("Enter your name: Welcome, alice!");
    let mut bare = Peer::connect(server.tcp);
    bare.send("bob");
    assert_eq!(
        bare.read_to_end(),
        "Error: connections from this address must begin with a PROXY protocol header (it is \
         a --trusted-proxy); closing.\n"
    );
    for (how, bad) in [
        ("CHAT_TRUSTED_PROXY", "10.0.0.5/8"),
        ("--trusted-proxy", "lb.example"),
    ] {
        let command = Server::command();
        let command = if how.starts_with("--") {
            command.args([how, bad])
        } else {
            command.env(how, bad)
        };
        let out = command.output().await;
        assert!(!out.status.success(), "{how}={bad} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--trusted-proxy <CIDR>"), "{how}={bad}: {err}");
        assert!(err.contains(bad), "{how}={bad}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[tokio::test]
async fn an_address_in_use_is_a_clear_error_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Server::command()
        .without_port_flags()
        .args(["--tcp", &addr, "--http", "127.0.0.1:0"])
        .output()
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} (--tcp)")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn two_real_nc_users_chat() {
    let server = Server::start(&[]).await;
    let mut alice = Nc::connect(server.tcp, "alice");
    alice.expect("Enter your name: ").await;
    alice.type_line("alice");
    alice
        .expect("Welcome, alice! Online (1): alice\nType /help for the list of commands.\n")
        .await;

    let mut bob = Nc::connect(server.tcp, "bob");
    bob.expect("Enter your name: ").await;
    bob.type_line("Alice");
    bob.expect("The name 'Alice' is already taken; choose another.\nEnter your name: ")
        .await;
    bob.type_line("bob");
    bob.expect("Welcome, bob! Online (2): alice, bob\n").await;
    alice.expect("*** bob has joined the chat ***\n").await;

    alice.type_line("hi bob, how are you?");
    bob.expect("alice: hi bob, how are you?\n").await;
    bob.type_line("/msg alice fine, thanks");
    alice.expect("[private] bob: fine, thanks\n").await;
    bob.expect("[private to alice] fine, thanks\n").await;
    bob.type_line("/help");
    let help = bob.expect("/quit").await;
    for command in ["/msg", "/who", "/help"] {
        assert!(help.contains(command), "{help}");
    }
    bob.type_line("/quit");
    bob.expect("Goodbye!\n").await;
    let left = alice.expect("*** bob has left the chat ***\n").await;
    assert!(
        !left.contains("Goodbye"),
        "only bob sees his goodbye: {left:?}"
    );

    // End of input from nc (Ctrl-D at a terminal) is a leave too.
    let mut carol = Nc::connect(server.tcp, "carol");
    carol.expect("Enter your name: ").await;
    carol.type_line("carol");
    alice.expect("*** carol has joined the chat ***\n").await;
    carol.close_stdin();
    let _ = Command::new("kill")
        .args(["-INT", &carol.pid().to_string()])
        .status();
    alice.expect("*** carol has left the chat ***\n").await;
}

#[tokio::test]
async fn the_per_address_limits_come_from_the_environment() {
    let server = Server::command()
        .without_port_flags()
        .envs(&[
            ("CHAT_TCP", "127.0.0.1:0"),
            ("CHAT_HTTP", "127.0.0.1:0"),
            ("CHAT_MAX_CONNS_PER_IP", "1"),
            ("CHAT_LIMIT_LOOPBACK", "true"),
        ])
        .start()
        .await;
    let mut first = Peer::connect(server.tcp);
    first.expect("Enter your name: ");
    let mut second = Peer::connect(server.tcp);
    assert_eq!(
        second.read_to_end(),
        "Too many connections from your address; try again in a minute.\n"
    );
    let page = http_request(server.http, "GET /healthz HTTP/1.1\r\n\r\n");
    assert!(
        page.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{page}"
    );

    // Loopback is exempt unless the variable says otherwise.
    let server = Server::command()
        .without_port_flags()
        .envs(&[
            ("CHAT_TCP", "127.0.0.1:0"),
            ("CHAT_HTTP", "127.0.0.1:0"),
            ("CHAT_MAX_CONNS_PER_IP", "1"),
            ("CHAT_LIMIT_LOOPBACK", "false"),
        ])
        .start()
        .await;
    let mut first = Peer::connect(server.tcp);
    first.expect("Enter your name: ");
    let mut second = Peer::connect(server.tcp);
    second.expect("Enter your name: ");
}

#[tokio::test]
async fn one_address_joining_and_quitting_in_a_loop_is_refused_past_ten_joins_a_minute() {
    let server = Server::start(&["--limit-loopback", "--flood", "off"]).await;
    let mut bob = Peer::join(server.tcp, "bob"); // the address's first join of ten
    bob.seen.clear();
    let mut refusals = Vec::new();
    let mut joined = 0;
    for i in 0..30 {
        let mut spam = Peer::connect(server.tcp);
        spam.expect("Enter your name: ");
        spam.send(&format!("spam{i}"));
        spam.expect("\n");
        if spam.seen.contains("Welcome, ") {
            joined += 1;
            spam.send("/quit");
            spam.expect("Goodbye!");
        } else {
            refusals.push(spam.seen.replace("Enter your name: ", ""));
        }
    }
    assert_eq!(joined, 9, "{refusals:?}");
    let want = "Too many joins from your address; try again in ";
    assert!(
        refusals
            .iter()
            .all(|r| r.starts_with(want) && r.ends_with(" seconds.\n")),
        "{refusals:?}"
    );
    // bob heard of nine visits, two lines each, and of nothing refused.
    bob.send("/msg bob done");
    bob.expect("[private to bob] done");
    let lines: Vec<&str> = bob.seen.lines().filter(|l| l.starts_with("*** ")).collect();
    assert_eq!(lines.len(), 18, "{lines:?}");
}

#[tokio::test]
async fn a_closed_standard_error_does_not_stop_a_graceful_shutdown() {
    // As under `chat-server 2>&1 | tee chat.log` when Ctrl-C has ended the tee first.
    let mut server = Server::command().log("info").close_stderr().start().await;
    let mut dave = Peer::connect(server.tcp);
    dave.expect("Enter your name: ");
    dave.send("dave");
    dave.expect("Welcome, dave!");

    server.signal("TERM");
    assert!(
        dave.read_to_end()
            .ends_with("*** Server is shutting down ***\n")
    );
    let status = server.wait_exit().await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn diagnostics_are_in_colour_on_a_terminal_only_and_never_with_no_color() {
    require!(script_installed(
        "diagnostics_are_in_colour_on_a_terminal_only_and_never_with_no_color"
    ));
    // Standard error to a pipe, as to a file or journald: plain text.
    let piped = Server::command()
        .log("info")
        .wrapped_in(&["timeout", "-s", "TERM", "1"])
        .output()
        .await;
    let text = String::from_utf8_lossy(&piped.stderr);
    assert!(text.contains("chat-server ready"), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in a pipe: {text:?}");

    // On a terminal (script(1) gives it one): in colour, unless NO_COLOR is set.
    let on_terminal = |no_color: Option<&str>| {
        let server = format!(
            "timeout -s TERM 1 {} --tcp 127.0.0.1:0 --http 127.0.0.1:0",
            chat_tests::server_binary().display()
        );
        let mut script = Command::new("timeout");
        // The outer timeout only guards the test against a terminal that never ends.
        script.args(["-k", "5", "20", SCRIPT, "-qec", &server, "/dev/null"]);
        script.env("RUST_LOG", "info").env_remove("NO_COLOR");
        if let Some(value) = no_color {
            script.env("NO_COLOR", value);
        }
        let out = script.output().expect("run script(1) from util-linux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("chat-server ready"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("chat-server ready"), "{plain:?}");
    assert!(
        !plain.contains('\x1b'),
        "colour despite NO_COLOR: {plain:?}"
    );
}
