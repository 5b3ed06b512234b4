//! The chat page in a real browser: headless Chromium opens it from each adapter, two tabs
//! join a room, one sends a message, the other shows it.
//!
//! Without Chromium the tests print a loud skip message and pass, unless
//! `EVENTUM_BROWSER_TEST=required` (as CI sets it), where they fail.

use std::time::Duration;

use eventum_e2e::browser::{self, Chromium, Page};
use eventum_e2e::tls::TestCertificate;
use eventum_e2e::{wait_until, Adapter, Options, TestServer};

/// Waits for the page's socket and the DOM.
const PAGE_WAIT: Duration = Duration::from_secs(10);

fn log_contains(text: &str) -> String {
    format!(
        "document.getElementById('log').textContent.includes({})",
        browser::js_string(text)
    )
}

fn log_text(page: &mut Page) -> String {
    page.eval("document.getElementById('log').textContent")
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "<unreadable>".to_owned())
}

fn expect_log(page: &mut Page, who: &str, text: &str, browser: &Chromium) {
    if !page.wait_for(&log_contains(text), PAGE_WAIT) {
        panic!(
            "{who}'s #log never showed {text:?} within {PAGE_WAIT:?}; it shows {:?}\nbrowser log:\n{}",
            log_text(page),
            browser.log()
        );
    }
}

fn open_connected(browser: &Chromium, server: &TestServer, who: &str) -> Page {
    let mut page = browser.open_page(&server.http_url("/")).expect("open a tab");
    if !page.wait_for("document.body && document.body.dataset.connected === 'yes'", PAGE_WAIT) {
        panic!(
            "{who}'s page never connected (status {:?}); browser log:\n{}",
            page.eval("document.getElementById('status') && document.getElementById('status').textContent"),
            browser.log()
        );
    }
    page
}

fn say(page: &mut Page, text: &str) {
    let script = format!(
        "document.getElementById('text').value = {}; document.getElementById('send').click(); true",
        browser::js_string(text)
    );
    page.eval(&script).expect("send");
}

/// How the page is served.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scheme {
    Http,
    /// `https://` and `wss://`, with a certificate made for the run.
    Https,
}

fn chat_in_two_tabs(adapter: Adapter, scheme: Scheme) {
    let test = format!("chat_in_two_tabs({adapter:?}, {scheme:?})");
    let options = Options {
        tls: (scheme == Scheme::Https).then(|| TestCertificate::new().server_config()),
        ..Options::default()
    };
    // The server is dropped (and shut down) after the browser: declared first.
    let server = adapter.start_with(eventum_demo::chat_app(), options);
    let Some(browser) = browser::chromium_or_skip(&test) else {
        return;
    };

    let mut ada = open_connected(&browser, &server, "ada");
    let mut bob = open_connected(&browser, &server, "bob");
    let page_scheme = ada.eval("location.protocol").expect("eval");
    let expected = if scheme == Scheme::Https { "https:" } else { "http:" };
    assert_eq!(page_scheme, serde_json::json!(expected), "{test}: the page's scheme");
    // (No exact connection count: Chromium also opens speculative, idle connections.)
    // Chromium offered permessage-deflate and accepted the server's answer (it fails the
    // connection on an answer it does not like): every message below goes compressed.
    let extensions = ada.eval("document.body.dataset.extensions").expect("eval");
    assert_eq!(
        extensions,
        serde_json::json!(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"
        )
    );

    browser::join_chat(&mut ada, "ada", "e2e-room");
    expect_log(&mut ada, "ada", "ada joined e2e-room", &browser);
    browser::join_chat(&mut bob, "bob", "e2e-room");
    expect_log(&mut bob, "bob", "bob joined e2e-room", &browser);
    expect_log(&mut ada, "ada", "bob joined e2e-room", &browser);

    say(&mut ada, "hello from ada <b>not bold</b>");
    expect_log(
        &mut bob,
        "bob",
        "[e2e-room] ada: hello from ada <b>not bold</b>",
        &browser,
    );
    // Text is shown as text, never parsed as HTML.
    assert_eq!(
        bob.eval("document.querySelectorAll('#log b').length").expect("eval"),
        serde_json::json!(0)
    );
    say(&mut bob, "hi ada");
    expect_log(&mut ada, "ada", "[e2e-room] bob: hi ada", &browser);
    // Long enough for the server to compress its broadcast (threshold 128 bytes).
    let long = "a longer line that the server compresses before it reaches the other tab ".repeat(4);
    say(&mut bob, &long);
    expect_log(&mut ada, "ada", &format!("[e2e-room] bob: {long}"), &browser);

    // Closing bob's tab tells ada that bob left.
    bob.close().expect("close bob's tab");
    expect_log(&mut ada, "ada", "bob left e2e-room", &browser);

    // Graceful shutdown: the page sees the 1001 close.
    server.shutdown();
    if !ada.wait_for("document.body.dataset.connected === 'no'", PAGE_WAIT) {
        panic!("ada's page did not notice the shutdown");
    }
    let status = ada.eval("document.getElementById('status').textContent").expect("eval");
    assert_eq!(status, serde_json::json!("disconnected (1001)"));

    let pid = browser.pid();
    drop(ada);
    drop(browser);
    assert!(
        wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "browser process {pid} still there after the guard dropped"
    );
}

