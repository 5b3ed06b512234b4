// eventum.js in Node, with Node's built-in test runner, against the fixture server
// (eventum-e2e/src/bin/client_fixture.rs) through both adapters. The test starts the server,
// stops it and starts it again on the same address.
//
// Run by eventum-e2e/tests/js.rs, which sets EVENTUM_FIXTURE (the server binary) and
// EVENTUM_CLIENT (eventum.js); by hand:
//   EVENTUM_FIXTURE=target/debug/client_fixture EVENTUM_CLIENT=eventum-core/js/eventum.js \
//     node --experimental-websocket --test eventum-e2e/js/client.test.mjs
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { pathToFileURL } from "node:url";

const FIXTURE = process.env.EVENTUM_FIXTURE;
const CLIENT = process.env.EVENTUM_CLIENT;
if (!FIXTURE || !CLIENT) throw new Error("set EVENTUM_FIXTURE and EVENTUM_CLIENT (see the header of this file)");
const {
  connect,
  backoff,
  EventumError,
  TimeoutError,
  ValidationError,
  RejectedError,
  QueueFullError,
  ConnectionClosedError,
} = await import(pathToFileURL(CLIENT).href);

const WAIT = 8000;

function startFixture(adapter, addr = "127.0.0.1:0") {
  return new Promise((resolve, reject) => {
    const child = spawn(FIXTURE, [adapter, addr], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`fixture (${adapter}) did not start within ${WAIT} ms: ${out}`));
    }, WAIT);
    child.on("error", reject);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = /listening on (\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        const stop = () =>
          new Promise((done) => {
            const kill = setTimeout(() => child.kill("SIGKILL"), WAIT);
            child.on("exit", () => {
              clearTimeout(kill);
              done();
            });
            child.stdin.end(); // graceful: clients see 1001
          });
        resolve({ addr: match[1], url: `ws://${match[1]}/ws`, stop });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (!/listening on/.test(out)) reject(new Error(`fixture (${adapter}) exited with ${code}: ${out}`));
    });
  });
}

async function waitFor(condition, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function next(client, event, ms = WAIT) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    const off = client.on(event, (data) => {
      clearTimeout(timer);
      off();
      resolve(data);
    });
  });
}

test("backoff grows exponentially, is capped and jittered down", () => {
  const o = { initialDelay: 100, factor: 2, maxDelay: 1000, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoff(a, o)), [100, 200, 400, 800, 1000, 1000]);
  for (let i = 0; i < 200; i++) {
    const d = backoff(3, { ...o, jitter: 0.5 });
    assert.ok(d >= 400 && d <= 800, `${d}`);
  }
});

test("a missing WebSocket is an error that says what to do", () => {
  const saved = globalThis.WebSocket;
  try {
    globalThis.WebSocket = undefined;
    assert.throws(() => connect("ws://127.0.0.1:9/ws"), /no WebSocket: pass one as options.WebSocket/);
  } finally {
    globalThis.WebSocket = saved;
  }
});

// Nothing listens on port 1: the client stays offline (a long first delay) and queues.
function offline(options) {
  return connect("ws://127.0.0.1:1/ws", { reconnect: { initialDelay: 60000 }, ...options });
}

test("offline: a queued request that times out leaves the queue; a full queue refuses once", async () => {
  const errors = [];
  const client = offline({ queueLimit: 1, onError: (e) => errors.push(e) });
  try {
    const timedOut = client.request("add", { a: 1, b: 2 }, { timeout: 50 });
    assert.equal(client.queued, 1);
    // The queue is full: a request is refused by its promise only, an event via onError.
    await assert.rejects(client.request("add", { a: 3, b: 4 }), (e) => {
      assert.ok(e instanceof QueueFullError, `${e}`);
      assert.equal(e.bound, "count");
      assert.deepEqual(e.data, { a: 3, b: 4 });
      return true;
    });
    assert.deepEqual(errors, []);
    assert.equal(client.emit("echo", { i: 0 }), false);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof QueueFullError);
    await assert.rejects(timedOut, TimeoutError);
    // Its slot is free again.
    assert.equal(client.queued, 0);
    assert.equal(client.emit("echo", { i: 1 }), true);
    assert.equal(client.queued, 1);
    assert.equal(errors.length, 1);
  } finally {
    client.close();
  }
});

