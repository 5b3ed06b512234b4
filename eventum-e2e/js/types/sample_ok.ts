// Uses eventum.js with the chat's generated typings correctly: must compile with tsc --strict.
import { connect, ConnectionClosedError, TimeoutError, ValidationError, type Client } from "./eventum.js";
import type { Events } from "./events.js";

const client: Client<Events> = connect<Events>("ws://127.0.0.1:8080/ws", {
  reconnect: { initialDelay: 100, maxDelay: 5000, jitter: 0.3 },
  queueLimit: 50,
  onReconnect: (c) => {
    c.emit("join", { room: "lobby", name: "ada" });
  },
  onState: (state, detail) => console.log(state, detail.code, detail.attempt),
  onError: (error) => console.warn(error.message),
});

client.emit("join", { room: "lobby", name: "ada" });
client.emit("message", { room: "lobby", text: "hi" });
client.emit("leave", { room: "lobby" });
const off = client.on("message", (said) => {
  const who: string = said.name;
  const text: string = said.text;
  console.log(who, text);
});
off();
client.on("joined", (p) => console.log(p.room.toUpperCase()));
client.on("error", (e) => console.log(e.message));

async function myRooms(): Promise<string[]> {
  try {
    const rooms = await client.request("rooms", {}, { timeout: 1000 });
    return rooms.map((r) => r.toLowerCase());
  } catch (e) {
    if (e instanceof ValidationError) console.log(e.details?.path);
    if (e instanceof TimeoutError || e instanceof ConnectionClosedError) return [];
    throw e;
  }
}
void myRooms();
console.log(client.state, client.closeCode, client.queued);
client.close(1000, "bye");

// Without typings, anything goes.
const untyped = connect("ws://127.0.0.1:8080/ws", { reconnect: false });
untyped.emit("anything", { at: 1 });
untyped.on("whatever", (data) => console.log(data));
