//! eventum's end-to-end suite: every row of the feature table over real loopback TCP, run
//! against both adapters (`smol::*` and `std_threads::*` hold the same tests).

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use eventum_core::app::{AckError, App, Route};
use eventum_core::handshake::HttpResponse;
use eventum_core::{CloseCause, CloseCode, Config, Keepalive, SharedFrame};
use eventum_e2e::tungstenite::Message;
use eventum_e2e::{
    for_both_adapters, generous, wait_until, Adapter, Client, HttpError, Options, RawClient, RecvError, TestServer,
    WAIT,
};
use serde::Deserialize;
use serde_json::{json, Value};

for_both_adapters!(
    startup_hook_runs_once_at_listen,
    routes_accept_known_paths_and_refuse_others,
    required_headers_are_enforced,
    subprotocol_default_takes_the_first_offered,
    subprotocol_custom_chooser_and_extra_headers,
    refusal_with_a_custom_http_response,
    events_are_dispatched_by_name,
    validation_error_reply_keeps_the_connection_open,
    reply_carries_the_event_id,
    server_ack_request_gets_the_client_ack,
    server_ack_request_times_out,
    flags_from_middleware_reach_event_handlers,
    peer_address_reaches_the_app,
    rooms_and_broadcasts_reach_exactly_the_members,
    broadcast_all_reaches_every_connection,
    send_by_id_from_another_thread_and_from_a_handler,
    close_by_handle_from_another_thread,
    server_close_with_1000_and_4000,
    client_close_is_echoed,
    disconnect_hook_runs_once_on_client_close,
    disconnect_hook_runs_once_on_abrupt_drop,
    max_connections_answers_503_beyond_the_limit,
    echo_text_and_binary_including_2_mib,
    chat_serves_its_page,
    chat_flow,
    graceful_shutdown_closes_with_1001_and_runs_the_hook_once,
    shutdown_is_bounded_with_a_client_that_ignores_the_close,
    slow_reader_does_not_stall_other_clients,
    keepalive_ping_arrives_and_answered_pings_keep_the_connection,
    keepalive_unanswered_is_closed_with_1011,
    handler_panic_closes_with_1011_and_others_continue,
    client_ping_gets_a_pong,
    message_over_the_limit_closes_with_1009,
    protocol_violations_close_with_1002_and_1007,
    frame_pipelined_with_the_upgrade_request_is_handled,
    handshake_timeout_answers_408_and_closes,
    close_timeout_drops_a_client_that_never_answers_the_close,
    many_connections_come_and_go_without_leaks,
    concurrent_broadcasts_all_arrive_in_order,
    handle_sends_to_a_non_reading_client_never_leave_a_silent_gap,
    shutdown_with_a_connection_still_in_its_handshake_is_prompt,
    shutdown_without_connections_frees_the_port,
    a_flooding_client_starves_neither_others_nor_shutdown,
);

/// Counts what the app's hooks saw.
#[derive(Default)]
struct Counters {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
    disconnects: AtomicUsize,
    /// Close code and cause of every disconnect, in order.
    closed: Mutex<Vec<(u16, CloseCause)>>,
    /// The close reason of every disconnect, in order.
    reasons: Mutex<Vec<String>>,
    ack_disconnected: AtomicUsize,
}

impl Counters {
    fn disconnects(&self) -> usize {
        self.disconnects.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until exactly `n` disconnects were counted, then checks that no
    /// more show up shortly after.
    fn expect_disconnects(&self, n: usize) {
        assert!(
            wait_until(WAIT, || self.disconnects() >= n),
            "expected {n} disconnects, saw {}",
            self.disconnects()
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            self.disconnects(),
            n,
            "the disconnect hook ran more often than once per connection"
        );
    }
}

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Deserialize)]
struct RoomArg {
    room: String,
}

#[derive(Deserialize)]
struct Shout {
    room: String,
    text: String,
}

#[derive(Deserialize)]
struct Dm {
    to: u64,
    text: String,
}

#[derive(Deserialize)]
struct CloseMe {
    code: u16,
    reason: String,
}

#[derive(Deserialize)]
struct Ask {
    timeout_ms: u64,
}

#[derive(Deserialize)]
struct Blast {
    room: String,
    count: usize,
    size: usize,
}

fn default_config() -> Config {
    Config::builder()
        .close_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config")
}

