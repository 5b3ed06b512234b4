// eventum.js: the JavaScript client of eventum (https://example.invalid/eventum).
// A dependency-free ES module for browsers and Node 20+ (global WebSocket, or pass one in).
// It speaks the envelope documented in eventum_core::app::envelope:
//   {"event": E, "data": D}            an event, both ways
//   {"event": E, "data": D, "id": I}   a client request / the server's reply to it
//   {"event": E, "data": D, "ack": N}  a server request; the client answers {"ack": N, "data": R}
//                                      (the one message without "event"), on the connection it came on
//   {"event": "validation_error", "message": M, "id"?: I, "details"?: {...}}  flat, no "data"
// A server event without "data" (the validation error, or a flat eventum-asgi event) reaches
// its handlers with the whole message as its data.
// Types: eventum.d.ts beside this file.

/** Base class of every error this client reports. */
export class EventumError extends Error {
  constructor(message) {
    super(message);
    this.name = "EventumError";
  }
}

/** The server refused an event's or a request's data (its `validation_error`). */
export class ValidationError extends EventumError {
  constructor(reply) {
    super(reply && typeof reply.message === "string" ? reply.message : "Invalid data received");
    this.name = "ValidationError";
    this.details = reply && reply.details !== undefined ? reply.details : null;
    this.reply = reply;
  }
}

/** A request got no reply within its timeout. */
export class TimeoutError extends EventumError {
  constructor(event, timeout) {
    super(`request ${JSON.stringify(event)} got no reply within ${timeout} ms`);
    this.name = "TimeoutError";
    this.event = event;
    this.timeout = timeout;
  }
}

/** The offline queue was full: this event or request was not queued (nothing else was dropped).
 * `bound` says which bound it hit: "count" (queueLimit, `limit` events) or "bytes" (queueBytes,
 * `limit` bytes of JSON text). */
export class QueueFullError extends EventumError {
  constructor(event, data, limit, bound = "count") {
    const what = bound === "bytes" ? `${limit} bytes` : `${limit} messages`;
    super(`offline queue full (${what}): ${JSON.stringify(event)} not queued`);
    this.name = "QueueFullError";
    this.event = event;
    this.data = data;
    this.limit = limit;
    this.bound = bound;
  }
}

/** The server answered a request with another event than the request's (e.g. event middleware
 * rejecting it with an error event): `reply` is that message, `data` its data. */
export class RejectedError extends EventumError {
  constructor(reply) {
    const data = reply && "data" in reply ? reply.data : reply;
    const detail = data && typeof data.message === "string" ? data.message : JSON.stringify(data);
    super(`request rejected with ${JSON.stringify(reply && reply.event)}: ${detail}`);
    this.name = "RejectedError";
    this.event = reply ? reply.event : undefined;
    this.data = data;
    this.reply = reply;
  }
}

/** The connection closed (or the client was closed) before a request's reply arrived. */
export class ConnectionClosedError extends EventumError {
  constructor(code, reason) {
    super(`connection closed (${code}${reason ? ": " + reason : ""})`);
    this.name = "ConnectionClosedError";
    this.code = code;
    this.reason = reason;
  }
}

const DEFAULTS = {
  reconnect: true,
  initialDelay: 500,
  maxDelay: 10000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
  queueLimit: 100,
  queueBytes: 1 << 20,
  requestTimeout: 10000,
  connectTimeout: 10000,
};

