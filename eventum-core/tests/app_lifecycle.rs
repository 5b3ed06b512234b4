//! How connections of an `App` end, driven through `TestServer`: server closes and their
//! codes, the disconnect hook (exactly once, whatever the cause), panicking handlers, and
//! the lifespan hooks.

mod common;

use std::time::Duration;

use eventum_core::app::{App, AppBuilder, Flow, Route};
use eventum_core::frame::OpCode;
use eventum_core::testing::{Message, TestClient, TestServer};
use eventum_core::{CloseCause, CloseCode, CloseError, Closed, ProtocolError};
use serde_json::{json, Value};

use common::*;

/// A builder with the route `/ws`, a `ping` event answered with `pong`, a `bye` event
/// that closes with the event's `code` and `reason` (answering `close_error` when the
/// close is refused), a `boom` event that panics, and a disconnect hook recording how
/// each connection ended.
fn app(closed: &Log<Closed>) -> AppBuilder {
    quiet_deliberate_panics();
    let closed = closed.clone();
    App::builder()
        .route(Route::new("/ws"))
        .on("ping", |ctx, _| ctx.send_event("pong", &json!({})).unwrap())
        .on("bye", |ctx, event| {
            let code = event.get("code").and_then(Value::as_u64).unwrap() as u16;
            let reason = event.get("reason").and_then(Value::as_str).unwrap_or("").to_owned();
            let first = ctx.close(CloseCode(code), &reason);
            match first {
                Ok(()) => {
                    // A second close is refused; the first one stands. (Recorded in the
                    // flags: nothing can be sent any more.)
                    let second = ctx.close(CloseCode::NORMAL, "");
                    let refused = second == Err(CloseError::AlreadyClosing);
                    ctx.flags_mut().add("second_close_refused", refused);
                }
                Err(e) => {
                    let error = match e {
                        CloseError::InvalidCode(c) => json!({"invalid_code": c}),
                        CloseError::ReasonTooLong { len } => json!({"reason_too_long": len}),
                        other => json!({"other": other.to_string()}),
                    };
                    ctx.send_event("close_error", &error).unwrap();
                }
            }
        })
        .on("boom", |_, _| panic!("{DELIBERATE}: event handler"))
        .on_disconnect(move |_, how| closed.push(how.clone()))
}

fn serve(closed: &Log<Closed>) -> TestServer {
    TestServer::new(app(closed).build())
}

fn assert_ping_pong(client: &mut TestClient) {
    client.send_event("ping", &json!({}));
    assert_eq!(client.recv_json(), Some(json!({"event": "pong", "data": {}})));
}

fn closed(code: u16, reason: &str, cause: CloseCause) -> Closed {
    Closed {
        code: CloseCode(code),
        reason: reason.to_owned(),
        cause,
    }
}

// --- server close ----------------------------------------------------------------------------

#[test]
fn server_close_reaches_the_client_with_normal_and_application_codes() {
    let log = Log::new();
    let server = serve(&log);
    for (code, reason) in [(1000, "done"), (3000, "registered app code"), (4999, "")] {
        let mut client = server.connect("/ws").unwrap();
        client.send_json(&json!({"event": "bye", "code": code, "reason": reason}));
        assert_eq!(client.recv_all(), vec![Message::Close(Some(code), reason.to_owned())]);
        assert_eq!(client.server_flags().get("second_close_refused"), Some(&json!(true)));
        client.close(code, "");
        assert!(client.is_closed());
        assert_eq!(
            log.items().last(),
            Some(&closed(code, reason, CloseCause::Local { answered: true }))
        );
    }
    assert_eq!(log.len(), 3);
}

#[test]
fn invalid_close_codes_are_refused_and_the_connection_stays_open() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    for code in [0u16, 999, 1004, 1005, 1006, 1010, 1015, 2999, 5000] {
        client.send_json(&json!({"event": "bye", "code": code}));
        assert_eq!(
            client.recv_json(),
            Some(json!({"event": "close_error", "data": {"invalid_code": code}})),
            "{code}"
        );
    }
    let long = "x".repeat(124);
    client.send_json(&json!({"event": "bye", "code": 1000, "reason": long}));
    assert_eq!(
        client.recv_json(),
        Some(json!({"event": "close_error", "data": {"reason_too_long": 124}}))
    );
    assert_ping_pong(&mut client);
    assert!(log.items().is_empty());
}