/// The app that exercises the feature table.
fn feature_app(counters: &Arc<Counters>, config: Config) -> App {
    let (c1, c2, c3, c4) = (
        Arc::clone(counters),
        Arc::clone(counters),
        Arc::clone(counters),
        Arc::clone(counters),
    );
    App::builder()
        .config(config)
        .middleware(|upgrade, next| {
            if upgrade.query_param("deny").is_some() {
                return Err(HttpResponse::text(401, "Unauthorized").header("WWW-Authenticate", "Token"));
            }
            if let Some(user) = upgrade.query_param("user").map(str::to_owned) {
                upgrade.flags_mut().add("user", user);
            }
            next.run(upgrade)
        })
        .route(Route::new("/ws"))
        .route(Route::new("/secure").require_header("x-token"))
        .route(Route::new("/proto").on_upgrade(|upgrade| {
            upgrade.add_header("X-Served-By", "eventum");
            upgrade.choose_subprotocol(|offered| offered.iter().find(|p| *p == "chat.v2").cloned());
            Ok(())
        }))
        .route(Route::new("/private/{room}").on_upgrade(|upgrade| {
            if upgrade.param("room") == Some("secret") {
                return Err(HttpResponse::text(403, "Forbidden room").header("X-Reason", "secret room"));
            }
            Ok(())
        }))
        .on("ping", |ctx, event| {
            let data = event.data().cloned().unwrap_or(Value::Null);
            let _ = ctx.send_event("pong", &data);
        })
        .on_typed("add", |ctx, add: Add| {
            let sum = add.a + add.b;
            if ctx.event_id().is_some() {
                let _ = ctx.reply(&sum);
            } else {
                let _ = ctx.send_event("sum", &sum);
            }
        })
        .on("whoami", |ctx, _| {
            let who = json!({
                "id": ctx.id().0,
                "user": ctx.flags().get("user"),
                "subprotocol": ctx.subprotocol(),
                "room": ctx.param("room"),
                "peer": ctx.peer_addr().map(|p| p.to_string()),
            });
            let _ = ctx.send_event("whoami", &who);
        })
        .on_typed("ask", move |ctx, ask: Ask| {
            let counters = Arc::clone(&c1);
            let _ = ctx.request_ack(
                "question",
                &json!({"q": "ready?"}),
                Duration::from_millis(ask.timeout_ms),
                move |ctx, result| match result {
                    Ok(data) => {
                        let _ = ctx.send_event("answered", &data);
                    }
                    Err(AckError::Timeout) => {
                        let _ = ctx.send_event("ack_timeout", &Value::Null);
                    }
                    Err(_) => {
                        counters.ack_disconnected.fetch_add(1, Ordering::SeqCst);
                    }
                },
            );
        })
        .on_typed("join", |ctx, arg: RoomArg| {
            ctx.join(&arg.room);
            let _ = ctx.send_event("joined", &arg.room);
        })
        .on_typed("leave", |ctx, arg: RoomArg| {
            ctx.leave(&arg.room);
            let _ = ctx.send_event("left", &arg.room);
        })
        .on_typed("shout", |ctx, shout: Shout| {
            let frame = SharedFrame::event("shout", &json!({"room": shout.room, "text": shout.text})).unwrap();
            ctx.broadcast(&shout.room, frame);
        })
        .on_typed("shout_all", |ctx, shout: RoomArg| {
            ctx.broadcast_all(SharedFrame::event("everyone", &shout.room).unwrap());
        })
        .on_typed("dm", |ctx, dm: Dm| {
            let frame = SharedFrame::event("dm", &json!({"from": ctx.id().0, "text": dm.text})).unwrap();
            ctx.send_to(eventum_core::app::ConnectionId(dm.to), frame);
        })
        .on_typed("close_me", |ctx, close: CloseMe| {
            ctx.close(CloseCode(close.code), &close.reason)
                .expect("valid close code");
        })
        .on_typed("blast", |ctx, blast: Blast| {
            let pad = "x".repeat(blast.size);
            for i in 0..blast.count {
                let frame = SharedFrame::event("blast", &json!({"i": i, "pad": pad})).unwrap();
                ctx.broadcast(&blast.room, frame);
            }
        })
        .on("panic", |_, _| panic!("handler panics on purpose"))
        .on_disconnect(move |_, closed| {
            c2.disconnects.fetch_add(1, Ordering::SeqCst);
            c2.closed.lock().unwrap().push((closed.code.0, closed.cause.clone()));
            c2.reasons.lock().unwrap().push(closed.reason.clone());
        })
        .on_startup(move || {
            c3.startups.fetch_add(1, Ordering::SeqCst);
        })
        .on_shutdown(move || {
            c4.shutdowns.fetch_add(1, Ordering::SeqCst);
        })
        .build()
}

fn start(adapter: Adapter) -> (TestServer, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let server = adapter.start(feature_app(&counters, default_config()));
    (server, counters)
}

/// Checks the connection is alive and in order: a ping event comes back as a pong.
fn assert_alive(client: &mut Client, tag: &str) {
    client.send_json(&json!({"event": "ping", "data": tag}));
    assert_eq!(client.recv_json(), json!({"event": "pong", "data": tag}));
}

fn whoami(client: &mut Client) -> Value {
    client.send_json(&json!({"event": "whoami"}));
    let answer = client.recv_json();
    assert_eq!(answer["event"], "whoami", "{answer}");
    answer["data"].clone()
}

fn refused(result: Result<Client, HttpError>) -> HttpError {
    match result {
        Ok(client) => panic!("expected a refusal, got a 101 with {:?}", client.response_headers()),
        Err(e) => e,
    }
}

fn startup_hook_runs_once_at_listen(adapter: Adapter) {
    let (server, counters) = start(adapter);
    assert_eq!(counters.startups.load(Ordering::SeqCst), 1);
    assert_eq!(counters.shutdowns.load(Ordering::SeqCst), 0);
    server.shutdown();
    assert_eq!(counters.startups.load(Ordering::SeqCst), 1);
    assert_eq!(counters.shutdowns.load(Ordering::SeqCst), 1);
}

fn routes_accept_known_paths_and_refuse_others(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = server.client("/ws");
    assert_alive(&mut client, "routes");

    let missing = refused(Client::connect(server.addr(), "/nope"));
    assert_eq!(missing.status, 404, "{missing:?}");
    let trailing = refused(Client::connect(server.addr(), "/ws/"));
    assert_eq!(trailing.status, 404, "{trailing:?}");

    let mut with_param = server.client("/private/lobby?user=x");
    assert_eq!(whoami(&mut with_param)["room"], "lobby");
    assert_eq!(client.close(1000, ""), (1000, String::new()));
    drop(with_param);
    server.shutdown();
}

fn required_headers_are_enforced(adapter: Adapter) {
    let (server, _) = start(adapter);
    let missing = refused(Client::connect(server.addr(), "/secure"));
    assert_eq!(missing.status, 400, "{missing:?}");
    assert_eq!(missing.body, "Missing required headers");

    let mut client = Client::connect_with(server.addr(), "/secure", &[("X-Token", "t0ken")], &[]).expect("101");
    assert_alive(&mut client, "secure");
    drop(client);
    server.shutdown();
}

fn subprotocol_default_takes_the_first_offered(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = Client::connect_with(server.addr(), "/ws", &[], &["first.v1", "second.v1"]).expect("101");
    assert_eq!(client.response_header("sec-websocket-protocol"), Some("first.v1"));
    assert_eq!(whoami(&mut client)["subprotocol"], "first.v1");

    let mut plain = server.client("/ws");
    assert_eq!(plain.response_header("sec-websocket-protocol"), None);
    assert_eq!(whoami(&mut plain)["subprotocol"], Value::Null);
    drop((client, plain));
    server.shutdown();
}

fn subprotocol_custom_chooser_and_extra_headers(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = Client::connect_with(server.addr(), "/proto", &[], &["chat.v1", "chat.v2"]).expect("101");
    assert_eq!(client.response_header("sec-websocket-protocol"), Some("chat.v2"));
    assert_eq!(client.response_header("x-served-by"), Some("eventum"));
    assert_eq!(whoami(&mut client)["subprotocol"], "chat.v2");

    let mut other = Client::connect_with(server.addr(), "/proto", &[], &["other"]).expect("101");
    assert_eq!(other.response_header("sec-websocket-protocol"), None);
    assert_alive(&mut other, "no subprotocol");
    drop((client, other));
    server.shutdown();
}

fn refusal_with_a_custom_http_response(adapter: Adapter) {
    let (server, _) = start(adapter);
    let forbidden = refused(Client::connect(server.addr(), "/private/secret"));
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.body, "Forbidden room");
    assert_eq!(forbidden.header("x-reason"), Some("secret room"));

    let unauthorized = refused(Client::connect(server.addr(), "/ws?deny=1"));
    assert_eq!(unauthorized.status, 401, "{unauthorized:?}");
    assert_eq!(unauthorized.body, "Unauthorized");
    assert_eq!(unauthorized.header("www-authenticate"), Some("Token"));

    // Refused requests are not counted as connections for long.
    assert!(server.wait_connections(0), "connections: {}", server.connections());
    server.shutdown();
}

