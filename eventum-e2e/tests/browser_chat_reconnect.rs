//! The chat page over `eventum.js` survives a server restart: it shows that it is
//! reconnecting, reconnects by itself when the server is back on the same address, shows
//! that, and its room is joined again (a message sent to the room after the restart
//! reaches it). Through each adapter, in headless Chromium (a loud skip without Chromium,
//! a failure with `EVENTUM_BROWSER_TEST=required`).

use std::time::Duration;

use eventum_e2e::browser::{self, Chromium, Page};
use eventum_e2e::Adapter;

const PAGE_WAIT: Duration = Duration::from_secs(15);

fn text_of(page: &mut Page, id: &str) -> String {
    page.eval(&format!(
        "document.getElementById({}).textContent",
        browser::js_string(id)
    ))
    .ok()
    .and_then(|v| v.as_str().map(str::to_owned))
    .unwrap_or_default()
}

fn wait(page: &mut Page, browser: &Chromium, condition: &str) {
    if !page.wait_for(condition, PAGE_WAIT) {
        panic!(
            "never true within {PAGE_WAIT:?}: {condition}\nstatus {:?}, retry {:?}, log {:?}\nbrowser log:\n{}",
            text_of(page, "status"),
            text_of(page, "retry"),
            text_of(page, "log"),
            browser.log()
        );
    }
}

fn log_contains(text: &str) -> String {
    format!(
        "document.getElementById('log').textContent.includes({})",
        browser::js_string(text)
    )
}

fn chat_page_reconnects(adapter: Adapter) {
    let test = format!("chat_page_reconnects({adapter:?})");
    let server = adapter.start(eventum_demo::chat_app());
    let addr = server.addr();
    let Some(browser) = browser::chromium_or_skip(&test) else {
        return;
    };
    let mut ada = browser.open_page(&server.http_url("/")).expect("open a tab");
    wait(
        &mut ada,
        &browser,
        "document.body && document.body.dataset.connected === 'yes'",
    );
    browser::join_chat(&mut ada, "ada", "lobby");
    wait(&mut ada, &browser, &log_contains("ada joined lobby"));

    server.shutdown();
    wait(&mut ada, &browser, "document.body.dataset.connected === 'no'");
    wait(
        &mut ada,
        &browser,
        "document.getElementById('retry').textContent.startsWith('reconnecting in ')",
    );
    assert_eq!(text_of(&mut ada, "status"), "disconnected (1001)");

    let server = adapter
        .start_at(eventum_demo::chat_app(), &addr.to_string())
        .unwrap_or_else(|e| panic!("cannot restart on {addr}: {e}"));
    wait(&mut ada, &browser, "document.body.dataset.connected === 'yes'");
    assert_eq!(text_of(&mut ada, "retry"), "(reconnected)");
    // The hook joined the room again: the new server broadcasts ada's join, and a
    // newcomer's message reaches her.
    wait(
        &mut ada,
        &browser,
        "document.getElementById('log').textContent.split('ada joined lobby').length === 3",
    );
    let mut bob = browser.open_page(&server.http_url("/")).expect("open a tab");
    wait(
        &mut bob,
        &browser,
        "document.body && document.body.dataset.connected === 'yes'",
    );
    browser::join_chat(&mut bob, "bob", "lobby");
    let say = "document.getElementById('text').value = 'after the restart'; \
               document.getElementById('send').click(); true";
    wait(&mut bob, &browser, &log_contains("bob joined lobby"));
    bob.eval(say).expect("send");
    wait(&mut ada, &browser, &log_contains("[lobby] bob: after the restart"));
    drop((ada, bob));
    drop(browser);
    server.shutdown();
}

#[test]
fn chat_page_reconnects_smol() {
    chat_page_reconnects(Adapter::Smol);
}

#[test]
fn chat_page_reconnects_std_threads() {
    chat_page_reconnects(Adapter::Std);
}