// --- the disconnect hook ---------------------------------------------------------------------

#[test]
fn client_close_runs_the_disconnect_hook_once_with_code_and_reason() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    client.close(4000, "going home");
    // The server echoes the code and closes the transport.
    assert_eq!(client.recv_all(), vec![Message::Close(Some(4000), String::new())]);
    assert!(client.is_closed());
    assert_eq!(log.items(), vec![closed(4000, "going home", CloseCause::Remote)]);
    client.disconnect();
    drop(client);
    server.advance(Duration::from_secs(60));
    assert_eq!(log.len(), 1);
    assert_eq!(server.open_connections(), 0);
}

#[test]
fn abrupt_disconnect_runs_the_disconnect_hook_once_with_1006() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    let mut other = server.connect("/ws").unwrap();
    client.disconnect();
    assert_eq!(log.items(), vec![closed(1006, "", CloseCause::TransportEnded)]);
    client.disconnect();
    drop(client);
    assert_eq!(log.len(), 1);
    assert_ping_pong(&mut other);
    assert_eq!(server.open_connections(), 1);
}

#[test]
fn dropping_the_client_runs_the_disconnect_hook_once() {
    let log = Log::new();
    let server = serve(&log);
    drop(server.connect("/ws").unwrap());
    assert_eq!(log.items(), vec![closed(1006, "", CloseCause::TransportEnded)]);
}

#[test]
fn server_close_runs_the_disconnect_hook_once() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    client.send_json(&json!({"event": "bye", "code": 3001, "reason": "kicked"}));
    assert_eq!(client.recv_all(), vec![Message::Close(Some(3001), "kicked".into())]);
    client.close(3001, "");
    assert_eq!(
        log.items(),
        vec![closed(3001, "kicked", CloseCause::Local { answered: true })]
    );
    drop(client);
    assert_eq!(log.len(), 1);
}

#[test]
fn unanswered_server_close_runs_the_disconnect_hook_once_after_the_close_timeout() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    client.send_json(&json!({"event": "bye", "code": 1000, "reason": "bye"}));
    assert_eq!(client.close_code(), Some(1000));
    server.advance(Duration::from_secs(5));
    assert_eq!(
        log.items(),
        vec![closed(1000, "bye", CloseCause::Local { answered: false })]
    );
    assert!(client.is_closed());
    drop(client);
    assert_eq!(log.len(), 1);
}

#[test]
fn keepalive_timeout_runs_the_disconnect_hook_once() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    server.advance(Duration::from_secs(30));
    // The client does not answer the ping (TestClient does not pong by itself).
    assert_eq!(client.recv_all(), vec![Message::Ping(vec![])]);
    assert!(log.items().is_empty());
    server.advance(Duration::from_secs(30));
    assert_eq!(
        client.recv_all(),
        vec![Message::Close(Some(1011), "keepalive timeout".into())]
    );
    assert_eq!(
        log.items(),
        vec![closed(1011, "keepalive timeout", CloseCause::KeepaliveTimeout)]
    );
    assert!(client.is_closed());
    server.advance(Duration::from_secs(60));
    drop(client);
    assert_eq!(log.len(), 1);
}

#[test]
fn answered_keepalive_keeps_the_connection_open() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    for _ in 0..3 {
        server.advance(Duration::from_secs(30));
        assert_eq!(client.recv_all(), vec![Message::Ping(vec![])]);
        client.send_frame(true, OpCode::Pong, b"");
    }
    server.advance(Duration::from_secs(29));
    assert_ping_pong(&mut client);
    assert!(log.items().is_empty());
}