fn events_are_dispatched_by_name(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = server.client("/ws");
    client.send_json(&json!({"event": "ping", "data": {"n": [1, 2, 3]}}));
    assert_eq!(client.recv_json(), json!({"event": "pong", "data": {"n": [1, 2, 3]}}));
    client.send_json(&json!({"event": "add", "a": 2, "b": 40}));
    assert_eq!(client.recv_json(), json!({"event": "sum", "data": 42}));
    // Unknown events, non-events and non-JSON are ignored; the next event still works.
    client.send_json(&json!({"event": "no-such-event"}));
    client.send_json(&json!({"no": "event"}));
    client.send_text("not json at all");
    assert_alive(&mut client, "after noise");
    drop(client);
    server.shutdown();
}

fn validation_error_reply_keeps_the_connection_open(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = server.client("/ws");
    client.send_json(&json!({"event": "add", "a": "two", "b": 3}));
    assert_eq!(
        client.recv_json(),
        json!({"event": "validation_error", "message": "Invalid data received"})
    );
    client.send_json(&json!({"event": "add", "a": 1}));
    assert_eq!(client.recv_json()["event"], "validation_error");
    assert_alive(&mut client, "still open");
    drop(client);
    server.shutdown();
}

fn reply_carries_the_event_id(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = server.client("/ws");
    client.send_json(&json!({"event": "add", "id": "req-1", "a": 1, "b": 2}));
    assert_eq!(client.recv_json(), json!({"event": "add", "id": "req-1", "data": 3}));
    client.send_json(&json!({"event": "add", "id": 77, "a": -5, "b": 2}));
    assert_eq!(client.recv_json(), json!({"event": "add", "id": 77, "data": -3}));
    drop(client);
    server.shutdown();
}

fn server_ack_request_gets_the_client_ack(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut client = server.client("/ws");
    client.send_json(&json!({"event": "ask", "timeout_ms": 3000}));
    let question = client.recv_json();
    assert_eq!(question["event"], "question", "{question}");
    assert_eq!(question["data"], json!({"q": "ready?"}));
    let ack = question["ack"].as_u64().expect("numeric ack id");
    client.send_json(&json!({"ack": ack, "data": {"ready": true}}));
    assert_eq!(
        client.recv_json(),
        json!({"event": "answered", "data": {"ready": true}})
    );

    // A second request gets a different id; an ack for an unknown id is ignored.
    client.send_json(&json!({"event": "ask", "timeout_ms": 3000}));
    let second = client.recv_json();
    let ack2 = second["ack"].as_u64().expect("numeric ack id");
    assert_ne!(ack, ack2);
    client.send_json(&json!({"ack": ack2 + 100, "data": "stray"}));
    client.send_json(&json!({"ack": ack2}));
    assert_eq!(client.recv_json(), json!({"event": "answered", "data": null}));

    // An ack still pending when the client leaves is reported as Disconnected.
    client.send_json(&json!({"event": "ask", "timeout_ms": 10_000}));
    assert_eq!(client.recv_json()["event"], "question");
    client.close(1000, "");
    assert!(wait_until(WAIT, || counters.ack_disconnected.load(Ordering::SeqCst) == 1));
    server.shutdown();
}

fn server_ack_request_times_out(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = server.client("/ws");
    let started = Instant::now();
    client.send_json(&json!({"event": "ask", "timeout_ms": 200}));
    assert_eq!(client.recv_json()["event"], "question");
    assert_eq!(client.recv_json(), json!({"event": "ack_timeout", "data": null}));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "timed out early: {took:?}");
    assert!(took < Duration::from_secs(2), "timed out late: {took:?}");
    drop(client);
    server.shutdown();
}

fn flags_from_middleware_reach_event_handlers(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut ada = server.client("/ws?user=ada%20lovelace");
    let mut anon = server.client("/ws");
    assert_eq!(whoami(&mut ada)["user"], "ada lovelace");
    assert_eq!(whoami(&mut anon)["user"], Value::Null);
    drop((ada, anon));
    server.shutdown();
}

fn peer_address_reaches_the_app(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = server.client("/ws");
    let ours = client.stream().local_addr().expect("local addr").to_string();
    assert_eq!(whoami(&mut client)["peer"], json!(ours));
    drop(client);
    server.shutdown();
}

fn join(client: &mut Client, room: &str) {
    client.send_json(&json!({"event": "join", "room": room}));
    assert_eq!(client.recv_json(), json!({"event": "joined", "data": room}));
}

fn rooms_and_broadcasts_reach_exactly_the_members(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut a = server.client("/ws");
    let mut b = server.client("/ws");
    let mut c = server.client("/ws");
    join(&mut a, "r1");
    join(&mut b, "r1");
    join(&mut c, "r2");

    a.send_json(&json!({"event": "shout", "room": "r1", "text": "hello r1"}));
    let expected = json!({"event": "shout", "data": {"room": "r1", "text": "hello r1"}});
    assert_eq!(a.recv_json(), expected);
    assert_eq!(b.recv_json(), expected);
    // c is not in r1: the next thing it gets is its own room's broadcast.
    c.send_json(&json!({"event": "shout", "room": "r2", "text": "only r2"}));
    assert_eq!(
        c.recv_json(),
        json!({"event": "shout", "data": {"room": "r2", "text": "only r2"}})
    );

    // A non-member may broadcast into a room without receiving it.
    c.send_json(&json!({"event": "shout", "room": "r1", "text": "from outside"}));
    let outside = json!({"event": "shout", "data": {"room": "r1", "text": "from outside"}});
    assert_eq!(a.recv_json(), outside);
    assert_eq!(b.recv_json(), outside);
    assert_alive(&mut c, "c after shouting into r1");

    // After leaving, b no longer gets r1's broadcasts.
    b.send_json(&json!({"event": "leave", "room": "r1"}));
    assert_eq!(b.recv_json(), json!({"event": "left", "data": "r1"}));
    a.send_json(&json!({"event": "shout", "room": "r1", "text": "b left"}));
    assert_eq!(a.recv_json()["data"]["text"], "b left");
    assert_alive(&mut b, "b after leaving");

    // A member that disconnects is removed from its rooms.
    drop(c);
    assert!(server.wait_connections(2));
    a.send_json(&json!({"event": "shout", "room": "r2", "text": "anyone?"}));
    assert_alive(&mut a, "a after shouting into an empty room");
    drop((a, b));
    server.shutdown();
}

