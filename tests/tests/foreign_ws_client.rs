//! A WebSocket client the project did not write (Python's `websockets` library, through
//! `tests/scripts/ws_client.py`) chats with a real `nc` user through the real server.

use std::path::Path;
use std::process::Command;

use chat_tests::{LineProcess, Server, bounded, python_with_websockets, require};
use serde_json::{Value, json};

/// The Python client: JSON requests in on stdin, JSON events out on stdout, one per line.
struct PyClient(LineProcess);

impl PyClient {
    fn connect(python: &str, url: &str) -> PyClient {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ws_client.py");
        PyClient(LineProcess::spawn(
            "python websockets client",
            Command::new(python).arg("-u").arg(script).arg(url),
        ))
    }

    fn send(&mut self, request: Value) {
        self.0.type_line(&request.to_string());
    }

    /// The next event of type `ty` (events of other types before it are skipped).
    async fn event(&mut self, ty: &str) -> Value {
        let line = self
            .0
            .line_where(&format!("with an event of type {ty:?}"), |l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| v["type"] == ty)
            })
            .await;
        serde_json::from_str(&line).expect("JSON")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_chats_with_an_nc_user() {
    let test = "python_websockets_client_chats_with_an_nc_user";
    let python = require!(python_with_websockets(test));
    bounded(test, async {
        let server = Server::start(&["--flood", "off"]).await;
        let (mut carol, _) = server.nc_join("carol").await;

        let mut py = PyClient::connect(&python, &server.ws_url());
        py.0.expect("#open\n").await;
        assert_eq!(py.event("prompt").await, json!({"type": "prompt"}));
        py.send(json!({"type": "join", "name": "snake"}));
        let welcome = py.event("welcome").await;
        assert_eq!(welcome["name"], "snake", "{welcome}");
        assert_eq!(welcome["online"], json!(["carol", "snake"]), "{welcome}");
        assert_eq!(welcome["count"], 2, "{welcome}");
        assert!(welcome["epoch"].is_u64(), "{welcome}");
        carol.expect("*** snake has joined the chat ***\n").await;

        // WebSocket to nc: a public message, echoed back to its sender with its seq.
        py.send(json!({"type": "say", "text": "hello from python"}));
        carol.expect("snake: hello from python\n").await;
        let echo = py.event("message").await;
        assert_eq!(echo["from"], "snake", "{echo}");
        assert_eq!(echo["text"], "hello from python", "{echo}");
        let first_seq = echo["seq"].as_u64().expect("a seq");

        // nc to WebSocket.
        carol.type_line("hi snake, from nc");
        let message = py.event("message").await;
        assert_eq!(
            message,
            json!({"type": "message", "seq": first_seq + 1, "from": "carol", "text": "hi snake, from nc"})
        );

        // Private messages both ways.
        py.send(json!({"type": "msg", "to": "carol", "text": "psst"}));
        carol.expect("[private] snake: psst\n").await;
        assert_eq!(
            py.event("private_sent").await,
            json!({"type": "private_sent", "to": "carol", "text": "psst"})
        );
        carol.type_line("/msg SNAKE secret");
        carol.expect("[private to snake] secret\n").await;
        assert_eq!(
            py.event("private").await,
            json!({"type": "private", "from": "carol", "text": "secret"})
        );

        // Errors come back as JSON, and the connection stays.
        py.send(json!({"type": "msg", "to": "nobody", "text": "hi"}));
        let error = py.event("error").await;
        assert_eq!(error["code"], "no_such_user", "{error}");
        assert_eq!(error["message"], "No user named 'nobody'.", "{error}");
        py.0.type_line("this is not JSON");
        assert_eq!(py.event("error").await["code"], "bad_request");

        py.send(json!({"type": "who"}));
        assert_eq!(
            py.event("who").await,
            json!({"type": "who", "online": ["carol", "snake"]})
        );

        // Leaving: goodbye, the server closes, nc sees the leave.
        py.send(json!({"type": "quit"}));
        assert_eq!(py.event("goodbye").await, json!({"type": "goodbye"}));
        let (rest, status) = py.0.finished().await;
        assert!(rest.starts_with("#closed"), "{rest:?}");
        assert!(status.success(), "{status}");
        carol.expect("*** snake has left the chat ***\n").await;
    })
    .await;
}
