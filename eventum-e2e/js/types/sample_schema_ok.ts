// Uses eventum.js with the schema fixture's generated typings (eventum_e2e::js::schema_fixture_app)
// correctly: recursive types, named fields beside free-form ones, event names that sanitize alike.
// Must compile with tsc --strict.
import { connect } from "./eventum.js";
import type { Events, RoomTree } from "./schema-events.js";

const client = connect<Events>("ws://127.0.0.1:8080/ws");
const tree: RoomTree = { name: "hall", children: [{ name: "a", children: [] }] };
client.emit("chat:join", { room: "lobby" });
client.emit("chat_join", { room: 7 });
client.emit("layout", { root: tree, spare: null });
client.emit("layout", { root: tree });
client.emit("tag", { id: "x", weight: 3, red: true, blue: false });
client.emit("tag", { id: "y" });
async function mirrored(): Promise<string[]> {
  const back = await client.request("mirror", tree);
  return back.children.map((c) => c.name);
}
void mirrored();
client.on("tree_changed", (t) => console.log(t.children[0]?.children.length));
client.on("tagged", (t) => console.log(t.id.toUpperCase(), t["red"]));
client.on("chat:joined", (room) => console.log(room.toUpperCase()));
client.on("chat_joined", (n) => console.log(n.toFixed(0)));
client.on("validation_error", (e) => console.log(e.message, e.details?.path, e.id));