fn broadcast_all_reaches_every_connection(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut clients: Vec<Client> = (0..4).map(|_| server.client("/ws")).collect();
    assert!(server.wait_connections(4));
    clients[2].send_json(&json!({"event": "shout_all", "room": "all"}));
    for client in &mut clients {
        assert_eq!(client.recv_json(), json!({"event": "everyone", "data": "all"}));
    }
    drop(clients);
    server.shutdown();
}

fn send_by_id_from_another_thread_and_from_a_handler(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut a = server.client("/ws");
    let mut b = server.client("/ws");
    let a_id = whoami(&mut a)["id"].as_u64().expect("id");
    let b_id = whoami(&mut b)["id"].as_u64().expect("id");
    assert_ne!(a_id, b_id);

    let handle = server.connection(a_id).expect("a handle to an open connection");
    let sender = std::thread::spawn(move || {
        for i in 0..3 {
            handle.send_text(&format!("from afar {i}")).expect("queued");
        }
        handle.send_binary(&[1, 2, 3]).expect("queued");
    });
    sender.join().expect("sender thread");
    for i in 0..3 {
        assert_eq!(a.recv_text(), format!("from afar {i}"));
    }
    assert_eq!(a.recv(), Message::binary(vec![1u8, 2, 3]));

    // A handler sends to another connection by id.
    b.send_json(&json!({"event": "dm", "to": a_id, "text": "psst"}));
    assert_eq!(
        a.recv_json(),
        json!({"event": "dm", "data": {"from": b_id, "text": "psst"}})
    );
    // To an id that does not exist: nothing happens.
    b.send_json(&json!({"event": "dm", "to": u64::MAX, "text": "nobody"}));
    assert_alive(&mut b, "after a dm to nobody");

    assert!(server.connection(u64::MAX).is_none());
    drop((a, b));
    server.shutdown();
}

fn close_by_handle_from_another_thread(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut a = server.client("/ws");
    let id = whoami(&mut a)["id"].as_u64().expect("id");
    let handle = server.connection(id).expect("handle");
    let closer = handle.clone();
    std::thread::spawn(move || {
        closer
            .close(eventum_core::CloseCode(4002), "closed from afar")
            .expect("queued")
    })
    .join()
    .expect("closer thread");
    assert_eq!(a.expect_close(), (4002, "closed from afar".to_owned()));
    assert!(
        wait_until(WAIT, || handle.is_closed()),
        "the handle never saw the close"
    );
    assert!(wait_until(WAIT, || server.connection(id).is_none()));
    assert!(handle.send_text("too late").is_err());
    counters.expect_disconnects(1);
    server.shutdown();
}

fn server_close_with_1000_and_4000(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut a = server.client("/ws");
    a.send_json(&json!({"event": "close_me", "code": 1000, "reason": "bye"}));
    assert_eq!(a.expect_close(), (1000, "bye".to_owned()));
    let mut b = server.client("/ws");
    b.send_json(&json!({"event": "close_me", "code": 4000, "reason": "custom reason"}));
    assert_eq!(b.expect_close(), (4000, "custom reason".to_owned()));
    counters.expect_disconnects(2);
    let closed = counters.closed.lock().unwrap().clone();
    assert_eq!(closed[0], (1000, CloseCause::Local { answered: true }));
    assert_eq!(closed[1], (4000, CloseCause::Local { answered: true }));
    assert!(server.wait_connections(0));
    server.shutdown();
}

fn client_close_is_echoed(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let client = server.client("/ws");
    // The server echoes the code (RFC 6455 §5.5.1); the reason reaches the disconnect hook.
    assert_eq!(client.close(4001, "client leaves").0, 4001);
    let client = server.client("/ws");
    assert_eq!(client.close(1000, ""), (1000, String::new()));
    counters.expect_disconnects(2);
    let closed = counters.closed.lock().unwrap().clone();
    assert_eq!(closed, [(4001, CloseCause::Remote), (1000, CloseCause::Remote)]);
    assert_eq!(counters.reasons.lock().unwrap()[0], "client leaves");
    server.shutdown();
}

fn disconnect_hook_runs_once_on_client_close(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut client = server.client("/ws");
    assert_alive(&mut client, "before close");
    assert_eq!(counters.disconnects(), 0);
    client.close(1000, "done");
    counters.expect_disconnects(1);
    assert!(server.wait_connections(0));
    server.shutdown();
    assert_eq!(counters.disconnects(), 1, "shutdown ran the hook again");
}

fn disconnect_hook_runs_once_on_abrupt_drop(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut client = server.client("/ws");
    assert_alive(&mut client, "before drop");
    client.drop_abruptly();
    counters.expect_disconnects(1);
    assert_eq!(counters.closed.lock().unwrap()[0], (1006, CloseCause::TransportEnded));
    assert!(server.wait_connections(0));

    // Dropped in the middle of a frame.
    let mut raw = RawClient::connect(server.addr(), "/ws");
    raw.send_partial_frame();
    drop(raw);
    counters.expect_disconnects(2);
    assert!(server.wait_connections(0));
    server.shutdown();
    assert_eq!(counters.disconnects(), 2);
}

fn max_connections_answers_503_beyond_the_limit(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let options = Options {
        max_connections: 2,
        ..Options::default()
    };
    let server = adapter.start_with(feature_app(&counters, default_config()), options);
    let mut first = server.client("/ws");
    let mut second = server.client("/ws");
    assert_alive(&mut first, "first");
    assert_alive(&mut second, "second");
    for _ in 0..3 {
        let busy = refused(Client::connect(server.addr(), "/ws"));
        assert_eq!(busy.status, 503, "{busy:?}");
        assert_eq!(busy.body, "Server busy: too many connections");
    }
    assert_eq!(server.connections(), 2);
    first.close(1000, "");
    assert!(server.wait_connections(1));
    let mut third = server.client("/ws");
    assert_alive(&mut third, "third, after one left");
    assert_alive(&mut second, "second, still there");
    drop((second, third));
    server.shutdown();
}

