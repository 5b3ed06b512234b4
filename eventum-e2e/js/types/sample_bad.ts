// Misuses the chat's generated typings: every line marked `must-fail` must be a type error
// (and no other line).
import { connect } from "./eventum.js";
import type { Events } from "./events.js";

const client = connect<Events>("ws://127.0.0.1:8080/ws");
client.emit("join", { room: 1, name: "ada" }); // must-fail: room is a string
client.emit("jion", { room: "lobby", name: "ada" }); // must-fail: no such event
client.emit("leave", {}); // must-fail: room is required
client.emit("message", { room: "lobby" }); // must-fail: text is required
client.on("joined", (p) => console.log(p.nickname)); // must-fail: joined has no nickname
client.request("join", { room: "lobby", name: "ada" }); // must-fail: join is not a request
const rooms: Promise<number[]> = client.request("rooms", {}); // must-fail: rooms replies string[]
client.emit("leave", { room: "lobby" });
