//! A headless Chromium driven through its own chromedriver (WebDriver, with fantoccini): opening
//! the page, typing and clicking, waiting until the page shows something, screenshots, and
//! making sure no browser process outlives the test.

use std::collections::HashSet;
use std::net::TcpStream as StdTcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::child::{free_port, processes_mentioning, send_signal};
use crate::page::{PageState, READ_PAGE};
use crate::paths::screenshot_dir;
use crate::prerequisites::{CHROMEDRIVER, CHROMIUM};
use crate::scenario::WAIT;
use crate::temp::TempDir;

/// How often the page is looked at while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Where a failed wait leaves its screenshot: `target/e2e/failed-LABEL.png`.
fn failure_screenshot_path(label: &str) -> PathBuf {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    screenshot_dir().join(format!("failed-{name}.png"))
}

/// The environment variable that marks a browser's processes.
const PROCESS_MARK: &str = "CHAT_E2E_BROWSER";

/// A headless Chromium, driven through its own chromedriver. Dropping it ends the session,
/// kills chromedriver's process group and any Chromium process left with its profile.
pub struct Browser {
    label: String,
    client: Option<Client>,
    driver: Child,
    profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile. `label` names it in
    /// failure messages (say, `TEST alice`).
    pub async fn start(label: &str) -> Browser {
        Browser::start_with(label, false).await
    }

    /// Like [`Browser::start`], but the browser accepts any certificate (WebDriver's
    /// `acceptInsecureCerts`), such as the self-signed one of
    /// [`TestCert`](crate::temp::TestCert), for the page and its WebSocket alike.
    pub async fn start_accepting_any_certificate(label: &str) -> Browser {
        Browser::start_with(label, true).await
    }