fn echo_text_and_binary_including_2_mib(adapter: Adapter) {
    let server = adapter.start(eventum_demo::echo_app());
    let mut client = server.client("/any/path?x=1");
    client.send_text("héllo");
    assert_eq!(client.recv(), Message::text("héllo"));
    client.send_binary(&[0, 1, 2, 255]);
    assert_eq!(client.recv(), Message::binary(vec![0u8, 1, 2, 255]));
    client.send_text("");
    assert_eq!(client.recv(), Message::text(""));

    let big_text: String = (0..2 << 20).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    client.send_text(&big_text);
    match client.recv() {
        Message::Text(text) => assert!(text.as_str() == big_text, "2 MiB text came back different"),
        other => panic!("expected text, got {:?}", message_kind(&other)),
    }
    let big_binary: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    client.send_binary(&big_binary);
    match client.recv() {
        Message::Binary(data) => assert!(data[..] == big_binary[..], "2 MiB binary came back different"),
        other => panic!("expected binary, got {:?}", message_kind(&other)),
    }
    // Several messages in flight at once come back in order.
    for i in 0..50 {
        client.send_text(&format!("m{i}"));
    }
    for i in 0..50 {
        assert_eq!(client.recv_text(), format!("m{i}"));
    }
    assert_eq!(client.close(1000, ""), (1000, String::new()));
    server.shutdown();
}

fn message_kind(message: &Message) -> String {
    match message {
        Message::Text(t) => format!("text of {} bytes", t.len()),
        Message::Binary(b) => format!("binary of {} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

fn chat_serves_its_page(adapter: Adapter) {
    let server = adapter.start(eventum_demo::chat_app());
    let (status, headers, body) = eventum_e2e::http_get(server.addr(), "/");
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/html")),
        "{headers:?}"
    );
    assert!(body.contains("<title>eventum chat</title>"));
    for id in ["name", "room", "join", "text", "send", "log"] {
        assert!(body.contains(&format!("id=\"{id}\"")), "the page lacks #{id}");
    }
    let (status, _, _) = eventum_e2e::http_get(server.addr(), "/nope");
    assert_eq!(status, 404);
    server.shutdown();
}

fn chat_flow(adapter: Adapter) {
    let server = adapter.start(eventum_demo::chat_app());
    let mut ada = server.client("/ws");
    let mut bob = server.client("/ws");
    let mut eve = server.client("/ws");

    ada.send_json(&json!({"event": "join", "room": "r", "name": "ada"}));
    assert_eq!(
        ada.recv_json(),
        json!({"event": "joined", "data": {"room": "r", "name": "ada"}})
    );
    bob.send_json(&json!({"event": "join", "room": "r", "name": "bob"}));
    let bob_joined = json!({"event": "joined", "data": {"room": "r", "name": "bob"}});
    assert_eq!(ada.recv_json(), bob_joined);
    assert_eq!(bob.recv_json(), bob_joined);

    // eve has not joined: she gets an error and nothing is broadcast.
    eve.send_json(&json!({"event": "message", "room": "r", "text": "sneaky"}));
    let error = eve.recv_json();
    assert_eq!(error["event"], "error", "{error}");
    assert!(error["data"]["message"].is_string());

    ada.send_json(&json!({"event": "message", "room": "r", "text": "hi bob"}));
    let message = json!({"event": "message", "data": {"room": "r", "name": "ada", "text": "hi bob"}});
    assert_eq!(ada.recv_json(), message);
    assert_eq!(bob.recv_json(), message);

    eve.send_json(&json!({"event": "join", "room": 5}));
    assert_eq!(
        eve.recv_json(),
        json!({"event": "validation_error", "message": "Invalid data received"})
    );
    eve.send_json(&json!({"event": "message", "room": "r"}));
    assert_eq!(eve.recv_json()["event"], "validation_error");

    // A member who disconnects is announced as left to those still there.
    bob.drop_abruptly();
    assert_eq!(
        ada.recv_json(),
        json!({"event": "left", "data": {"room": "r", "name": "bob"}})
    );

    // Leaving explicitly.
    ada.send_json(&json!({"event": "leave", "room": "r"}));
    assert_eq!(
        ada.recv_json(),
        json!({"event": "left", "data": {"room": "r", "name": "ada"}})
    );
    ada.send_json(&json!({"event": "message", "room": "r", "text": "gone"}));
    assert_eq!(ada.recv_json()["event"], "error");

    // The chat speaks JSON text: binary closes with 1003.
    eve.send_binary(b"\x00\x01");
    assert_eq!(eve.expect_close().0, 1003);
    drop((ada, eve));
    server.shutdown();
}

fn graceful_shutdown_closes_with_1001_and_runs_the_hook_once(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let addr = server.addr();
    let mut a = server.client("/ws");
    let mut b = server.client("/ws?user=b");
    assert_alive(&mut a, "a");
    assert_alive(&mut b, "b");
    let started = Instant::now();
    let (done_tx, done_rx) = mpsc::channel();
    let stopper = std::thread::spawn(move || {
        server.shutdown();
        let _ = done_tx.send(());
    });
    assert_eq!(a.expect_close(), (1001, "server shutting down".to_owned()));
    assert_eq!(b.expect_close().0, 1001);
    done_rx.recv_timeout(WAIT).expect("shutdown finished in time");
    stopper.join().expect("shutdown thread");
    assert!(
        started.elapsed() < generous(Duration::from_secs(2)),
        "shutdown took {:?} although both clients answered the close",
        started.elapsed()
    );
    assert_eq!(counters.shutdowns.load(Ordering::SeqCst), 1);
    assert_eq!(counters.disconnects(), 2);
    let closed = counters.closed.lock().unwrap().clone();
    assert!(closed.iter().all(|(code, _)| *code == 1001), "{closed:?}");
    // No longer accepting.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still accepting after shutdown"
    );
}

fn shutdown_is_bounded_with_a_client_that_ignores_the_close(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let options = Options {
        shutdown_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let server = adapter.start_with(feature_app(&counters, default_config()), options);
    let mut raw = RawClient::connect(server.addr(), "/ws");
    assert!(server.wait_connections(1));
    let started = Instant::now();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        server.shutdown();
        let _ = done_tx.send(());
    });
    let close = raw.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(close.close_code(), Some(1001), "{close:?}");
    // The client never answers; shutdown still ends within its timeout (plus slack).
    done_rx.recv_timeout(WAIT).expect("shutdown finished");
    let took = started.elapsed();
    assert!(took < generous(Duration::from_millis(2500)), "shutdown took {took:?}");
    assert_eq!(counters.shutdowns.load(Ordering::SeqCst), 1);
    // The dropped connection's disconnect hook ran before shutdown returned.
    assert_eq!(counters.disconnects(), 1);
    // And the unresponsive client's connection does end (no task or thread keeps it).
    assert_eq!(raw.read_frame(WAIT).expect("EOF, not a timeout"), None);
}

fn shutdown_without_connections_frees_the_port(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let addr = server.addr();
    server.shutdown();
    assert_eq!(counters.shutdowns.load(Ordering::SeqCst), 1);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "still accepting after shutdown"
    );
    assert!(
        std::net::TcpListener::bind(addr).is_ok(),
        "the port is still bound after shutdown"
    );
}