#[test]
fn chat_in_two_tabs_smol() {
    chat_in_two_tabs(Adapter::Smol, Scheme::Http);
}

#[test]
fn chat_in_two_tabs_std_threads() {
    chat_in_two_tabs(Adapter::Std, Scheme::Http);
}

// Over https the page can only open wss:// (Chromium blocks ws:// from a secure page as
// mixed content), so a connected page means the chat ran over TLS end to end.
#[test]
fn chat_over_https_and_wss_smol() {
    chat_in_two_tabs(Adapter::Smol, Scheme::Https);
}

#[test]
fn chat_over_https_and_wss_std_threads() {
    chat_in_two_tabs(Adapter::Std, Scheme::Https);
}

/// Two chat nodes joined over a real redis-server: a tab on the smol node and a tab on
/// the std node chat in one room.
#[test]
fn chat_across_two_nodes_over_redis() {
    let test = "chat_across_two_nodes_over_redis";
    let Some(redis) = eventum_e2e::redis::redis_or_skip(test) else {
        return;
    };
    let node = |adapter: Adapter| {
        let backplane = eventum_redis::Redis::connect(&redis.url()).expect("the backplane connects");
        let options = Options {
            backplane: Some(backplane.clone()),
            ..Options::default()
        };
        (adapter.start_with(eventum_demo::chat_app(), options), backplane)
    };
    let (node_a, redis_a) = node(Adapter::Smol);
    let (node_b, redis_b) = node(Adapter::Std);
    let Some(browser) = browser::chromium_or_skip(test) else {
        return;
    };
    let mut ada = open_connected(&browser, &node_a, "ada");
    let mut bob = open_connected(&browser, &node_b, "bob");
    browser::join_chat(&mut ada, "ada", "cluster-room");
    expect_log(&mut ada, "ada", "ada joined cluster-room", &browser);
    browser::join_chat(&mut bob, "bob", "cluster-room");
    expect_log(&mut bob, "bob", "bob joined cluster-room", &browser);
    // bob's join was broadcast before node A necessarily subscribed: wait for both
    // subscriptions, then talk.
    assert!(wait_until(Duration::from_secs(5), || {
        redis_a.is_subscribed("cluster-room") && redis_b.is_subscribed("cluster-room")
    }));
    say(&mut ada, "hello from node A");
    expect_log(&mut bob, "bob", "[cluster-room] ada: hello from node A", &browser);
    say(&mut bob, "hello from node B");
    expect_log(&mut ada, "ada", "[cluster-room] bob: hello from node B", &browser);
    drop((ada, bob, browser));
    node_a.shutdown();
    node_b.shutdown();
}
