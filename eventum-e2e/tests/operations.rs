//! What an operator relies on, on both adapters: the health check answers 200 while the
//! server accepts connections and 503 as soon as shutdown begins; open connections are
//! served through the drain period, then closed with 1001; new upgrades get 503.

use std::time::{Duration, Instant};

use eventum_e2e::{generous, http_get, Adapter, Client, Options};
use serde_json::json;

fn health_flips_to_503_when_shutdown_starts(adapter: Adapter) {
    let drain = Duration::from_secs(2);
    let options = Options {
        drain_period: drain,
        ..Options::default()
    };
    let server = adapter.start_with(eventum_demo::chat_app(), options);
    let addr = server.addr();
    let (status, _, body) = http_get(addr, "/healthz");
    assert_eq!(
        (status, body.as_str()),
        (200, "ok"),
        "{adapter:?}: healthy while serving"
    );

    let mut member = server.client("/ws");
    member.send_json(&json!({"event": "join", "room": "ops", "name": "ada"}));
    assert_eq!(member.recv_json()["event"], "joined");

    let started = Instant::now();
    let stopping = std::thread::spawn(move || server.shutdown());
    // The very next probe sees the drain: the flag is set before shutdown waits.
    let mut status = 0;
    while started.elapsed() < drain / 2 {
        status = http_get(addr, "/healthz").0;
        if status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status, 503, "{adapter:?}: /healthz answers 503 once shutdown began");
    match Client::connect(addr, "/ws") {
        Err(refused) => assert_eq!(refused.status, 503, "{adapter:?}: a new upgrade is refused with 503"),
        Ok(_) => panic!("{adapter:?}: a new upgrade was accepted while draining"),
    }

    // The open connection is still served while the node drains...
    member.send_json(&json!({"event": "message", "room": "ops", "text": "still here"}));
    let said = member.recv_json();
    assert_eq!(
        (said["event"].as_str(), said["data"]["text"].as_str()),
        (Some("message"), Some("still here"))
    );
    assert!(
        started.elapsed() < drain,
        "{adapter:?}: the check ran inside the drain period"
    );
    // ...and closed with 1001 once the drain period is over.
    let (code, _) = member.expect_close();
    assert_eq!(code, 1001, "{adapter:?}: closed as the server goes away");
    assert!(
        started.elapsed() >= drain,
        "{adapter:?}: not closed before the drain period ended"
    );
    stopping.join().expect("shutdown finished");
    assert!(started.elapsed() < drain + generous(Duration::from_secs(5)));
}

#[test]
fn health_flips_to_503_when_shutdown_starts_smol() {
    health_flips_to_503_when_shutdown_starts(Adapter::Smol);
}

#[test]
fn health_flips_to_503_when_shutdown_starts_std() {
    health_flips_to_503_when_shutdown_starts(Adapter::Std);
}
