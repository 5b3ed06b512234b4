//! Support for the JavaScript side of the end-to-end tests: the app `eventum.js` is tested
//! against ([`client_fixture_app`]), restarting a server on the same address
//! ([`Adapter::start_at`]), and Node with the npm packages of `eventum-e2e/js` (the official
//! AsyncAPI parser, the TypeScript compiler), installed with `npm ci` when missing.
//!
//! Nothing here skips: a missing `node` or `npm` is a failure that says how to install it
//! (`scripts/test.sh` does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use eventum_core::app::{App, Route};
use eventum_core::handshake::HttpResponse;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Adapter, TestServer};

/// The blank page the browser tests open, so the client's module loads from the server.
pub const FIXTURE_PAGE: &str =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>eventum.js test</title></head><body></body></html>";

#[derive(Deserialize)]
struct Room {
    room: String,
}

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Deserialize)]
struct Kick {
    code: u16,
}

#[derive(Deserialize, Serialize)]
struct Ask {
    n: i64,
}

/// The app `eventum.js` is tested against, at `/ws`, serving the client and a blank page:
///
/// * `echo` (any data): answered with the event `echo` and the same data;
/// * `join` `{room}`: joins the room and broadcasts `joined` `{room}` to it;
/// * request `add` `{a, b}`: replies `a + b` (a wrong type gets the validation error);
/// * request `rooms`: replies the rooms the connection is in;
/// * request `slow`: never replies (for timeouts);
/// * `kick` `{code}`: the server closes the connection with that code;
/// * `forbidden`: rejected by event middleware with the event `error` `{message}` (carrying
///   the request's `id`, for a request);
/// * `ask` `{n}`: the server asks the client `question` `{n}` with an ack (2 s) and sends
///   `answered` with the client's answer (or `"timeout"`).
pub fn client_fixture_app() -> App {
    App::builder()
        .route(Route::new("/ws"))
        .serve_client()
        .http_fallback(|request| match request.path() {
            "/" => HttpResponse::html(200, FIXTURE_PAGE),
            _ => HttpResponse::text(404, "Not Found"),
        })
        .on("echo", |ctx, event| {
            let data = event.data().cloned().unwrap_or(serde_json::Value::Null);
            let _ = ctx.send_event("echo", &data);
        })
        .on_event("join", |ctx, join: Room| {
            ctx.join(&join.room);
            if let Ok(frame) = eventum_core::SharedFrame::event("joined", &json!({ "room": join.room })) {
                ctx.broadcast(&join.room, frame);
            }
        })
        .on_request("add", |_, add: Add| add.a + add.b)
        .on_request("rooms", |ctx, _: serde_json::Value| -> Vec<String> {
            ctx.rooms().map(str::to_owned).collect()
        })
        .on("slow", |_, _| {})
        .on_event("kick", |ctx, kick: Kick| {
            let _ = ctx.close(eventum_core::CloseCode(kick.code), "kicked");
        })
        .event_middleware(|_, event| match event.name() {
            "forbidden" => {
                eventum_core::app::Flow::Reject(json!({"event": "error", "data": {"message": "not allowed"}}))
            }
            _ => eventum_core::app::Flow::Continue,
        })
        .on_event("ask", |ctx, ask: Ask| {
            let asked = ctx.request_ack("question", &ask, Duration::from_secs(2), |ctx, answer| {
                let answer = answer.unwrap_or_else(|e| json!(e.to_string()));
                let _ = ctx.send_event("answered", &answer);
            });
            if let Err(e) = asked {
                log::warn!("cannot ask: {e}");
            }
        })
        .build()
}

/// A recursive type: a room and the rooms inside it.
#[derive(Deserialize, Serialize, JsonSchema)]
pub struct RoomTree {
    /// The room's name.
    pub name: String,
    /// The rooms inside it.
    pub children: Vec<RoomTree>,
}

/// A type that holds the recursive one.
#[derive(Deserialize, JsonSchema)]
pub struct Layout {
    /// The outermost room.
    pub root: RoomTree,
    /// A second tree, maybe.
    pub spare: Option<Box<RoomTree>>,
}

