//! The blocking example server (`examples/blocking_server.rs`), driven over real loopback
//! sockets: the same core, a second runtime, the exact text of `docs/protocol.md`.

// The example's `main` is not called from here.
#[allow(dead_code)]
#[path = "../examples/blocking_server.rs"]
mod blocking_server;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use chat_core::Config;

/// The longest any single read may wait: a broken server fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves a room with `config` on a free loopback port, on a thread that lives as long as
/// the test process.
fn start(config: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    thread::spawn(move || blocking_server::serve(listener, config));
    addr
}

/// One nc-like user.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        let writer = stream.try_clone().expect("clone the client socket");
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Connects, answers the prompt with `name` and reads the two-line welcome.
    fn join(addr: SocketAddr, name: &str) -> Client {
        let mut client = Client::connect(addr);
        client.expect_prompt();
        client.send(name);
        let welcome = client.line();
        assert!(
            welcome.starts_with(&format!("Welcome, {name}! Online (")),
            "{welcome:?}"
        );
        client.expect("Type /help for the list of commands.");
        client
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send a line to the server");
    }

    /// The prompt has no newline: read exactly its bytes.
    fn expect_prompt(&mut self) {
        let mut prompt = [0; 17];
        self.reader
            .read_exact(&mut prompt)
            .expect("read the name prompt");
        assert_eq!(String::from_utf8_lossy(&prompt), "Enter your name: ");
    }

    /// The next line, without its newline.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("a line within the read timeout");
        assert!(n > 0, "connection closed while a line was expected");
        assert_eq!(
            line.pop(),
            Some('\n'),
            "a line ends with a newline: {line:?}"
        );
        line
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want);
    }

    /// Reads (and discards) whatever is left until the server closes the connection.
    fn expect_closed(&mut self) {
        let mut buf = [0; 64 * 1024];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(err) if err.kind() == ErrorKind::ConnectionReset => return,
                Err(err) => panic!("expected the server to close the connection: {err}"),
            }
        }
    }
}

#[test]
fn two_users_chat_privately_and_quit() {
    let addr = start(Config::default());
    let mut alice = Client::connect(addr);
    alice.expect_prompt();
    alice.send("alice");
    alice.expect("Welcome, alice! Online (1): alice");
    alice.expect("Type /help for the list of commands.");

    let mut bob = Client::connect(addr);
    bob.expect_prompt();
    bob.send("bob");
    bob.expect("Welcome, bob! Online (2): alice, bob");
    bob.expect("Type /help for the list of commands.");
    alice.expect("*** bob has joined the chat ***");

    bob.send("hello");
    alice.expect("bob: hello");

    // Bob's next line is this private message, not an echo of his own "hello".
    alice.send("/msg bob hi there");
    bob.expect("[private] alice: hi there");
    alice.expect("[private to bob] hi there");
    alice.send("/msg carol are you there?");
    alice.expect("No user named 'carol'.");

    bob.send("/quit");
    bob.expect("Goodbye!");
    bob.expect_closed();
    alice.expect("*** bob has left the chat ***");
    alice.send("/who");
    alice.expect("Online (1): alice");
}

#[test]
fn silent_clients_are_dropped_after_the_idle_timeout() {
    let addr = start(Config {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    });
    let started = Instant::now();
    let mut lurker = Client::connect(addr); // never even gives a name
    lurker.expect_prompt();
    let mut alice = Client::join(addr, "alice");
    let mut talker = Client::join(addr, "talker");
    alice.expect("*** talker has joined the chat ***");

    // The talker keeps sending lines, so only the silent ones go.
    let mut alice_left = None;
    while started.elapsed() < Duration::from_millis(1800) {
        talker.send("/who");
        let mut line = talker.line();
        if line == "*** alice has left the chat ***" {
            alice_left = Some(started.elapsed());
            line = talker.line();
        }
        assert!(line.starts_with("Online ("), "{line:?}");
        thread::sleep(Duration::from_millis(200));
    }
    let alice_left = alice_left.expect("the talker saw alice leave");
    assert!(alice_left >= Duration::from_millis(950), "{alice_left:?}");

    alice.expect("Disconnected: idle timeout.");
    alice.expect_closed();
    lurker.expect("Disconnected: idle timeout.");
    lurker.expect_closed();
    talker.send("/who");
    talker.expect("Online (1): talker");
}

#[test]
fn client_that_never_reads_is_dropped_without_slowing_others() {
    let addr = start(Config {
        flood: None,
        ..Config::default()
    });
    let mut slow = Client::join(addr, "slow"); // and from now on never reads
    let mut watcher = Client::join(addr, "watcher");
    let mut flooder = Client::join(addr, "flooder");
    watcher.expect("*** flooder has joined the chat ***");

    // Batches of big messages; the watcher must get each batch promptly, before and after
    // the slow client's unread output overflows its bound and it is dropped.
    let padding = "x".repeat(4000);
    let mut slow_left = false;
    let mut batches_after = 0;
    for batch in 0..1000 {
        let lines: Vec<String> = (0..16).map(|i| format!("{batch}.{i} {padding}")).collect();
        let sent = Instant::now();
        flooder
            .writer
            .write_all(format!("{}\n", lines.join("\n")).as_bytes())
            .expect("the flooder sends a batch");
        for want in &lines {
            let mut line = watcher.line();
            if line == "*** slow has left the chat ***" {
                slow_left = true;
                line = watcher.line();
            }
            assert!(
                line == format!("flooder: {want}"),
                "batch {batch}: wrong line"
            );
        }
        let took = sent.elapsed();
        assert!(took < Duration::from_secs(1), "batch {batch} took {took:?}");
        if slow_left {
            batches_after += 1;
            if batches_after == 10 {
                break;
            }
        }
    }
    assert!(slow_left, "the client that never reads was never dropped");
    assert_eq!(batches_after, 10);
    slow.expect_closed();
    flooder.expect("*** slow has left the chat ***");
}
