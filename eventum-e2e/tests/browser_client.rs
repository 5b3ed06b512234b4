//! `eventum.js` in headless Chromium against a real server, through each adapter: emit and
//! on, requests with a reply, a validation error and a timeout, answering the server's
//! requests, reconnection after the server is stopped and started again on the same
//! address (the room re-joined by the hook), the close code, and the offline queue's bound.
//!
//! As for the chat page's browser test, a missing Chromium is a loud skip, and a failure
//! with `EVENTUM_BROWSER_TEST=required` (as `scripts/test.sh` and CI set it).

use std::time::Duration;

use eventum_e2e::browser::{self, Chromium, Page};
use eventum_e2e::js::client_fixture_app;
use eventum_e2e::Adapter;
use serde_json::{json, Value};

const PAGE_WAIT: Duration = Duration::from_secs(10);

/// The client under test, set up in the page as `window.c`, with what it saw in `window.t`.
const SETUP: &str = r#"(async () => {
  const m = await import("/eventum.js");
  window.m = m;
  const t = (window.t = { states: [], errors: [], echoes: [], joined: [], answered: [] });
  const c = m.connect("/ws", {
    reconnect: { initialDelay: 100, maxDelay: 400 },
    queueLimit: 3,
    onReconnect: (client) => client.emit("join", { room: "r1" }),
    onState: (state, d) => t.states.push({ state, code: d.code ?? null, opened: d.opened ?? null, reconnected: d.reconnected ?? null }),
    onError: (e) => t.errors.push({ name: e.name, data: e.data ?? null }),
  });
  window.c = c;
  c.on("echo", (d) => t.echoes.push(d));
  c.on("joined", (d) => t.joined.push(d));
  c.on("answered", (d) => t.answered.push(d));
  c.on("question", async ({ n }) => n * 2);
  return true;
})()"#;

fn eval(page: &mut Page, browser: &Chromium, script: &str) -> Value {
    page.eval(script)
        .unwrap_or_else(|e| panic!("{script}: {e}\nbrowser log:\n{}", browser.log()))
}

fn wait(page: &mut Page, browser: &Chromium, condition: &str) {
    if !page.wait_for(condition, PAGE_WAIT) {
        let seen = page.eval("JSON.stringify(window.t)").unwrap_or(Value::Null);
        panic!(
            "never true within {PAGE_WAIT:?}: {condition}\nthe client saw: {seen}\nbrowser log:\n{}",
            browser.log()
        );
    }
}

fn client_in_the_browser(adapter: Adapter) {
    let test = format!("client_in_the_browser({adapter:?})");
    let server = adapter.start(client_fixture_app());
    let addr = server.addr();
    let Some(browser) = browser::chromium_or_skip(&test) else {
        return;
    };
    let mut page = browser.open_page(&server.http_url("/")).expect("open a tab");
    // The tab starts at about:blank, where "/eventum.js" cannot resolve: wait for the page.
    wait(
        &mut page,
        &browser,
        "document.title === 'eventum.js test' && document.readyState === 'complete'",
    );
    assert_eq!(eval(&mut page, &browser, SETUP), json!(true));
    wait(&mut page, &browser, "window.c.state === 'open'");

    // emit / on.
    eval(&mut page, &browser, "c.emit('echo', {x: 1, s: 'é'})");
    wait(&mut page, &browser, "t.echoes.length === 1");
    assert_eq!(eval(&mut page, &browser, "t.echoes[0]"), json!({"x": 1, "s": "é"}));

    // Requests: the reply, the validation error, the timeout.
    assert_eq!(eval(&mut page, &browser, "c.request('add', {a: 2, b: 3})"), json!(5));
    let rejected = "c.request('add', {a: 'two', b: 3}).then(() => 'resolved', (e) => \
                    [e.name, e instanceof m.ValidationError, e.message])";
    assert_eq!(
        eval(&mut page, &browser, rejected),
        json!(["ValidationError", true, "Invalid data received"])
    );
    let timed_out = "c.request('slow', {}, {timeout: 300}).then(() => 'resolved', (e) => \
                     [e.name, e instanceof m.TimeoutError, e.timeout])";
    assert_eq!(eval(&mut page, &browser, timed_out), json!(["TimeoutError", true, 300]));

    // The server asks; the handler's value is the answer.
    eval(&mut page, &browser, "c.emit('ask', {n: 21})");
    wait(&mut page, &browser, "t.answered.length === 1");
    assert_eq!(eval(&mut page, &browser, "t.answered[0]"), json!(42));

    // Join a room, then the server goes away: the close code is surfaced.
    eval(&mut page, &browser, "c.emit('join', {room: 'r1'})");
    wait(&mut page, &browser, "t.joined.length === 1");
    server.shutdown();
    wait(&mut page, &browser, "c.state !== 'open'");
    let first_close = eval(&mut page, &browser, "t.states.find((s) => s.state === 'reconnecting')");
    assert_eq!(first_close["code"], json!(1001), "{first_close}");
    assert_eq!(first_close["opened"], json!(true), "{first_close}");

    // Offline: the queue takes three, refuses and reports the rest.
    assert_eq!(
        eval(&mut page, &browser, "[0, 1, 2, 3, 4].map((i) => c.emit('echo', {i}))"),
        json!([true, true, true, false, false])
    );
    assert_eq!(eval(&mut page, &browser, "c.queued"), json!(3));
    assert_eq!(
        eval(&mut page, &browser, "t.errors"),
        json!([{"name": "QueueFullError", "data": {"i": 3}}, {"name": "QueueFullError", "data": {"i": 4}}])
    );

    // The server comes back on the same address: the client reconnects by itself, the hook
    // re-joins the room, and the queued events are delivered after it.
    let server = adapter
        .start_at(client_fixture_app(), &addr.to_string())
        .unwrap_or_else(|e| panic!("cannot restart on {addr}: {e}"));
    wait(&mut page, &browser, "c.state === 'open' && t.echoes.length === 4");
    assert_eq!(
        eval(&mut page, &browser, "t.echoes.slice(1)"),
        json!([{"i": 0}, {"i": 1}, {"i": 2}])
    );
    assert_eq!(
        eval(
            &mut page,
            &browser,
            "t.states.some((s) => s.state === 'open' && s.reconnected)"
        ),
        json!(true)
    );
    assert_eq!(eval(&mut page, &browser, "c.request('rooms', {})"), json!(["r1"]));
    wait(&mut page, &browser, "t.joined.length === 2");

    eval(&mut page, &browser, "c.close()");
    wait(&mut page, &browser, "c.state === 'closed'");
    drop(page);
    drop(browser);
    server.shutdown();
}

#[test]
fn client_in_the_browser_smol() {
    client_in_the_browser(Adapter::Smol);
}

#[test]
fn client_in_the_browser_std_threads() {
    client_in_the_browser(Adapter::Std);
}