#[test]
fn protocol_error_runs_the_disconnect_hook_once_with_1002() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    // An unmasked text frame "hi": clients must mask.
    client.send_raw(&[0x81, 0x02, b'h', b'i']);
    let reason = ProtocolError::UnmaskedFrame.to_string();
    assert_eq!(client.recv_all(), vec![Message::Close(Some(1002), reason.clone())]);
    assert!(client.is_closed());
    assert_eq!(
        log.items(),
        vec![closed(
            1002,
            &reason,
            CloseCause::Protocol(ProtocolError::UnmaskedFrame)
        )]
    );
    client.disconnect();
    drop(client);
    assert_eq!(log.len(), 1);
}

#[test]
fn disconnect_hook_sees_the_connections_flags() {
    let users = Log::<Value>::new();
    let u = users.clone();
    let app = App::builder()
        .middleware(|upgrade, next| {
            let user = upgrade.query_param("user").unwrap_or("").to_owned();
            upgrade.flags_mut().add("user", user);
            next.run(upgrade)
        })
        .route(Route::new("/ws"))
        .on_disconnect(move |ctx, how| {
            u.push(json!({"user": ctx.flags().get("user"), "code": how.code.0, "id": ctx.id().0}));
        })
        .build();
    let server = TestServer::new(app);
    let mut client = server.connect("/ws?user=ada").unwrap();
    let id = client.id().0;
    client.close(1001, "");
    assert_eq!(users.items(), vec![json!({"user": "ada", "code": 1001, "id": id})]);
}

/// What adapters do on server shutdown (the endpoint mails every session a 1001 close) and
/// on a broken transport: each ends in exactly one disconnect hook.
#[test]
#[allow(clippy::disallowed_methods)] // a bare session needs a starting instant
fn shutdown_and_transport_errors_run_the_disconnect_hook_once() {
    use eventum_core::driver::Endpoint;
    let log = Log::new();
    let endpoint = Endpoint::new(app(&log).build());
    let now = std::time::Instant::now();

    let mut session = endpoint.admit(now, None).unwrap();
    session.handle_input(now, &upgrade_request("/ws", &[]));
    assert!(session.is_open());
    let mut second = endpoint.admit(now, None).unwrap();
    second.handle_input(now, &upgrade_request("/ws", &[]));

    let _plan = endpoint.shutdown(now);
    assert!(session.has_mail());
    session.handle_mail(now);
    assert!(log.items().is_empty());
    session.handle_eof(now);
    session.handle_transport_error(now);
    assert_eq!(
        log.items(),
        vec![closed(
            1001,
            "server shutting down",
            CloseCause::Local { answered: false }
        )]
    );

    second.handle_transport_error(now);
    second.handle_eof(now);
    second.handle_mail(now);
    second.handle_timeout(now + Duration::from_secs(600));
    assert_eq!(log.len(), 2);
    assert_eq!(log.items()[1], closed(1006, "", CloseCause::TransportEnded));
    assert!(!second.is_open());
    // Once shutdown began, a new connection's request is read and answered 503: the
    // upgrade is refused, and no hook runs for it.
    let mut late = endpoint
        .admit(now, None)
        .expect("a late connection is read, then refused");
    late.handle_input(now, &upgrade_request("/ws", &[]));
    assert!(late.poll_transmit().first().starts_with(b"HTTP/1.1 503 "));
    assert!(!late.is_open());
    assert_eq!(log.len(), 2);
}

// --- panics ----------------------------------------------------------------------------------

#[test]
fn panicking_event_handler_closes_1011_and_the_server_keeps_working() {
    let log = Log::new();
    let server = serve(&log);
    let mut victim = server.connect("/ws").unwrap();
    let mut bystander = server.connect("/ws").unwrap();
    victim.send_event("boom", &json!({}));
    assert_eq!(
        victim.recv_all(),
        vec![Message::Close(Some(1011), "internal error".into())]
    );
    victim.close(1011, "");
    assert!(victim.is_closed());
    assert_eq!(
        log.items(),
        vec![closed(1011, "internal error", CloseCause::Local { answered: true })]
    );
    drop(victim);
    assert_eq!(log.len(), 1);

    assert_ping_pong(&mut bystander);
    let mut next = server.connect("/ws").unwrap();
    assert_ping_pong(&mut next);
    assert_eq!(log.len(), 1);
}

