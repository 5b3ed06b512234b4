// Misuses the schema fixture's generated typings: every line marked `must-fail` must be a type
// error (and no other line).
import { connect } from "./eventum.js";
import type { Events, RoomTree } from "./schema-events.js";

const client = connect<Events>("ws://127.0.0.1:8080/ws");
const tree: RoomTree = { name: "hall", children: [{ name: "a" }] }; // must-fail: children is required
client.emit("chat:join", { room: 7 }); // must-fail: chat:join's room is a string
client.emit("chat_join", { room: "lobby" }); // must-fail: chat_join's room is a number
client.emit("layout", { root: { name: "x", children: [{ name: 1, children: [] }] } }); // must-fail: name is a string
client.emit("tag", { weight: 1, red: true }); // must-fail: id is required
client.on("chat_joined", (n) => console.log(n.toUpperCase())); // must-fail: chat_joined is a number
client.on("validation_error", (e) => console.log(e.data)); // must-fail: the validation error has no data
client.emit("tag", { id: "ok", red: true });
void tree;