test("offline: the queue is bounded in bytes too", () => {
  const errors = [];
  const client = offline({ queueBytes: 100, onError: (e) => errors.push(e) });
  try {
    // {"event":"echo","data":"xxxxxxxxxx"} is 36 bytes: two fit, the third does not.
    assert.equal(client.emit("echo", "x".repeat(10)), true);
    assert.equal(client.emit("echo", "x".repeat(10)), true);
    assert.equal(client.emit("echo", "x".repeat(10)), false);
    assert.equal(client.queued, 2);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof QueueFullError, `${errors[0]}`);
    assert.equal(errors[0].bound, "bytes");
    assert.equal(errors[0].limit, 100);
    // 28 bytes left. Text counts in UTF-8 bytes: with "ééé" it is 32 bytes (29 characters), with "é" 28.
    assert.equal(client.emit("echo", "é".repeat(3)), false);
    assert.equal(client.emit("echo", "é"), true);
    assert.equal(client.queued, 3);
  } finally {
    client.close();
  }
});

// A TCP server that treats every connection with `handle` and never answers the upgrade.
function rawServer(handle) {
  return new Promise((resolve) => {
    const sockets = new Set();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
      handle(socket);
    });
    server.listen(0, "127.0.0.1", () => {
      const url = `ws://127.0.0.1:${server.address().port}/ws`;
      const stop = () =>
        new Promise((done) => {
          sockets.forEach((socket) => socket.destroy());
          server.close(done);
        });
      resolve({ url, stop });
    });
  });
}

// How the first attempt against a misbehaving server ended, and that the client tried again.
async function firstFailure(handle, options) {
  const server = await rawServer(handle);
  const states = [];
  const client = connect(server.url, {
    reconnect: { initialDelay: 20, maxDelay: 20 },
    onState: (state, detail) => states.push({ state, ...detail }),
    ...options,
  });
  try {
    await waitFor(() => states.some((s) => s.state === "connecting" && s.attempt === 1), "a second attempt");
    return states.find((s) => s.state === "reconnecting");
  } finally {
    client.close();
    await server.stop();
  }
}

// Node 20's WebSocket fires no close when the server drops the connection before answering
// the upgrade (and only an error when it resets it): the client must not wait forever.
test("a connection dropped before the upgrade's answer is retried", async () => {
  const failure = await firstFailure((socket) => socket.once("data", () => socket.end()));
  assert.equal(failure.code, 1006, JSON.stringify(failure));
  assert.equal(failure.opened, false);
});

test("a connection reset before the upgrade's answer is retried", async () => {
  const failure = await firstFailure((socket) => socket.once("data", () => socket.resetAndDestroy()));
  assert.equal(failure.code, 1006, JSON.stringify(failure));
});

test("an upgrade never answered is given up after connectTimeout and retried", async () => {
  const started = Date.now();
  const failure = await firstFailure(() => {}, { connectTimeout: 200 });
  assert.deepEqual([failure.code, failure.reason], [1006, "connect timeout"]);
  assert.ok(Date.now() - started >= 200, "not before the timeout");
});

