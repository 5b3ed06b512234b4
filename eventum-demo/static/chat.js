// @ts-check
// The chat page's script, served at /chat.js. It speaks through eventum.js, which the chat
// app serves at /eventum.js (its declarations at /eventum.d.ts), and is typed by the chat's
// event typings, generated from the app's Rust types and served at /events.d.ts
// (`App::serve_typescript`). eventum-e2e/tests/js.rs type-checks this file with
// `tsc --strict --checkJs` beside eventum.d.ts and the generated events.d.ts, so using an
// event or a field the app does not have is a type error.
import { connect } from "./eventum.js";

/** @typedef {import("./events.js").Events} Events */
/** @typedef {Events["client"]["join"]} Join */

/** @param {string} id */
function element(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error("the page has no #" + id);
  return found;
}

/** @param {string} id */
function field(id) {
  return /** @type {HTMLInputElement} */ (element(id));
}

const log = element("log");
const status = element("status");
const retry = element("retry");
/** @type {Join | null} re-joined after every reconnection */
let joined = null;

/**
 * @param {string} text
 * @param {string} [cls]
 */
function show(text, cls) {
  const line = document.createElement("div");
  line.textContent = text;
  if (cls) line.className = cls;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}

/** @type {import("./eventum.js").Client<Events>} */
const client = connect("/ws", {
  // The server forgets rooms when it restarts: join again, before anything queued is sent.
  onReconnect: (c) => {
    if (joined) c.emit("join", joined);
  },
  onState: (state, detail) => {
    if (state === "open") {
      status.textContent = "connected";
      retry.textContent = detail.reconnected ? "(reconnected)" : "";
      document.body.dataset.connected = "yes";
      // What the server agreed to (permessage-deflate), for the curious and the browser test.
      document.body.dataset.extensions = client.extensions;
    } else if (state === "reconnecting") {
      // Keep the close code of the connection that was open, not of failed attempts.
      if (detail.opened) status.textContent = "disconnected (" + detail.code + ")";
      retry.textContent =
        "reconnecting in " + ((detail.delay ?? 0) / 1000).toFixed(1) + " s (attempt " + detail.attempt + ")";
      document.body.dataset.connected = "no";
    } else if (state === "closed") {
      status.textContent = "disconnected (" + detail.code + ")";
      retry.textContent = "gave up";
      document.body.dataset.connected = "no";
    } else {
      retry.textContent = "connecting…";
    }
    document.body.dataset.state = state;
  },
  onError: (error) => show(error.message, "error"),
});
Object.assign(window, { chatClient: client });

client.on("joined", (ev) => show(ev.name + " joined " + ev.room, "system"));
client.on("left", (ev) => show(ev.name + " left " + ev.room, "system"));
client.on("message", (ev) => show("[" + ev.room + "] " + ev.name + ": " + ev.text));
client.on("error", (ev) => show(ev.message, "error"));
client.on("validation_error", (ev) => show("invalid: " + ev.message, "error"));

element("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const room = field("room").value.trim();
  const name = field("name").value.trim();
  if (joined && joined.room !== room) client.emit("leave", { room: joined.room });
  joined = { room, name };
  client.emit("join", joined);
});

element("send-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = field("text");
  if (!joined) {
    show("join a room first", "error");
    return;
  }
  client.emit("message", { room: joined.room, text: input.value });
  input.value = "";
});