/// Named fields beside free-form ones (a flattened map).
#[derive(Deserialize, Serialize, JsonSchema)]
pub struct Tagged {
    /// What is tagged.
    pub id: String,
    /// Optional.
    pub weight: Option<u32>,
    /// Every other field: a tag, on or off.
    #[serde(flatten)]
    pub tags: HashMap<String, bool>,
}

/// `chat:join`'s payload.
#[derive(Deserialize, JsonSchema)]
pub struct ChatJoin {
    /// A room name.
    pub room: String,
}

/// `chat_join`'s payload: the same key once sanitized, another type.
#[derive(Deserialize, JsonSchema)]
pub struct ChatJoinNumbered {
    /// A room number.
    pub room: u32,
}

/// An app whose schema export exercises the hard cases, checked by the official AsyncAPI
/// parser and `tsc --strict` (`tests/js.rs`): recursive types (as the root of a payload and
/// inside one), named fields beside a map's, and event names that sanitize to the same key
/// (`chat:join` and `chat_join`, both ways).
pub fn schema_fixture_app() -> App {
    App::builder()
        .route(Route::new("/ws"))
        .asyncapi_info("schema fixture", "1.0.0")
        .event("chat:join", |_, _: ChatJoin| {})
        .event("chat_join", |_, _: ChatJoinNumbered| {})
        .event("layout", |_, _: Layout| {})
        .event("tag", |_, _: Tagged| {})
        .request("mirror", |_, tree: RoomTree| -> RoomTree { tree })
        .emits::<RoomTree>("tree_changed")
        .emits::<Tagged>("tagged")
        .emits::<String>("chat:joined")
        .emits::<u32>("chat_joined")
        .build()
}

impl Adapter {
    /// Starts `app` on `addr` (e.g. the address of a server that was just shut down, to
    /// restart it where its clients reconnect), with default options.
    pub fn start_at(self, app: App, addr: &str) -> std::io::Result<TestServer> {
        self.listen(app, addr, crate::Options::default())
    }
}

/// `eventum-e2e/js`: the npm project of the JavaScript tests.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// `eventum-core/js`: `eventum.js` and `eventum.d.ts`.
pub fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../eventum-core/js")
}

fn tool_missing(tool: &str) -> ! {
    panic!(
        "`{tool}` not found: the JavaScript tests need Node.js 20+ and npm (this project's machines \
         ship Node 20). Run scripts/test.sh (it installs Debian's nodejs and npm when they are \
         missing; on Debian 12 that is Node 18, too old: install Node 20+ first)."
    )
}

/// `node`, checked to be there and at least Node 20 (a failure otherwise, never a skip).
pub fn node() -> Command {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let version = Command::new("node")
            .arg("--version")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| tool_missing("node"));
        let major: u32 = version
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert!(
            major >= 20,
            "the JavaScript tests need Node.js 20 or later (its built-in WebSocket); found {version}. \
             This project's machines ship Node 20; Debian 12's nodejs is 18. Install Node 20+ and re-run."
        );
    });
    Command::new("node")
}

/// The flags that give this Node a global `WebSocket` (`--experimental-websocket` on Node
/// 20 and 21, none from 22 on).
pub fn node_websocket_flags() -> Vec<&'static str> {
    let has_global = node()
        .args(["-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"])
        .status()
        .is_ok_and(|s| s.success());
    if has_global {
        Vec::new()
    } else {
        vec!["--experimental-websocket"]
    }
}

/// Makes sure `eventum-e2e/js/node_modules` holds the pinned packages (`npm ci` once per
/// test process when one is missing); panics with npm's output when it cannot.
pub fn ensure_node_modules() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = js_dir();
        let present = ["@asyncapi/parser/package.json", "typescript/bin/tsc"]
            .iter()
            .all(|p| dir.join("node_modules").join(p).is_file());
        if present {
            return;
        }
        node();
        eprintln!("eventum-e2e/js: installing the pinned npm packages (npm ci)");
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|_| tool_missing("npm"));
        assert!(
            output.status.success(),
            "npm ci in {} failed:\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// Runs a command to completion, returning its output (panics if it cannot start).
pub fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Both streams of an output, for failure messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