    async fn start_with(label: &str, accept_insecure_certs: bool) -> Browser {
        let _ = std::fs::remove_file(failure_screenshot_path(label));
        let port = free_port();
        let profile = TempDir::new(&format!("chromium-{label}"));
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Inherited by every process of this browser, also those that leave the process
            // group (the crash handler), so that they can all be found and killed.
            .env(PROCESS_MARK, profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that it and the browser it starts die together.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let mut browser = Browser {
            label: label.to_owned(),
            client: None,
            driver,
            profile,
        };
        let deadline = Instant::now() + WAIT;
        while StdTcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited at once: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver does not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1100,800",
                    format!("--user-data-dir={}", browser.profile.path().display()),
                ],
            }),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        if accept_insecure_certs {
            caps.insert("acceptInsecureCerts".to_owned(), json!(true));
        }
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        let client = tokio::time::timeout(WAIT, builder.connect(&url))
            .await
            .unwrap_or_else(|_| panic!("{label}: no WebDriver session within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{label}: cannot start a WebDriver session: {e}"));
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// The address of the page shown (`location.href`).
    pub async fn location(&self) -> String {
        let v = tokio::time::timeout(WAIT, self.client().execute("return location.href", vec![]))
            .await
            .unwrap_or_else(|_| panic!("{}: the page did not answer in time", self.label))
            .unwrap_or_else(|e| panic!("{}: cannot read location.href: {e}", self.label));
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn open(&self, url: &str) {
        tokio::time::timeout(WAIT, self.client().goto(url))
            .await
            .unwrap_or_else(|_| panic!("{}: {url} did not load in time", self.label))
            .unwrap_or_else(|e| panic!("{}: open {url}: {e}", self.label));
    }

    /// Reads what the page shows.
    pub async fn state(&self) -> PageState {
        let v = tokio::time::timeout(WAIT, self.client().execute(READ_PAGE, vec![]))
            .await
            .unwrap_or_else(|_| panic!("{}: the page did not answer in time", self.label))
            .unwrap_or_else(|e| panic!("{}: cannot read the page: {e}", self.label));
        PageState::from_json(&v)
    }

    /// Runs `script`, the body of a function, in the page and returns what it returns.
    pub async fn evaluate(&self, script: &str) -> serde_json::Value {
        tokio::time::timeout(WAIT, self.client().execute(script, vec![]))
            .await
            .unwrap_or_else(|_| panic!("{}: the page did not answer in time", self.label))
            .unwrap_or_else(|e| panic!("{}: the script failed: {e}", self.label))
    }

    /// Polls the page until `pred` holds and returns what it showed then; panics after
    /// [`WAIT`] saying what it was waiting for and what the page showed.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&PageState) -> bool) -> PageState {
        self.wait_until_for(WAIT, what, pred).await
    }

    pub async fn wait_until_for(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&PageState) -> bool,
    ) -> PageState {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.state().await;
            if pred(&state) {
                return state;
            }
            if Instant::now() >= deadline {
                let shot = self.failure_screenshot().await;
                panic!(
                    "{}: waited {limit:?} for {what}; the page shows ({shot}):\n{state}",
                    self.label
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the page's WebSocket is open.
    pub async fn wait_open(&self) -> PageState {
        self.wait_until("#status[data-state=open]", |s| s.status_is("open"))
            .await
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!(
                "{}: no {css} ({e}); the page shows:\n{}",
                self.label,
                self.state().await
            ),
        }
    }

    /// Replaces the text of the input `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        let typed = async {
            input.clear().await?;
            input.send_keys(text).await
        };
        if let Err(e) = typed.await {
            panic!(
                "{}: cannot type {text:?} into {css}: {e}; the page shows:\n{}",
                self.label,
                self.state().await
            );
        }
    }

    pub async fn click(&self, css: &str) {
        if let Err(e) = self.find(css).await.click().await {
            panic!(
                "{}: cannot click {css}: {e}; the page shows:\n{}",
                self.label,
                self.state().await
            );
        }
    }

    /// Types `name` into `#name-input` and clicks `#join-button`.
    pub async fn submit_name(&self, name: &str) {
        self.fill("#name-input", name).await;
        self.click("#join-button").await;
    }

    /// Opens the page, waits for the connection, joins as `name` and waits until joined.
    pub async fn open_and_join(&self, url: &str, name: &str) -> PageState {
        self.open(url).await;
        self.wait_open().await;
        self.submit_name(name).await;
        self.wait_until(&format!("joined as {name}"), |s| {
            s.is_joined() && s.chat_hidden == Some(false)
        })
        .await
    }

    /// Types `text` into `#message-input` and presses Enter.
    pub async fn say(&self, text: &str) {
        let enter: char = fantoccini::key::Key::Enter.into();
        self.fill("#message-input", &format!("{text}{enter}")).await;
    }

    /// Clicks the user list's button for `name`.
    pub async fn click_user(&self, name: &str) {
        let buttons = self
            .client()
            .find_all(Locator::Css("#users button.user"))
            .await
            .unwrap_or_else(|e| panic!("{}: find #users button.user: {e}", self.label));
        for b in buttons {
            if b.text().await.is_ok_and(|t| t.trim() == name) {
                b.click()
                    .await
                    .unwrap_or_else(|e| panic!("{}: click {name}: {e}", self.label));
                return;
            }
        }
        panic!(
            "{}: no user button {name:?}; the page shows:\n{}",
            self.label,
            self.state().await
        );
    }

    /// Saves a screenshot as `target/e2e/NAME.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client()
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("{}: screenshot: {e}", self.label));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create target/e2e");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// A screenshot of a failure, `target/e2e/failed-LABEL.png`; says where it is.
    async fn failure_screenshot(&self) -> String {
        let path = failure_screenshot_path(&self.label);
        let taken = tokio::time::timeout(WAIT, self.client().screenshot()).await;
        match taken {
            Ok(Ok(png)) => match std::fs::create_dir_all(screenshot_dir())
                .and_then(|()| std::fs::write(&path, png))
            {
                Ok(()) => format!("screenshot {}", path.display()),
                Err(e) => format!("no screenshot: {e}"),
            },
            Ok(Err(e)) => format!("no screenshot: {e}"),
            Err(_) => "no screenshot: timed out".to_owned(),
        }
    }

    /// Ends the session, then makes sure no process of this browser is left.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        }
        let left = self.kill_everything();
        assert!(
            left.is_empty(),
            "{}: processes {left:?} of this browser outlived SIGKILL",
            self.label
        );
    }

    /// Kills chromedriver's process group and every process marked as this browser's;
    /// returns those still there after 5 s.
    fn kill_everything(&mut self) -> Vec<i32> {
        send_signal(-(self.driver.id() as i32), "-KILL");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Processes that left the group (the crash handler): found by their mark.
        let needle = self.profile.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut killed = HashSet::new();
        loop {
            let left = processes_mentioning(&needle);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            for &pid in &left {
                if killed.insert(pid) {
                    send_signal(pid, "-KILL");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the WebDriver session (which quits Chromium) on the test's runtime.
            if let Ok(handle) = tokio::runtime::Handle::try_current()
                && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            {
                tokio::task::block_in_place(|| {
                    handle.block_on(async {
                        let _ = tokio::time::timeout(Duration::from_secs(3), client.close()).await;
                    })
                });
            }
        }
        let left = self.kill_everything();
        if !left.is_empty() {
            eprintln!(
                "{}: processes {left:?} of this browser outlived SIGKILL",
                self.label
            );
        }
    }
}