fn a_flooding_client_starves_neither_others_nor_shutdown(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let options = Options {
        shutdown_timeout: Duration::from_millis(500),
        threads: 1,
        ..Options::default()
    };
    let server = adapter.start_with(feature_app(&counters, default_config()), options);
    // Unsolicited pongs: the server reads them and answers nothing, so the flood never
    // stops on TCP backpressure; it ends when the server drops the connection.
    let mut flooder = RawClient::connect(server.addr(), "/ws");
    let pongs = eventum_e2e::masked_frame(0xA, &[7u8; 125]).repeat(64);
    let flood = std::thread::spawn(move || {
        let (until, mut sent) = (Instant::now() + Duration::from_secs(8), 0usize);
        while Instant::now() < until && flooder.try_send_raw(&pongs).is_ok() {
            sent += pongs.len();
        }
        sent
    });
    let mut other = server.client("/ws");
    for round in 0..5 {
        assert_alive(&mut other, &format!("round {round}"));
    }
    let started = Instant::now();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        server.shutdown();
        let _ = done_tx.send(());
    });
    done_rx.recv_timeout(WAIT).expect("shutdown finished despite the flood");
    assert!(
        started.elapsed() < generous(Duration::from_millis(2500)),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The precondition: the flood really flowed (megabytes, not a trickle).
    let sent = flood.join().expect("flood thread");
    assert!(sent > 4 << 20, "only {sent} bytes of flood were sent");
}

fn slow_reader_does_not_stall_other_clients(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let config = Config::builder()
        .water_marks(128 << 10, 32 << 10)
        .max_backlog(512 << 10)
        .close_timeout(Duration::from_millis(500))
        .build()
        .expect("valid config");
    let server = adapter.start(feature_app(&counters, config));
    let mut slow = server.client("/ws");
    let mut fast = server.client("/ws");
    join(&mut slow, "flood");
    join(&mut fast, "flood");

    // Rounds of 16 × 16 KiB broadcasts; the fast client reads each round before the
    // next. The slow client never reads: once the kernel buffers are full its backlog
    // passes the limit and the server closes it.
    let started = Instant::now();
    let mut rounds = 0;
    while server.connections() == 2 {
        assert!(rounds < 2000, "the slow client was never closed ({rounds} rounds)");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the slow client was not closed in 30 s"
        );
        let round_started = Instant::now();
        fast.send_json(&json!({"event": "blast", "room": "flood", "count": 16, "size": 16 << 10}));
        for i in 0..16 {
            let message = fast.recv_json();
            assert_eq!(message["data"]["i"], i, "round {rounds}");
        }
        let took = round_started.elapsed();
        assert!(took < Duration::from_secs(3), "round {rounds} took {took:?}");
        rounds += 1;
    }
    assert!(server.wait_connections(1));
    let closed = counters.closed.lock().unwrap().clone();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0], (1008, CloseCause::SlowConsumer));
    // The fast client is unaffected.
    assert_alive(&mut fast, "fast after the flood");

    // The slow client finds its connection ended after whatever had been buffered.
    let mut stream = slow.stream().try_clone().expect("clone");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the slow client's connection did not end");
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    eprintln!(
        "{adapter:?}: slow client closed after {rounds} rounds in {:?}",
        started.elapsed()
    );
    drop((slow, fast));
    server.shutdown();
}

fn keepalive_config() -> Config {
    Config::builder()
        .keepalive(Some(Keepalive {
            interval: Duration::from_millis(200),
            // Room for a client thread descheduled on a loaded machine to answer in time.
            timeout: Duration::from_millis(1000),
        }))
        .close_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config")
}

fn keepalive_ping_arrives_and_answered_pings_keep_the_connection(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let server = adapter.start(feature_app(&counters, keepalive_config()));
    let mut client = server.client("/ws");
    let started = Instant::now();
    match client.try_recv_any(Duration::from_secs(2)) {
        Ok(Message::Ping(_)) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(150), "ping too early");
    // Reading answers pings (tungstenite replies with pongs): the connection survives
    // several keepalive periods.
    let mut pings = 1;
    while pings < 4 && started.elapsed() < generous(Duration::from_secs(2)) {
        match client.try_recv_any(Duration::from_millis(100)) {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("closed although pongs were sent: {e:?}"),
        }
    }
    assert!(pings >= 4, "only {pings} pings in {:?}", started.elapsed());
    assert_alive(&mut client, "after keepalives");
    assert_eq!(counters.disconnects(), 0);
    drop(client);
    server.shutdown();
}

fn keepalive_unanswered_is_closed_with_1011(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let server = adapter.start(feature_app(&counters, keepalive_config()));
    let mut raw = RawClient::connect(server.addr(), "/ws");
    let started = Instant::now();
    let ping = raw
        .read_frame(Duration::from_secs(2))
        .expect("a frame")
        .expect("not EOF");
    assert_eq!(ping.opcode, 0x9, "{ping:?}");
    let close = raw.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(close.close_code(), Some(1011), "{close:?}");
    let took = started.elapsed();
    // The ping after 200 ms of silence, the close 1 s later.
    assert!(
        took >= Duration::from_millis(1150) && took < generous(Duration::from_millis(2500)),
        "closed after {took:?}"
    );
    // The server then ends the connection (it does not wait for our close reply forever).
    assert_eq!(
        raw.read_frame(Duration::from_secs(3)).expect("EOF, not a timeout"),
        None
    );
    counters.expect_disconnects(1);
    assert_eq!(counters.closed.lock().unwrap()[0], (1011, CloseCause::KeepaliveTimeout));
    server.shutdown();
}

fn handler_panic_closes_with_1011_and_others_continue(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut victim = server.client("/ws");
    let mut other = server.client("/ws");
    victim.send_json(&json!({"event": "panic"}));
    assert_eq!(victim.expect_close().0, 1011);
    assert_alive(&mut other, "other after a panic");
    counters.expect_disconnects(1);
    drop(other);
    server.shutdown();
}

fn client_ping_gets_a_pong(adapter: Adapter) {
    let (server, _) = start(adapter);
    let mut client = server.client("/ws");
    client.send_message(Message::Ping(b"are you there".to_vec().into()));
    match client.try_recv_any(WAIT) {
        Ok(Message::Pong(payload)) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected the pong, got {other:?}"),
    }
    assert_alive(&mut client, "after ping");
    drop(client);
    server.shutdown();
}