for (const adapter of ["smol", "std"]) {
  describe(`eventum.js against ${adapter}`, () => {
    test("emit and on, with a WebSocket passed in (and no global one)", async () => {
      const server = await startFixture(adapter);
      const saved = globalThis.WebSocket;
      globalThis.WebSocket = undefined;
      let client;
      try {
        client = connect(server.url, { WebSocket: saved, reconnect: false });
      } finally {
        globalThis.WebSocket = saved;
      }
      try {
        const echoed = next(client, "echo");
        assert.equal(client.emit("echo", { hello: "world", n: [1, 2] }), true); // queued until open
        assert.deepEqual(await echoed, { hello: "world", n: [1, 2] });
        await waitFor(() => client.state === "open", "open");
        const joined = next(client, "joined");
        client.emit("join", { room: "lobby" });
        assert.deepEqual(await joined, { room: "lobby" });
      } finally {
        client.close();
        await server.stop();
      }
    });

    test("request: the reply, a validation error, a timeout", async () => {
      const server = await startFixture(adapter);
      const client = connect(server.url, { reconnect: false });
      try {
        assert.equal(await client.request("add", { a: 2, b: 3 }), 5);
        await assert.rejects(client.request("add", { a: "two", b: 3 }), (e) => {
          assert.ok(e instanceof ValidationError, `${e}`);
          assert.equal(e.message, "Invalid data received");
          return true;
        });
        const started = Date.now();
        await assert.rejects(client.request("slow", {}, { timeout: 200 }), (e) => {
          assert.ok(e instanceof TimeoutError, `${e}`);
          assert.equal(e.timeout, 200);
          return true;
        });
        assert.ok(Date.now() - started < 2000);
        // Rejected by the server's event middleware: settled by its reply, not the timeout.
        const before = Date.now();
        await assert.rejects(client.request("forbidden", {}, { timeout: 5000 }), (e) => {
          assert.ok(e instanceof RejectedError, `${e}`);
          assert.equal(e.event, "error");
          assert.deepEqual(e.data, { message: "not allowed" });
          return true;
        });
        assert.ok(Date.now() - before < 2000);
        // Still usable after all three.
        assert.equal(await client.request("add", { a: -1, b: 1 }), 0);
      } finally {
        client.close();
        await server.stop();
      }
    });

    test("answers the server's requests with a handler's value", async () => {
      const server = await startFixture(adapter);
      const client = connect(server.url, { reconnect: false });
      try {
        client.on("question", async ({ n }) => n * 2);
        const answered = next(client, "answered");
        client.emit("ask", { n: 21 });
        assert.equal(await answered, 42);
      } finally {
        client.close();
        await server.stop();
      }
    });

    test("answers a server request only on the connection it came on", async () => {
      let server = await startFixture(adapter);
      // An attempt that reaches the old server as it exits may get no answer: retry soon.
      const states = [];
      const client = connect(server.url, {
        reconnect: { initialDelay: 50, maxDelay: 300 },
        connectTimeout: 1000,
        onState: (state, detail) => states.push({ state, ...detail }),
      });
      const releases = [];
      client.on("question", ({ n }) => new Promise((resolve) => releases.push(() => resolve(n * 2))));
      const answers = [];
      client.on("answered", (answer) => answers.push(answer));
      try {
        client.emit("ask", { n: 100 });
        await waitFor(() => releases.length === 1, "the first question");
        const addr = server.addr;
        await server.stop();
        await waitFor(() => client.state !== "open", "the close");
        server = await startFixture(adapter, addr);
        // A failure here says how the attempts ended.
        await waitFor(() => client.state === "open", "reopened").catch((e) => {
          throw new Error(`${e.message}; states: ${JSON.stringify(states)}`);
        });
        // The new server asks with the same ack number (1) as the old one did.
        client.emit("ask", { n: 21 });
        await waitFor(() => releases.length === 2, "the second question");
        answers.length = 0;
        releases[0](); // the old connection's answer: it must not settle the new server's request
        await new Promise((r) => setTimeout(r, 200));
        releases[1]();
        await waitFor(() => answers.length > 0, "the answer");
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(answers, [42]);
      } finally {
        client.close();
        await server.stop();
      }
    });

    test("close() refuses a code WebSocket.close would throw on, and changes nothing", async () => {
      const server = await startFixture(adapter);
      const client = connect(server.url, { reconnect: false });
      try {
        await waitFor(() => client.state === "open", "open");
        for (const [code, reason] of [[1001, ""], [1006, ""], [2999, ""], [5000, ""], [4000.5, ""], [4000, "x".repeat(124)]]) {
          assert.throws(() => client.close(code, reason), EventumError, `${code}`);
          assert.equal(client.state, "open");
        }
        assert.equal(await client.request("add", { a: 1, b: 1 }), 2);
        client.close(4001, "done");
        await waitFor(() => client.state === "closed", "closed");
        assert.equal(client.closeCode, 4001);
        await assert.rejects(client.request("add", { a: 1, b: 1 }), ConnectionClosedError);
      } finally {
        client.close();
        await server.stop();
      }
    });

    test("does not reconnect after the server's deliberate refusal, unless told to", async () => {
      const server = await startFixture(adapter);
      const options = { reconnect: { initialDelay: 20, maxDelay: 50 } };
      const refused = connect(server.url, options);
      const insisting = connect(server.url, { ...options, shouldReconnect: () => true });
      try {
        await waitFor(() => refused.state === "open" && insisting.state === "open", "open");
        refused.emit("kick", { code: 4003 });
        await waitFor(() => refused.state === "closed", "closed for good");
        assert.equal(refused.closeCode, 4003);
        assert.equal(refused.closeReason, "kicked");
        const states = [];
        insisting.onState((state, detail) => states.push({ state, ...detail }));
        insisting.emit("kick", { code: 1008 });
        await waitFor(() => states.some((s) => s.state === "open" && s.reconnected), "reconnected");
        assert.equal(states.find((s) => s.state === "reconnecting").code, 1008);
        assert.equal(refused.state, "closed");
      } finally {
        refused.close();
        insisting.close();
        await server.stop();
      }
    });

    test("reconnects after a server restart, re-joins, and bounds its offline queue", async () => {
      let server = await startFixture(adapter);
      const states = [];
      const errors = [];
      const echoes = [];
      const client = connect(server.url, {
        reconnect: { initialDelay: 50, maxDelay: 300 },
        // An attempt that reaches the old server as it exits may get no answer: retry soon.
        connectTimeout: 1000,
        queueLimit: 3,
        onReconnect: (c) => c.emit("join", { room: "r1" }),
        onState: (state, detail) => states.push({ state, ...detail }),
        onError: (e) => errors.push(e),
      });
      client.on("echo", (data) => echoes.push(data));
      try {
        const joined = next(client, "joined");
        client.emit("join", { room: "r1" });
        await joined;
        const addr = server.addr;
        await server.stop();
        await waitFor(() => client.state === "reconnecting" || client.state === "connecting", "reconnecting");
        const closed = states.find((s) => s.state === "reconnecting");
        assert.equal(closed.code, 1001, JSON.stringify(states));
        assert.equal(closed.opened, true);
        // Offline: three fit in the queue, the rest are refused and reported.
        const accepted = [0, 1, 2, 3, 4].map((i) => client.emit("echo", { i }));
        assert.deepEqual(accepted, [true, true, true, false, false]);
        assert.equal(client.queued, 3);
        assert.equal(errors.filter((e) => e instanceof QueueFullError).length, 2);
        assert.deepEqual(
          errors.map((e) => e.data),
          [{ i: 3 }, { i: 4 }]
        );
        server = await startFixture(adapter, addr);
        // A failure here says how the attempts ended.
        await waitFor(() => client.state === "open", "reopened").catch((e) => {
          throw new Error(`${e.message}; states: ${JSON.stringify(states)}`);
        });
        assert.ok(states.some((s) => s.state === "open" && s.reconnected));
        await waitFor(() => echoes.length === 3, "the queued echoes");
        assert.deepEqual(echoes, [{ i: 0 }, { i: 1 }, { i: 2 }]);
        // The hook re-joined the room on the new server.
        assert.deepEqual(await client.request("rooms", {}), ["r1"]);
      } finally {
        client.close();
        await server.stop();
      }
    });

    test("without reconnection a server stop closes for good; close() rejects what waits", async () => {
      const server = await startFixture(adapter);
      const client = connect(server.url, { reconnect: false });
      await waitFor(() => client.state === "open", "open");
      const pending = assert.rejects(
        client.request("slow", {}, { timeout: 5000 }),
        (e) => e instanceof ConnectionClosedError && e.code === 1001
      );
      await server.stop();
      await pending;
      await waitFor(() => client.state === "closed", "closed");
      assert.equal(client.closeCode, 1001);
      await assert.rejects(client.request("add", { a: 1, b: 1 }), ConnectionClosedError);
      client.close();
    });
  });
}