/** The length of `text` in UTF-8 bytes, without encoding it. */
function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) {
      bytes += 4; // a surrogate pair
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** Throws unless `WebSocket.close(code, reason)` accepts them (1000 or 3000-4999, a reason of at most 123 bytes). */
function checkClose(code, reason) {
  if (!Number.isInteger(code) || (code !== 1000 && (code < 3000 || code > 4999))) {
    throw new EventumError(`close code ${code} is not allowed: use 1000 or 3000-4999`);
  }
  if (typeof reason !== "string" || utf8Length(reason) > 123) {
    throw new EventumError("close reason must be a string of at most 123 UTF-8 bytes");
  }
}

/** The default reconnection policy: reconnect after any close but a deliberate refusal by the
 * server, i.e. the close codes 1002 (protocol error), 1003 (unsupported data), 1007 (invalid
 * data), 1008 (policy violation), 1009 (message too big), 1010 (missing extension) and the
 * application's own 4000-4999, where reconnecting would be refused again. Pass
 * `shouldReconnect` to decide otherwise (e.g. `() => true`). */
export function defaultShouldReconnect({ code }) {
  if ([1002, 1003, 1007, 1008, 1009, 1010].includes(code)) return false;
  return !(code >= 4000 && code <= 4999);
}

/** The delay before reconnection attempt `attempt` (0-based): exponential, capped, jittered down. */
export function backoff(attempt, options = {}) {
  const o = { ...DEFAULTS, ...options };
  const base = Math.min(o.maxDelay, o.initialDelay * Math.pow(o.factor, attempt));
  const jitter = Math.min(1, Math.max(0, o.jitter));
  return Math.round(base * (1 - jitter * Math.random()));
}

/** Opens a client to the eventum app at `url` (ws:// or wss://; a path like "/ws" is resolved against the page). */
export function connect(url, options = {}) {
  return new Client(url, options);
}

function resolveUrl(url) {
  if (/^wss?:\/\//i.test(url)) return url;
  if (typeof location !== "undefined" && location.host) {
    const u = new URL(url, location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u.href;
  }
  throw new EventumError(`not a WebSocket URL: ${url}`);
}

class Client {
  constructor(url, options) {
    const reconnect = options.reconnect === undefined ? true : options.reconnect;
    this._options = {
      ...DEFAULTS,
      ...(typeof reconnect === "object" && reconnect !== null ? reconnect : {}),
      reconnect: reconnect !== false,
      queueLimit: options.queueLimit !== undefined ? options.queueLimit : DEFAULTS.queueLimit,
      queueBytes: options.queueBytes !== undefined ? options.queueBytes : DEFAULTS.queueBytes,
      requestTimeout: options.requestTimeout !== undefined ? options.requestTimeout : DEFAULTS.requestTimeout,
      connectTimeout: options.connectTimeout !== undefined ? options.connectTimeout : DEFAULTS.connectTimeout,
      shouldReconnect: options.shouldReconnect || defaultShouldReconnect,
    };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new EventumError(
        "no WebSocket: pass one as options.WebSocket (Node 20 needs --experimental-websocket for a global one)"
      );
    }
    this.url = resolveUrl(url);
    this._protocols = options.protocols;
    this._onReconnect = options.onReconnect || null;
    this._handlers = new Map(); // event -> Set of handlers
    this._stateHandlers = new Set();
    this._errorHandlers = new Set();
    if (options.onState) this._stateHandlers.add(options.onState);
    if (options.onError) this._errorHandlers.add(options.onError);
    this._queue = []; // {text, bytes, event, data, entry}: waiting for the connection
    this._queuedBytes = 0;
    this._pending = new Map(); // request id -> {event, resolve, reject, timer}
    this._nextId = 1;
    this._attempt = 0;
    this._timer = null;
    this._connectTimer = null;
    this._socket = null;
    this._closedByUser = false;
    this._everOpened = false;
    /** "connecting" | "open" | "reconnecting" | "closed" */
    this.state = "connecting";
    /** The last close's code and reason (null until a close). */
    this.closeCode = null;
    this.closeReason = null;
    this._open();
  }

  /** Sends an event. Returns true when sent or queued; false when the offline queue was full
   * (a QueueFullError, reported to onError). */
  emit(event, data) {
    return this._sendOrQueue(JSON.stringify({ event, data: data === undefined ? null : data }), event, data, null);
  }

  /** Sends a request and resolves with the reply's data; rejects with TimeoutError, ValidationError,
   * RejectedError (a reply with the request's id but another event), QueueFullError or ConnectionClosedError. A failed request is reported by its promise only, never
   * also to onError. A request that times out while queued offline leaves the queue. */
  request(event, data, options = {}) {
    const timeout = options.timeout !== undefined ? options.timeout : this._options.requestTimeout;
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      if (this._closedByUser) {
        reject(new ConnectionClosedError(this.closeCode == null ? 1000 : this.closeCode, "client closed"));
        return;
      }
      const entry = { event, resolve, reject, timer: null, queued: null };
      entry.timer = setTimeout(() => {
        this._pending.delete(id);
        if (entry.queued) this._unqueue(entry.queued);
        reject(new TimeoutError(event, timeout));
      }, timeout);
      this._pending.set(id, entry);
      const text = JSON.stringify({ event, id, data: data === undefined ? null : data });
      if (!this._sendOrQueue(text, event, data, entry)) {
        clearTimeout(entry.timer);
        this._pending.delete(id);
      }
    });
  }

  /** Calls `handler(data, message)` for every server event `event`. For a server request (with `ack`),
   * the first handler's return value (awaited) is the answer. Returns a function that removes it. */
  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  /** Removes a handler added with on(); without a handler, every handler of `event`. */
  off(event, handler) {
    const set = this._handlers.get(event);
    if (!set) return;
    if (handler === undefined) set.clear();
    else set.delete(handler);
    if (set.size === 0) this._handlers.delete(event);
  }

  /** Calls `handler(state, detail)` on every state change; detail has code/reason/attempt/delay as they apply. */
  onState(handler) {
    this._stateHandlers.add(handler);
    return () => this._stateHandlers.delete(handler);
  }

  /** Calls `handler(error)` for errors no promise reports: QueueFullError from emit(), ValidationError without a request. */
  onError(handler) {
    this._errorHandlers.add(handler);
    return () => this._errorHandlers.delete(handler);
  }

  /** How many events and requests wait for the connection. */
  get queued() {
    return this._queue.length;
  }

  /** The extensions the server accepted on the current connection, as the WebSocket reports them
   * (e.g. "permessage-deflate; server_no_context_takeover; ..."); "" when none or not open. */
  get extensions() {
    return (this._socket && this._socket.extensions) || "";
  }

  /** Closes for good (no reconnection); pending requests reject with ConnectionClosedError.
   * Throws an EventumError, and changes nothing, unless `code` is 1000 or 3000-4999 and `reason`
   * at most 123 UTF-8 bytes (what WebSocket.close accepts). */
  close(code = 1000, reason = "") {
    checkClose(code, reason);
    this._closedByUser = true;
    clearTimeout(this._timer);
    this._timer = null;
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    const socket = this._socket;
    if (socket && (socket.readyState === 0 || socket.readyState === 1)) {
      socket.close(code, reason);
    } else {
      this._setState("closed", { code, reason });
    }
    this._failPending(code, reason || "client closed");
    // Queued events are not sent now: say so, one by one (requests were rejected above).
    for (const item of this._queue) {
      if (!item.entry) this._report(new ConnectionClosedError(code, reason || "client closed"));
    }
    this._queue = [];
    this._queuedBytes = 0;
  }

  _open() {
    let socket;
    try {
      socket = this._protocols === undefined ? new this._WebSocket(this.url) : new this._WebSocket(this.url, this._protocols);
    } catch (e) {
      this._report(e instanceof Error ? e : new EventumError(String(e)));
      this._closed(1006, "cannot open", false);
      return;
    }
    this._socket = socket;
    let opened = false;
    // An attempt that neither opens nor fails: give it up. (Node 20's WebSocket reports no
    // close at all when the server drops the connection before answering the upgrade.)
    const failed = (reason) => {
      if (this._socket !== socket || opened) return;
      this._socket = null;
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      try {
        socket.close();
      } catch (e) {
        // Already closing: nothing to undo.
      }
      this._closed(1006, reason, false);
    };
    this._connectTimer = setTimeout(() => failed("connect timeout"), this._options.connectTimeout);
    socket.onopen = () => {
      if (this._socket !== socket) return;
      opened = true;
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      const reconnected = this._everOpened;
      this._everOpened = true;
      this._attempt = 0;
      this._setState("open", { reconnected });
      if (reconnected && this._onReconnect) {
        try {
          this._onReconnect(this);
        } catch (e) {
          this._report(e);
        }
      }
      this._flush();
    };
    socket.onmessage = (e) => {
      if (this._socket === socket) this._receive(e.data, socket);
    };
    socket.onclose = (e) => {
      if (this._socket !== socket) return;
      this._socket = null;
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      this._closed(e.code, e.reason, opened);
    };
    // Before the upgrade an error ends the attempt (a browser's close would follow with
    // 1006; Node 20's never comes). After it, the close that follows says how it ended.
    socket.onerror = () => failed("connection failed");
  }

  _closed(code, reason, opened) {
    this.closeCode = code;
    this.closeReason = reason;
    // Requests in flight cannot be answered on a new connection.
    this._failPending(code, reason, true);
    const o = this._options;
    if (this._closedByUser || !o.reconnect || this._attempt >= o.maxAttempts || !o.shouldReconnect({ code, reason })) {
      this._setState("closed", { code, reason, opened });
      if (!this._closedByUser) {
        // Given up: what waits in the queue will never be sent.
        this._failPending(code, reason);
        for (const item of this._queue) {
          if (!item.entry) this._report(new ConnectionClosedError(code, reason));
        }
        this._queue = [];
        this._queuedBytes = 0;
        this._closedByUser = true;
      }
      return;
    }
    const delay = backoff(this._attempt, o);
    this._attempt += 1;
    this._setState("reconnecting", { code, reason, opened, attempt: this._attempt, delay });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._closedByUser) return;
      this._setState("connecting", { attempt: this._attempt });
      this._open();
    }, delay);
  }

  _failPending(code, reason, sentOnly) {
    for (const [id, entry] of this._pending) {
      if (sentOnly && entry.queued) continue; // still waiting in the queue: it will be sent
      clearTimeout(entry.timer);
      this._pending.delete(id);
      entry.reject(new ConnectionClosedError(code, reason));
    }
  }

  _sendOrQueue(text, event, data, entry) {
    if (this._socket && this._socket.readyState === 1 && this.state === "open") {
      this._socket.send(text);
      return true;
    }
    if (this._closedByUser) {
      const error = new ConnectionClosedError(this.closeCode == null ? 1000 : this.closeCode, "client closed");
      if (entry) entry.reject(error);
      else this._report(error);
      return false;
    }
    const bytes = utf8Length(text);
    let error = null;
    if (this._queue.length >= this._options.queueLimit) {
      error = new QueueFullError(event, data, this._options.queueLimit, "count");
    } else if (this._queuedBytes + bytes > this._options.queueBytes) {
      error = new QueueFullError(event, data, this._options.queueBytes, "bytes");
    }
    if (error) {
      // Reported once: by the request's promise, or (for an event) to onError.
      if (entry) entry.reject(error);
      else this._report(error);
      return false;
    }
    const item = { text, bytes, event, data, entry };
    if (entry) entry.queued = item;
    this._queue.push(item);
    this._queuedBytes += bytes;
    return true;
  }

  /** Takes a queued item out of the queue (a request that timed out while offline). */
  _unqueue(item) {
    const index = this._queue.indexOf(item);
    if (index >= 0) {
      this._queue.splice(index, 1);
      this._queuedBytes -= item.bytes;
    }
    if (item.entry) item.entry.queued = null;
  }

  _flush() {
    const queue = this._queue;
    this._queue = [];
    this._queuedBytes = 0;
    for (const item of queue) {
      if (item.entry) item.entry.queued = null;
      this._socket.send(item.text);
    }
  }

  _receive(text, socket) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) return;
    const event = message.event;
    if (message.id !== undefined && this._pending.has(message.id) && typeof event === "string") {
      // The reply to a request settles it: its own event resolves it; the validation error or
      // any other event (a rejection by the server's middleware) rejects it.
      const entry = this._pending.get(message.id);
      this._pending.delete(message.id);
      clearTimeout(entry.timer);
      if (event === entry.event) entry.resolve(message.data === undefined ? null : message.data);
      else if (event === "validation_error") entry.reject(new ValidationError(message));
      else entry.reject(new RejectedError(message));
      return;
    }
    if (typeof event !== "string") return;
    const data = "data" in message ? message.data : message;
    if (event === "validation_error") {
      if (!this._handlers.has(event)) this._report(new ValidationError(message));
    }
    const handlers = [...(this._handlers.get(event) || [])];
    if (typeof message.ack === "number") {
      this._answer(socket, message.ack, handlers, data, message);
      return;
    }
    for (const handler of handlers) {
      try {
        handler(data, message);
      } catch (e) {
        this._report(e);
      }
    }
  }

  /** Answers server request `ack` on `socket`, the connection it came on: ack numbers are
   * per connection, so after a reconnection the answer is dropped, never sent on the new one. */
  async _answer(socket, ack, handlers, data, message) {
    if (handlers.length === 0) return; // no answer: the server's timeout reports it
    let answer = null;
    for (const [i, handler] of handlers.entries()) {
      try {
        const value = await handler(data, message);
        if (i === 0) answer = value === undefined ? null : value;
      } catch (e) {
        this._report(e);
      }
    }
    const text = JSON.stringify({ ack, data: answer });
    if (socket.readyState === 1) socket.send(text);
  }

  _setState(state, detail) {
    if (this.state === state && state !== "reconnecting") return;
    this.state = state;
    for (const handler of [...this._stateHandlers]) {
      try {
        handler(state, detail || {});
      } catch (e) {
        this._report(e);
      }
    }
  }

  _report(error) {
    if (this._errorHandlers.size === 0) {
      if (typeof console !== "undefined") console.warn("eventum:", error);
      return;
    }
    for (const handler of [...this._errorHandlers]) {
      try {
        handler(error);
      } catch (e) {
        if (typeof console !== "undefined") console.error("eventum: onError handler threw", e);
      }
    }
  }
}