fn message_over_the_limit_closes_with_1009(adapter: Adapter) {
    let (server, counters) = start(adapter);
    // The feature app keeps the default 1 MiB limit. Only the frame header is sent: the
    // server refuses on the announced length, and no unread payload can turn its close
    // into a reset.
    let mut raw = RawClient::connect(server.addr(), "/ws");
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&((1u64 << 20) + 1).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.send_raw(&header);
    let close = raw.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(close.close_code(), Some(1009), "{close:?}");
    counters.expect_disconnects(1);
    // A message just under the limit is fine.
    let mut fits = server.client("/ws");
    fits.send_json(&json!({"event": "ping", "data": "y".repeat(1000 << 10)}));
    assert_eq!(fits.recv_json()["data"].as_str().map(str::len), Some(1000 << 10));
    drop((raw, fits));
    server.shutdown();
}

fn protocol_violations_close_with_1002_and_1007(adapter: Adapter) {
    let (server, counters) = start(adapter);
    // Invalid UTF-8 in a text frame.
    let mut raw = RawClient::connect(server.addr(), "/ws");
    raw.send_frame(0x1, &[0xff, 0xfe]);
    let close = raw.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(close.close_code(), Some(1007), "{close:?}");
    // An unmasked client frame.
    let mut raw2 = RawClient::connect(server.addr(), "/ws");
    raw2.send_raw(&[0x81, 0x02, b'h', b'i']);
    let close = raw2.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(close.close_code(), Some(1002), "{close:?}");
    counters.expect_disconnects(2);
    server.shutdown();
}

fn frame_pipelined_with_the_upgrade_request_is_handled(adapter: Adapter) {
    let (server, _) = start(adapter);
    let event = json!({"event": "ping", "data": "pipelined"}).to_string();
    let mut raw = RawClient::connect_with_first_frame(server.addr(), "/ws", 0x1, event.as_bytes());
    let frame = raw.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(frame.opcode, 0x1);
    let reply: Value = serde_json::from_slice(&frame.payload).expect("JSON");
    assert_eq!(reply, json!({"event": "pong", "data": "pipelined"}));
    drop(raw);
    server.shutdown();
}

fn handshake_timeout_answers_408_and_closes(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let config = Config::builder()
        .handshake_timeout(Some(Duration::from_millis(300)))
        .build()
        .expect("valid config");
    let server = adapter.start(feature_app(&counters, config));
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // Half a request, then silence.
    std::io::Write::write_all(&mut stream, b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let result = stream.read_to_end(&mut answer);
    let took = started.elapsed();
    assert!(result.is_ok(), "the connection did not end cleanly: {result:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(
        took >= Duration::from_millis(250) && took < generous(Duration::from_secs(2)),
        "ended after {took:?}"
    );
    assert!(server.wait_connections(0));
    assert_eq!(counters.disconnects(), 0, "no WebSocket was opened");
    server.shutdown();
}

fn close_timeout_drops_a_client_that_never_answers_the_close(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut raw = RawClient::connect(server.addr(), "/ws");
    raw.send_frame(
        0x1,
        json!({"event": "close_me", "code": 4003, "reason": "go"})
            .to_string()
            .as_bytes(),
    );
    let close = raw.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(close.close_code(), Some(4003));
    let started = Instant::now();
    // We never answer; the server gives up after its close timeout (1 s here).
    assert_eq!(raw.read_frame(WAIT).expect("EOF, not a timeout"), None);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < generous(Duration::from_secs(3)),
        "dropped after {took:?}"
    );
    counters.expect_disconnects(1);
    assert_eq!(
        counters.closed.lock().unwrap()[0],
        (4003, CloseCause::Local { answered: false })
    );
    server.shutdown();
}

fn many_connections_come_and_go_without_leaks(adapter: Adapter) {
    let (server, counters) = start(adapter);
    let mut ids = std::collections::HashSet::new();
    for i in 0..60 {
        let mut client = server.client("/ws");
        if i % 3 == 0 {
            assert!(
                ids.insert(whoami(&mut client)["id"].as_u64().unwrap()),
                "ids are unique"
            );
        }
        client.leave(i);
    }
    // Refused upgrades and plain HTTP requests in between.
    for _ in 0..20 {
        assert_eq!(refused(Client::connect(server.addr(), "/nope")).status, 404);
    }
    counters.expect_disconnects(60);
    assert!(server.wait_connections(0), "connections: {}", server.connections());
    server.shutdown();
}