#[test]
fn panicking_handler_then_abrupt_end_runs_the_disconnect_hook_once() {
    let log = Log::new();
    let server = serve(&log);
    let mut client = server.connect("/ws").unwrap();
    client.send_event("boom", &json!({}));
    assert_eq!(client.close_code(), Some(1011));
    client.disconnect();
    assert_eq!(
        log.items(),
        vec![closed(1011, "internal error", CloseCause::Local { answered: false })]
    );
}

#[test]
fn panics_in_every_kind_of_connection_handler_close_1011() {
    quiet_deliberate_panics();
    fn boom(what: &str) -> ! {
        panic!("{DELIBERATE}: {what}")
    }
    type Trigger = fn(&mut TestClient);
    let cases: Vec<(&str, App, Trigger)> = vec![
        (
            "on_connect",
            App::builder()
                .route(Route::new("/ws"))
                .on_connect(|_| boom("connect"))
                .build(),
            |_| {},
        ),
        (
            "on_text",
            App::builder()
                .route(Route::new("/ws"))
                .on_text(|_, _| boom("text"))
                .build(),
            |c| c.send_text("x"),
        ),
        (
            "on_binary",
            App::builder()
                .route(Route::new("/ws"))
                .on_binary(|_, _| boom("binary"))
                .build(),
            |c| c.send_binary(b"x"),
        ),
        (
            "on_unknown_event",
            App::builder()
                .route(Route::new("/ws"))
                .on_unknown_event(|_, _| boom("unknown"))
                .build(),
            |c| c.send_event("nobody", &()),
        ),
        (
            "on_no_event",
            App::builder()
                .route(Route::new("/ws"))
                .on_no_event(|_, _| boom("no event"))
                .build(),
            |c| c.send_text("[]"),
        ),
        (
            "on_non_json",
            App::builder()
                .route(Route::new("/ws"))
                .on_non_json(|_, _| boom("non json"))
                .build(),
            |c| c.send_text("hello"),
        ),
        (
            "event middleware",
            App::builder()
                .route(Route::new("/ws"))
                .event_middleware(|_, _| -> Flow { boom("middleware") })
                .on("x", |_, _| {})
                .build(),
            |c| c.send_event("x", &()),
        ),
        (
            "typed handler",
            App::builder()
                .route(Route::new("/ws"))
                .on_typed("x", |_, _: Value| boom("typed"))
                .build(),
            |c| c.send_event("x", &()),
        ),
        (
            "ack callback",
            App::builder()
                .route(Route::new("/ws"))
                .on("ask", |ctx, _| {
                    ctx.request_ack("q", &(), Duration::from_secs(5), |_, _| boom("ack"))
                        .unwrap();
                })
                .build(),
            |c| {
                c.send_event("ask", &());
                let n = c.recv_json().unwrap()["ack"].as_u64().unwrap();
                c.send_ack(n, &());
            },
        ),
    ];
    for (what, app, trigger) in cases {
        let server = TestServer::new(app);
        let mut client = server.connect("/ws").unwrap();
        trigger(&mut client);
        assert_eq!(
            client.recv_all(),
            vec![Message::Close(Some(1011), "internal error".into())],
            "{what}"
        );
        // The next connection is served normally.
        let next = server.connect("/ws");
        assert!(next.is_ok(), "{what}");
    }
}

#[test]
fn panicking_ack_timeout_callback_closes_1011() {
    quiet_deliberate_panics();
    let app = App::builder()
        .route(Route::new("/ws"))
        .on("ask", |ctx, _| {
            ctx.request_ack("q", &(), Duration::from_secs(1), |_, _| {
                panic!("{DELIBERATE}: ack timeout")
            })
            .unwrap();
        })
        .build();
    let server = TestServer::new(app);
    let mut client = server.connect("/ws").unwrap();
    client.send_event("ask", &());
    assert_eq!(client.recv_json().unwrap()["event"], "q");
    server.advance(Duration::from_secs(1));
    assert_eq!(
        client.recv_all(),
        vec![Message::Close(Some(1011), "internal error".into())]
    );
}

