// An echo server on Node's `ws`, the reference for eventum's echo with permessage-deflate
// (benches/run-load.sh, DEFLATE=1). Settings matched to eventum's defaults so that both do
// the same work: every message compressed on its own in both directions, a 12-bit server
// window, zlib level 1 (WS_LEVEL overrides), messages under 128 bytes uncompressed.
// Connections to /broadcast form one room: every text message one of them sends goes to
// all of them, as eventum's echo examples do (ws compresses it once per recipient).
//
//   node benches/peers/ws-echo.mjs 127.0.0.1:9003
import { WebSocketServer } from "ws";

const [host, port] = (process.argv[2] || "127.0.0.1:9003").split(":");
const level = Number(process.env.WS_LEVEL || 1);
const wss = new WebSocketServer({
  host,
  port: Number(port),
  maxPayload: 64 << 20,
  perMessageDeflate: {
    zlibDeflateOptions: { level },
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 12,
    threshold: 128,
  },
});
const room = new Set();
wss.on("connection", (ws, req) => {
  if (req.url === "/broadcast") {
    room.add(ws);
    ws.on("close", () => room.delete(ws));
    ws.on("message", (data, isBinary) => {
      for (const member of room) member.send(data, { binary: isBinary });
    });
  } else {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  }
});
wss.on("listening", () => console.log(`ws echo server on ${host}:${port} (permessage-deflate, level ${level})`));
wss.on("error", (e) => {
  console.error(String(e));
  process.exit(1);
});