fn concurrent_broadcasts_all_arrive_in_order(adapter: Adapter) {
    const CLIENTS: usize = 12;
    const MESSAGES: usize = 25;
    let (server, _) = start(adapter);
    let addr = server.addr();
    let barrier = Arc::new(std::sync::Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut client = Client::connect(addr, "/ws").expect("101");
                join(&mut client, "crowd");
                barrier.wait();
                for m in 0..MESSAGES {
                    client.send_json(&json!({"event": "shout", "room": "crowd", "text": format!("{n}:{m}")}));
                }
                // Every member gets every message, each sender's in order.
                let mut next = [0usize; CLIENTS];
                for _ in 0..CLIENTS * MESSAGES {
                    let message = client.recv_json();
                    let text = message["data"]["text"].as_str().expect("shout").to_owned();
                    let (from, m) = text.split_once(':').expect("n:m");
                    let (from, m): (usize, usize) = (from.parse().unwrap(), m.parse().unwrap());
                    assert_eq!(m, next[from], "client {n}: message {m} from {from} out of order");
                    next[from] += 1;
                }
                assert!(next.iter().all(|&k| k == MESSAGES), "client {n}: {next:?}");
                client.close(1000, "");
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    server.shutdown();
}

fn handle_sends_to_a_non_reading_client_never_leave_a_silent_gap(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let config = Config::builder()
        .water_marks(64 << 10, 16 << 10)
        .max_backlog(256 << 10)
        .close_timeout(Duration::from_millis(500))
        .build()
        .expect("valid config");
    let server = adapter.start(feature_app(&counters, config));
    let mut client = server.client("/ws");
    let id = whoami(&mut client)["id"].as_u64().expect("id");
    let handle = server.connection(id).expect("handle");
    // The client does not read while 1000 × 32 KiB numbered messages are sent to it by
    // handle: far more than the kernel buffers and the 256 KiB backlog hold.
    const COUNT: usize = 1000;
    let pad = "p".repeat(32 << 10);
    let accepted = std::thread::spawn(move || {
        (0..COUNT)
            .filter(|i| handle.send_text(&format!("{i:06}{pad}")).is_ok())
            .count()
    })
    .join()
    .expect("sender");
    // The precondition: the sends outgrew what the connection may hold, so some were
    // refused (the mailbox and the output are bounded).
    assert!(
        accepted < COUNT,
        "every one of {COUNT} sends was accepted: nothing was bounded"
    );
    // Now it reads everything that arrives.
    let mut received = Vec::new();
    let ending = loop {
        match client.try_recv(Duration::from_secs(1)) {
            Ok(Message::Text(text)) => received.push(text.as_str()[..6].parse::<usize>().expect("number")),
            Ok(Message::Close(frame)) => break format!("close {:?}", frame.map(|f| u16::from(f.code))),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(RecvError::Timeout) => break "still open".to_owned(),
            Err(e) => break format!("{e:?}"),
        }
    };
    let gap = received.iter().enumerate().find(|&(i, &n)| i != n);
    assert!(
        gap.is_none(),
        "{accepted} sends accepted (Ok), {} arrived (then: {ending}), with a gap: message {:?} arrived \
         where {:?} was due",
        received.len(),
        gap.map(|g| g.1),
        gap.map(|g| g.0)
    );
    // Either every accepted message arrived, or the connection was closed as a slow
    // consumer (1008). Accepted-but-silently-dropped messages on an open connection are
    // data loss nobody is told about.
    assert!(
        received.len() == accepted || ending == "close Some(1008)",
        "{accepted} sends accepted (Ok), {} arrived, then the connection was: {ending}",
        received.len()
    );
    drop(client);
    server.shutdown();
}

fn shutdown_with_a_connection_still_in_its_handshake_is_prompt(adapter: Adapter) {
    let counters = Arc::new(Counters::default());
    let options = Options {
        shutdown_timeout: Duration::from_secs(3),
        ..Options::default()
    };
    // Default handshake timeout: 10 s.
    let server = adapter.start_with(feature_app(&counters, default_config()), options);
    let mut silent = TcpStream::connect(server.addr()).expect("connect");
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let mut open = server.client("/ws");
    assert_alive(&mut open, "open");
    assert!(server.wait_connections(2));
    let started = Instant::now();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        server.shutdown();
        let _ = done_tx.send(());
    });
    assert_eq!(open.expect_close().0, 1001);
    done_rx.recv_timeout(WAIT).expect("shutdown finished");
    let took = started.elapsed();
    // The connection that never sent a request is dropped too, at once.
    let mut sink = Vec::new();
    let ended = silent.read_to_end(&mut sink).is_ok();
    assert!(
        took < Duration::from_secs(1) && ended,
        "shutdown took {took:?} (timeout 3 s) although the only open WebSocket answered at once; \
         the silent connection ended: {ended} after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Any transport: the same apps over a Unix socket pair instead of TCP.

fn unix_client_session(mut client: eventum_e2e::Client<std::os::unix::net::UnixStream>) {
    client.send_json(&json!({"event": "ping", "data": "over unix"}));
    assert_eq!(client.recv_json(), json!({"event": "pong", "data": "over unix"}));
    client.send_json(&json!({"event": "whoami"}));
    let who = client.recv_json();
    assert_eq!(who["data"]["peer"], Value::Null, "no peer address over a socket pair");
    client.send_json(&json!({"event": "add", "id": 1, "a": 20, "b": 22}));
    assert_eq!(client.recv_json(), json!({"event": "add", "id": 1, "data": 42}));
    assert_eq!(client.close(1000, "done").0, 1000);
}

fn tungstenite_over_unix(
    stream: std::os::unix::net::UnixStream,
) -> eventum_e2e::Client<std::os::unix::net::UnixStream> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let (ws, response) =
        eventum_e2e::tungstenite::client::client("ws://localhost/ws", stream).expect("handshake over unix");
    assert_eq!(response.status(), 101);
    eventum_e2e::Client::from_websocket(ws)
}

#[test]
fn std_threads_serves_a_unix_socket_pair() {
    let counters = Arc::new(Counters::default());
    let server = eventum_std::Server::new(feature_app(&counters, default_config()));
    let (served, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let serving = server.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(serving.serve_stream(served, None).map_err(|e| e.to_string()));
    });
    unix_client_session(tungstenite_over_unix(ours));
    done_rx
        .recv_timeout(WAIT)
        .expect("serve_stream returned")
        .expect("served without error");
    assert_eq!(server.endpoint().connections(), 0);
    counters.expect_disconnects(1);

    // The raw-handshake client works over it too, and a refusal is an HTTP response.
    let (served, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    let serving = server.clone();
    let done = std::thread::spawn(move || serving.serve_stream(served, None).is_ok());
    ours.set_read_timeout(Some(WAIT)).unwrap();
    let refused = refused_over(Client::over_stream(ours, "/nope"));
    assert_eq!(refused.status, 404);
    assert!(wait_until(WAIT, || done.is_finished()));
    assert!(done.join().unwrap());
}

#[test]
fn smol_serves_a_unix_socket_pair() {
    let counters = Arc::new(Counters::default());
    let server = eventum_smol::Server::new(feature_app(&counters, default_config()));
    let (served, ours) = ::smol::net::unix::UnixStream::pair().unwrap();
    let ours = into_std_unix(ours);
    let (done_tx, done_rx) = mpsc::channel();
    let serving = server.clone();
    std::thread::spawn(move || {
        let result = ::smol::block_on(serving.serve_stream(served, None));
        let _ = done_tx.send(result.map_err(|e| e.to_string()));
    });
    unix_client_session(tungstenite_over_unix(ours));
    done_rx
        .recv_timeout(WAIT)
        .expect("serve_stream returned")
        .expect("served without error");
    assert_eq!(server.endpoint().connections(), 0);
    counters.expect_disconnects(1);

    let (served, ours) = ::smol::net::unix::UnixStream::pair().unwrap();
    let ours = into_std_unix(ours);
    let serving = server.clone();
    let done = std::thread::spawn(move || ::smol::block_on(serving.serve_stream(served, None)).is_ok());
    ours.set_read_timeout(Some(WAIT)).unwrap();
    let refused = refused_over(Client::over_stream(ours, "/nope"));
    assert_eq!(refused.status, 404);
    assert!(wait_until(WAIT, || done.is_finished()));
    assert!(done.join().unwrap());
}

fn refused_over<S: std::io::Read + std::io::Write>(result: Result<Client<S>, HttpError>) -> HttpError {
    match result {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e,
    }
}

/// The client end of a smol socket pair, as a blocking std socket.
fn into_std_unix(stream: ::smol::net::unix::UnixStream) -> std::os::unix::net::UnixStream {
    let inner: Arc<::smol::Async<std::os::unix::net::UnixStream>> = stream.into();
    let inner = Arc::try_unwrap(inner).expect("sole owner");
    let stream = inner.into_inner().expect("deregistered");
    stream.set_nonblocking(false).unwrap();
    stream
}