#[test]
fn panicking_disconnect_hook_does_not_affect_other_connections() {
    quiet_deliberate_panics();
    let app = App::builder()
        .route(Route::new("/ws"))
        .on("ping", |ctx, _| ctx.send_event("pong", &json!({})).unwrap())
        .on_disconnect(|_, _| panic!("{DELIBERATE}: disconnect"))
        .build();
    let server = TestServer::new(app);
    let mut a = server.connect("/ws").unwrap();
    let mut b = server.connect("/ws").unwrap();
    a.close(1000, "");
    a.disconnect();
    assert_eq!(server.open_connections(), 1);
    assert_ping_pong(&mut b);
    let mut c = server.connect("/ws").unwrap();
    assert_ping_pong(&mut c);
}

// --- lifespan ----------------------------------------------------------------------------------

#[test]
fn startup_and_shutdown_hooks_run_in_the_order_added() {
    let log = Log::<&str>::new();
    let hook = |name: &'static str| {
        let log = log.clone();
        move || log.push(name)
    };
    let app = App::builder()
        .on_startup(hook("start 1"))
        .on_shutdown(hook("stop 1"))
        .on_startup(hook("start 2"))
        .on_shutdown(hook("stop 2"))
        .build();
    assert!(log.items().is_empty(), "hooks ran before the server started");
    app.startup();
    assert_eq!(log.items(), ["start 1", "start 2"]);
    app.shutdown();
    assert_eq!(log.items(), ["start 1", "start 2", "stop 1", "stop 2"]);
}

#[test]
fn a_panicking_lifespan_hook_does_not_stop_the_others() {
    quiet_deliberate_panics();
    let log = Log::<&str>::new();
    let (a, b, c, d) = (log.clone(), log.clone(), log.clone(), log.clone());
    let app = App::builder()
        .on_startup(move || a.push("start 1"))
        .on_startup(|| panic!("{DELIBERATE}: startup"))
        .on_startup(move || b.push("start 3"))
        .on_shutdown(|| panic!("{DELIBERATE}: shutdown"))
        .on_shutdown(move || c.push("stop 2"))
        .on_shutdown(move || d.push("stop 3"))
        .build();
    app.startup();
    app.shutdown();
    assert_eq!(log.items(), ["start 1", "start 3", "stop 2", "stop 3"]);
}

/// A mailbox that overflows (more bytes waiting than the output's hard limit, while the
/// driver is away) closes the connection with 1008 under the default policy when the
/// driver takes its mail; what fit is still delivered first.
#[test]
#[allow(clippy::disallowed_methods)] // a bare session needs a starting instant
fn mailbox_overflow_closes_a_slow_consumer_with_1008() {
    use eventum_core::app::HandleError;
    use eventum_core::driver::Endpoint;
    use eventum_core::Config;
    let log = Log::new();
    let config = Config::builder()
        .water_marks(2048, 1024)
        .max_backlog(4096)
        .build()
        .unwrap();
    let endpoint = Endpoint::new(app(&log).config(config).build());
    let now = std::time::Instant::now();
    let mut session = endpoint.admit(now, None).unwrap();
    session.handle_input(now, &upgrade_request("/ws", &[]));
    let n = session.poll_transmit().len();
    session.transmitted(n);
    let handle = endpoint.connection(session.id()).unwrap();
    let message = "m".repeat(100);
    let accepted = (0..100).take_while(|_| handle.send_text(&message).is_ok()).count();
    assert!(accepted > 10 && accepted < 100, "{accepted} of 100 fit in 4 KiB");
    assert_eq!(handle.send_text(&message), Err(HandleError::Full));
    session.handle_mail(now);
    let out: Vec<u8> = session.poll_transmit().chunks().flatten().copied().collect();
    let frame = [&[0x81, 100][..], message.as_bytes()].concat();
    assert_eq!(
        out,
        [frame.repeat(accepted), b"\x88\x0f\x03\xf0slow consumer".to_vec()].concat()
    );
    assert_eq!(
        log.items(),
        vec![closed(1008, "slow consumer", CloseCause::SlowConsumer)]
    );
    // The connection can send nothing more: a send is refused now, not accepted and dropped.
    assert_eq!(handle.send_text(&message), Err(HandleError::Closed));
}
