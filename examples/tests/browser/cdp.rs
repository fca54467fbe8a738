//! A minimal Chrome DevTools Protocol client for the browser tests: launches headless Chromium
//! with a throwaway profile, attaches to one page over the browser's websocket (flattened
//! sessions) and sends commands one at a time. Every event that arrives meanwhile is kept, so a
//! test can ask afterwards for the console errors and uncaught exceptions the page produced.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Chromium binary to drive: `OMOI_TEST_CHROMIUM` (written by `scripts/services up`).
/// Under `CI=true` a missing variable or binary fails the test; elsewhere it is skipped.
pub(crate) fn chromium_binary() -> Option<PathBuf> {
    let path = PathBuf::from(omoi_core::testkit::service_url("OMOI_TEST_CHROMIUM")?);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("OMOI_TEST_CHROMIUM={} does not exist and CI=true: run `scripts/services chromium`", path.display());
    }
    eprintln!("skipped: {} does not exist (run `scripts/services chromium`)", path.display());
    None
}

/// A headless Chromium process and a session attached to its one page.
pub(crate) struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    session: String,
    next_id: u64,
    events: Vec<Value>,
}

impl Browser {
    /// Starts `binary` headless with a `width`×`height` window and attaches to a blank page.
    pub(crate) async fn launch(binary: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox", // tests run as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // With port 0 Chromium writes the port it chose and the browser target's path here.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(Instant::now() < deadline, "Chromium wrote no {} within 20 s", active.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("DevTools websocket");
        let mut browser =
            Browser { child, _profile: profile, socket, session: String::new(), next_id: 0, events: Vec::new() };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"})).await;
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached =
            browser.browser_call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true})).await;
        browser.session = attached["sessionId"].as_str().expect("sessionId").to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// Sends a command to the page's session and returns its result (panics on a protocol error).
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session)).await
    }

    async fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None).await
    }

    async fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.socket.send(Message::text(msg.to_string())).await.expect("send to DevTools");
        let reply = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let frame = self.socket.next().await.expect("DevTools closed").expect("DevTools read");
                let Message::Text(text) = frame else { continue };
                let value: Value = serde_json::from_str(&text).expect("DevTools sent JSON");
                if value["id"].as_u64() == Some(id) {
                    return value;
                }
                if value.get("method").is_some() {
                    self.events.push(value);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no reply to {method} within 20 s"));
        if let Some(err) = reply.get("error") {
            panic!("{method} failed: {err}");
        }
        reply["result"].clone()
    }

    /// Navigates and waits for the page's `load` event.
    pub(crate) async fn navigate(&mut self, url: &str) {
        let nav = self.call("Page.navigate", json!({"url": url})).await;
        assert!(nav.get("errorText").is_none(), "navigation to {url} failed: {nav}");
        self.wait_until("document.readyState === 'complete'", Duration::from_secs(15)).await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value;
    /// panics on an exception.
    pub(crate) async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}))
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("`{expression}` threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`; panics with `expression` after `timeout`.
    pub(crate) async fn wait_until(&mut self, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "still false after {timeout:?}: {expression}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Console `error` calls, uncaught exceptions and error log entries (failed loads, CSP, ...)
    /// seen so far, one line each.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => Some(format!("exception: {}", p["exceptionDetails"])),
                    "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                        Some(format!("console.{}: {}", p["type"].as_str()?, p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        Some(format!("log: {} {}", p["entry"]["text"], p["entry"]["url"]))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// A PNG of the whole page (beyond the viewport), written to `path`.
    pub(crate) async fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifacts dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Asks Chromium to exit, then makes sure it did.
    pub(crate) async fn close(mut self) {
        // Chromium may drop the socket before it answers: send, and watch the process instead.
        self.next_id += 1;
        let close = json!({"id": self.next_id, "method": "Browser.close"});
        let _ = self.socket.send(Message::text(close.to_string())).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
