//! A headless Chromium driven over the Chrome DevTools Protocol, spoken with `tungstenite`
//! (no browser-automation crate, nothing downloaded).
//!
//! [`Chromium::launch`] starts the browser with `--remote-debugging-port=0` and a fresh
//! profile directory, reads the port from the profile's `DevToolsActivePort` file, and
//! [`Chromium::open_page`] opens a tab ([`Page`]) whose JavaScript can be evaluated. The
//! browser process is killed (by its [`Child`] handle) and its profile removed when the
//! [`Chromium`] is dropped, also when a test panics.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// The environment variable that makes a missing browser a failure (`required`).
pub const REQUIRED_ENV: &str = "EVENTUM_BROWSER_TEST";
/// The environment variable naming a Chromium binary to use instead of the default.
pub const PATH_ENV: &str = "EVENTUM_CHROMIUM";

/// How long the browser may take to start and open its debugging port.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags the browser is started with (besides the port and the profile directory).
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    // The https tests serve a certificate made for the run; trusting it for this browser
    // only (a fresh profile each launch) is what the flag is for.
    "--ignore-certificate-errors",
];

/// Whether the browser test must run (`EVENTUM_BROWSER_TEST=required`, as CI sets it).
pub fn required() -> bool {
    std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "required")
}

/// The Chromium binary: `$EVENTUM_CHROMIUM`, else the first of `chromium`,
/// `chromium-browser`, `google-chrome` found on `PATH` (Debian's is `/usr/bin/chromium`).
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(PATH_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .chain(std::iter::once(PathBuf::from("/usr/bin/chromium")))
        .find(|path| path.is_file())
}

/// The browser to use for `test`, or `None` (after saying so loudly, past the test
/// harness's output capture) when it is to be skipped: no Chromium was found and
/// [`REQUIRED_ENV`] is not `required`. A Chromium that is there but will not start is a
/// failure, not a skip.
pub fn chromium_or_skip(test: &str) -> Option<Chromium> {
    let Some(binary) = find() else {
        if required() {
            panic!("{test}: Chromium not found ({REQUIRED_ENV}=required): install Debian's `chromium` package or set {PATH_ENV}");
        }
        let bar = "=".repeat(78);
        let message = format!(
            "\n{bar}\nSKIPPED {test}: no Chromium found. Install Debian's `chromium` package or set\n\
             {PATH_ENV}; set {REQUIRED_ENV}=required to make this a failure.\n{bar}\n"
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
        return None;
    };
    Some(Chromium::launch(&binary).unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", binary.display())))
}

/// `text` as a JavaScript string literal.
pub fn js_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// Fills in the chat example page's name and room and clicks its join button.
pub fn join_chat(page: &mut Page, name: &str, room: &str) {
    let script = format!(
        "document.getElementById('name').value = {}; document.getElementById('room').value = {}; \
         document.getElementById('join').click(); true",
        js_string(name),
        js_string(room)
    );
    page.eval(&script).expect("join");
}

/// A running headless Chromium; killed when dropped.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    port: u16,
    browser_path: String,
}

impl Chromium {
    /// Starts `binary` headless with [`FLAGS`], a fresh profile and a debugging port
    /// chosen by the browser.
    pub fn launch(binary: &Path) -> io::Result<Chromium> {
        static LAUNCHES: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let profile = std::env::temp_dir().join(format!(
            "eventum-e2e-chromium-{}-{}-{nanos}",
            std::process::id(),
            LAUNCHES.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&profile)?;
        let log = fs::File::create(profile.join("chromium.log"))?;
        let child = Command::new(binary)
            .args(FLAGS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        // From here on, the guard kills the browser whatever happens.
        let mut browser = Chromium {
            child,
            profile,
            port: 0,
            browser_path: String::new(),
        };
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let active_port = browser.profile.join("DevToolsActivePort");
        loop {
            if let Ok(text) = fs::read_to_string(&active_port) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    if let Ok(port) = port.trim().parse() {
                        browser.port = port;
                        browser.browser_path = path.trim().to_owned();
                        return Ok(browser);
                    }
                }
            }
            if let Some(status) = browser.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "chromium exited with {status} before opening its debugging port; its log:\n{}",
                    browser.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "chromium did not open its debugging port within {LAUNCH_TIMEOUT:?}; its log:\n{}",
                        browser.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The browser process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The profile directory (removed on drop).
    pub fn profile(&self) -> &Path {
        &self.profile
    }

    /// The end of the browser's log (stderr), for failure messages.
    pub fn log(&self) -> String {
        let text = fs::read_to_string(self.profile.join("chromium.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    fn connect(&self, path: &str) -> io::Result<Cdp> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let stream = TcpStream::connect_timeout(&addr, COMMAND_TIMEOUT)?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        let (ws, _) = tungstenite::client::client(url.as_str(), stream).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Cdp { ws, next_id: 1 })
    }

    /// Opens a new tab at `url`.
    pub fn open_page(&self, url: &str) -> io::Result<Page> {
        let mut browser = self.connect(&self.browser_path)?;
        let created = browser.call("Target.createTarget", json!({ "url": url }))?;
        let target = created["targetId"]
            .as_str()
            .ok_or_else(|| io::Error::other(format!("no targetId in {created}")))?
            .to_owned();
        let cdp = self.connect(&format!("/devtools/page/{target}"))?;
        Ok(Page { cdp, target, browser })
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The process we started, by its handle: ask it to quit (so it takes its helper
        // processes with it), kill it if it does not within a few seconds, and reap it.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Helper processes may still be writing to the profile for a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        while fs::remove_dir_all(&self.profile).is_err() && self.profile.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// One DevTools WebSocket: numbered commands and their answers.
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Cdp {
    /// Sends a command and waits (bounded) for its result, skipping events.
    fn call(&mut self, method: &str, params: Value) -> io::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(command.to_string()))
            .map_err(|e| io::Error::other(format!("{method}: {e}")))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{method}: no answer")));
            }
            let message = self.ws.read().map_err(|e| io::Error::other(format!("{method}: {e}")))?;
            let Message::Text(text) = message else { continue };
            let answer: Value = serde_json::from_str(text.as_str()).map_err(io::Error::other)?;
            if answer["id"] != json!(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(io::Error::other(format!("{method}: {error}")));
            }
            return Ok(answer["result"].clone());
        }
    }
}

/// A browser tab.
pub struct Page {
    cdp: Cdp,
    target: String,
    browser: Cdp,
}

impl Page {
    /// Evaluates a JavaScript expression in the page (promises awaited) and returns its
    /// value; a thrown exception is an error.
    pub fn eval(&mut self, expression: &str) -> io::Result<Value> {
        let result = self.cdp.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(io::Error::other(format!("{expression}: {exception}")));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` until it evaluates to `true` (errors count as not yet), for at
    /// most `timeout`; returns whether it did.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if matches!(self.eval(expression), Ok(Value::Bool(true))) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Closes the tab.
    pub fn close(mut self) -> io::Result<()> {
        self.browser
            .call("Target.closeTarget", json!({ "targetId": self.target }))
            .map(|_| ())
    }
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}
