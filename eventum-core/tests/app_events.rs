//! Messages on an open connection of an `App`, driven through `TestServer`: event
//! dispatch, typed events and validation errors, fallbacks, raw text/binary handlers,
//! acknowledgements both ways, flags and typed state, and event middleware.

mod common;

use std::time::Duration;

use eventum_core::app::{AckError, App, AppBuilder, Context, EventMessage, Flow, ReplyError, Route};
use eventum_core::testing::{Message, TestClient, TestServer};
use eventum_core::CloseCode;
use serde::Deserialize;
use serde_json::{json, Value};

use common::*;

/// A builder with the route `/ws` and a `ping` event answered with `pong`, so tests can
/// check the connection still works and that nothing was queued before the pong.
fn base() -> AppBuilder {
    App::builder().route(Route::new("/ws")).on("ping", |ctx, _| {
        ctx.send_event("pong", &json!({})).unwrap();
    })
}

fn connect(app: App) -> (TestServer, TestClient) {
    let server = TestServer::new(app);
    let client = server.connect("/ws").unwrap();
    (server, client)
}

/// Nothing else was sent, and the connection still answers.
fn assert_still_serving(client: &mut TestClient) {
    assert_quiet_and_open(client);
    client.send_event("ping", &json!({}));
    assert_eq!(
        client.recv_all(),
        vec![Message::Text(r#"{"event":"pong","data":{}}"#.to_owned())]
    );
}

// --- dispatch ------------------------------------------------------------------------------

#[test]
fn events_go_to_the_handler_registered_for_their_name() {
    let (a_calls, b_calls) = (Counter::new(), Counter::new());
    let (a, b) = (a_calls.clone(), b_calls.clone());
    let app = base()
        .on("a", move |ctx, event| {
            a.hit();
            ctx.send_json(&json!({"handler": "a", "name": event.name(), "whole": event.value()}))
                .unwrap();
        })
        .on("b", move |ctx, event| {
            b.hit();
            let reply = json!({
                "handler": "b",
                "name": event.name(),
                "whole": event.value(),
                "data": event.data(),
                "x": event.get("x"),
                "id": event.id(),
            });
            ctx.send_json(&reply).unwrap();
        })
        .build();
    let (_server, mut client) = connect(app);

    let sent = json!({"event": "b", "x": 1, "data": {"y": [2, 3]}, "nested": {"deep": true}});
    client.send_json(&sent);
    assert_eq!(
        recv_json(&mut client),
        json!({"handler": "b", "name": "b", "whole": sent, "data": {"y": [2, 3]}, "x": 1, "id": null})
    );
    assert_eq!((a_calls.get(), b_calls.get()), (0, 1));

    client.send_text(r#"  {"event":"a"}  "#);
    assert_eq!(
        recv_json(&mut client),
        json!({"handler": "a", "name": "a", "whole": {"event": "a"}})
    );
    assert_eq!((a_calls.get(), b_calls.get()), (1, 1));
    assert_still_serving(&mut client);
}

#[derive(Debug, Deserialize)]
struct User {
    name: String,
    age: u8,
}

#[derive(Debug, Deserialize)]
struct Join {
    room: String,
    user: User,
}

/// `join` is typed and sent flat; `echo` is typed and sent with the `{"event", "data"}`
/// envelope: `on_typed` reads `data` when there is one, the whole object otherwise.
fn typed_app(builder: AppBuilder) -> App {
    #[derive(Deserialize)]
    struct Echo {
        text: String,
    }
    builder
        .on_typed("join", |ctx, join: Join| {
            let reply = json!({
                "joined": join.room,
                "name": join.user.name,
                "age": join.user.age,
                "event": ctx.event_name(),
            });
            ctx.send_json(&reply).unwrap();
        })
        .on_typed("echo", |ctx, echo: Echo| {
            ctx.send_event("echo", &echo.text).unwrap();
        })
        .build()
}

#[test]
fn typed_handler_gets_the_deserialized_struct() {
    let (_server, mut client) = connect(typed_app(base()));
    client.send_json(&json!({"event": "join", "room": "lobby", "user": {"name": "ada", "age": 36}}));
    assert_eq!(
        recv_json(&mut client),
        json!({"joined": "lobby", "name": "ada", "age": 36, "event": "join"})
    );
    client.send_event("echo", &json!({"text": "hi"}));
    assert_eq!(recv_json(&mut client), json!({"event": "echo", "data": "hi"}));
}

const DEFAULT_VALIDATION_ERROR: &str = r#"{"event":"validation_error","message":"Invalid data received"}"#;

#[test]
fn invalid_typed_event_gets_the_exact_validation_error_and_the_connection_stays_open() {
    let (_server, mut client) = connect(typed_app(base()));
    let invalid = [
        json!({"event": "join", "room": 5, "user": {"name": "ada", "age": 36}}),
        json!({"event": "join", "user": {"name": "ada", "age": 36}}),
        json!({"event": "join", "room": "r", "user": {"name": "ada", "age": 300}}),
        json!({"event": "join"}),
        json!({"event": "echo", "data": "not an object"}),
    ];
    for event in invalid {
        client.send_json(&event);
        assert_eq!(
            client.recv_all(),
            vec![Message::Text(DEFAULT_VALIDATION_ERROR.to_owned())],
            "{event}"
        );
    }
    // Still open, and valid events still reach the handler.
    client.send_json(&json!({"event": "join", "room": "r", "user": {"name": "bob", "age": 1}}));
    assert_eq!(recv_json(&mut client)["joined"], "r");
    assert_still_serving(&mut client);
}

#[test]
fn validation_message_is_configurable() {
    let (_server, mut client) = connect(typed_app(base().validation_message("Bad payload")));
    client.send_json(&json!({"event": "join", "room": 1}));
    assert_eq!(
        recv_text(&mut client),
        r#"{"event":"validation_error","message":"Bad payload"}"#
    );
}

fn details_for(client: &mut TestClient, event: Value) -> Value {
    client.send_json(&event);
    let reply = recv_json(client);
    assert_eq!(reply["event"], "validation_error", "{reply}");
    assert_eq!(reply["message"], "Invalid data received", "{reply}");
    reply["details"].clone()
}

#[test]
fn validation_details_name_the_event_the_field_path_and_the_reason() {
    let (_server, mut client) = connect(typed_app(base().validation_details(true)));

    let details = details_for(
        &mut client,
        json!({"event": "join", "room": 5, "user": {"name": "ada", "age": 36}}),
    );
    assert_eq!(details["event"], "join");
    assert_eq!(details["path"], "room");
    assert!(field(&details, "reason").contains("invalid type"), "{details}");

    let details = details_for(
        &mut client,
        json!({"event": "join", "room": "r", "user": {"name": "ada", "age": "old"}}),
    );
    assert_eq!(
        (details["event"].as_str(), details["path"].as_str()),
        (Some("join"), Some("user.age"))
    );
    assert!(field(&details, "reason").contains("u8"), "{details}");

    let details = details_for(
        &mut client,
        json!({"event": "join", "room": "r", "user": {"name": "ada", "age": 300}}),
    );
    assert_eq!(details["path"], "user.age");
    assert!(field(&details, "reason").contains("300"), "{details}");

    let details = details_for(&mut client, json!({"event": "echo", "data": {"text": false}}));
    assert_eq!(
        (details["event"].as_str(), details["path"].as_str()),
        (Some("echo"), Some("data.text"))
    );

    let details = details_for(&mut client, json!({"event": "join", "user": {"name": "ada", "age": 1}}));
    assert_eq!(details["event"], "join");
    assert!(field(&details, "reason").contains("missing field `room`"), "{details}");
    assert_still_serving(&mut client);
}

#[test]
fn validation_details_path_names_a_missing_field() {
    let (_server, mut client) = connect(typed_app(base().validation_details(true)));
    let details = details_for(&mut client, json!({"event": "join", "user": {"name": "ada", "age": 1}}));
    assert_eq!(details["path"], "room");
    let details = details_for(
        &mut client,
        json!({"event": "join", "room": "r", "user": {"name": "ada"}}),
    );
    assert_eq!(details["path"], "user.age");
}

/// Sends each invalid `join` to an app without and one with (pass-through) event
/// middleware, which parses the payload to a JSON value before the typed handler runs,
/// and returns the two validation replies for each.
fn replies_with_and_without_middleware() -> Vec<(Value, Value)> {
    let events = [
        json!({"event": "join", "room": 5, "user": {"name": "ada", "age": 36}}),
        json!({"event": "join", "room": "r", "user": {"name": "ada", "age": 300}}),
    ];
    let plain = typed_app(base().validation_details(true));
    let with_middleware = typed_app(base().validation_details(true).event_middleware(|_, _| Flow::Continue));
    let (_s1, mut c1) = connect(plain);
    let (_s2, mut c2) = connect(with_middleware);
    events
        .iter()
        .map(|event| {
            c1.send_json(event);
            c2.send_json(event);
            (recv_json(&mut c1), recv_json(&mut c2))
        })
        .collect()
}

#[test]
fn validation_details_name_the_same_field_with_event_middleware() {
    for (plain, with_middleware) in replies_with_and_without_middleware() {
        assert_eq!(plain["event"], "validation_error");
        assert_eq!(plain["details"]["event"], with_middleware["details"]["event"]);
        assert_eq!(plain["details"]["path"], with_middleware["details"]["path"]);
    }
}

#[test]
fn validation_reply_is_the_same_with_event_middleware() {
    for (plain, with_middleware) in replies_with_and_without_middleware() {
        assert_eq!(plain, with_middleware);
    }
}

// --- fallbacks -----------------------------------------------------------------------------

/// One of every message that is not a routable event.
fn unroutable(client: &mut TestClient) {
    client.send_json(&json!({"event": "nobody-listens", "x": 1}));
    client.send_text("hello, not JSON");
    client.send_text(r#"{"event": "cut"#);
    client.send_json(&json!({"room": "a"}));
    client.send_json(&json!(["event", "ping"]));
    client.send_json(&json!({"event": 5}));
    client.send_text("42");
    client.send_json(&json!({"ack": 99, "data": 1})); // answers no request
    client.send_binary(&[0, 1, 2]);
}

#[test]
fn unroutable_messages_are_ignored_by_default() {
    let (_server, mut client) = connect(base().build());
    unroutable(&mut client);
    assert_still_serving(&mut client);
}

#[test]
fn each_fallback_gets_its_kind_of_message() {
    let app = base()
        .on_unknown_event(|ctx, event| {
            let reply = json!({"fallback": "unknown", "name": event.name(), "whole": event.value()});
            ctx.send_json(&reply).unwrap();
        })
        .on_no_event(|ctx, text| {
            ctx.send_json(&json!({"fallback": "no_event", "text": text})).unwrap();
        })
        .on_non_json(|ctx, text| {
            ctx.send_json(&json!({"fallback": "non_json", "text": text})).unwrap();
        })
        .on_binary(|ctx, bytes| {
            ctx.send_json(&json!({"fallback": "binary", "bytes": bytes})).unwrap();
        })
        .build();
    let (_server, mut client) = connect(app);
    unroutable(&mut client);
    let got: Vec<Value> = std::iter::from_fn(|| client.recv_json()).collect();
    assert_eq!(
        got,
        vec![
            json!({"fallback": "unknown", "name": "nobody-listens", "whole": {"event": "nobody-listens", "x": 1}}),
            json!({"fallback": "non_json", "text": "hello, not JSON"}),
            json!({"fallback": "non_json", "text": r#"{"event": "cut"#}),
            json!({"fallback": "no_event", "text": r#"{"room":"a"}"#}),
            json!({"fallback": "no_event", "text": r#"["event","ping"]"#}),
            json!({"fallback": "no_event", "text": r#"{"event":5}"#}),
            json!({"fallback": "no_event", "text": "42"}),
            json!({"fallback": "binary", "bytes": [0, 1, 2]}),
        ]
    );
    // Registered events do not reach the fallbacks.
    assert_still_serving(&mut client);
}

#[test]
fn on_text_takes_every_text_message_raw() {
    let handler_calls = Counter::new();
    let calls = handler_calls.clone();
    let app = App::builder()
        .route(Route::new("/ws"))
        .on_text(|ctx, text| ctx.send_text(text).unwrap())
        .on("x", move |_, _| calls.hit())
        .build();
    let (_server, mut client) = connect(app);
    let texts = [r#"{"event":"x"}"#, "plain words", "", "ünïcödé ✓", r#"{"ack":1}"#];
    for text in texts {
        client.send_text(text);
    }
    let expected: Vec<Message> = texts.iter().map(|t| Message::Text((*t).to_owned())).collect();
    assert_eq!(client.recv_all(), expected);
    assert_eq!(handler_calls.get(), 0, "on_text must take events too");
}

#[test]
fn on_binary_echoes_binary_messages() {
    let app = App::builder()
        .route(Route::new("/ws"))
        .on_binary(|ctx, bytes| ctx.send_binary(bytes).unwrap())
        .build();
    let (_server, mut client) = connect(app);
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    client.send_binary(&[0, 255, 1]);
    client.send_binary(&[]);
    client.send_binary(&big);
    assert_eq!(
        client.recv_all(),
        vec![
            Message::Binary(vec![0, 255, 1]),
            Message::Binary(vec![]),
            Message::Binary(big)
        ]
    );
}

// --- acknowledgements ------------------------------------------------------------------------

#[test]
fn reply_carries_the_event_name_and_its_id() {
    let app = base()
        .on("get", |ctx, event| {
            let key = event.get("key").cloned().unwrap_or(Value::Null);
            ctx.reply(&json!({"key": key, "value": 42})).unwrap();
        })
        .build();
    let (_server, mut client) = connect(app);
    client.send_json(&json!({"event": "get", "id": "r1", "key": "a"}));
    assert_eq!(
        recv_text(&mut client),
        r#"{"event":"get","id":"r1","data":{"key":"a","value":42}}"#
    );
    client.send_json(&json!({"id": 7, "event": "get"}));
    assert_eq!(
        recv_text(&mut client),
        r#"{"event":"get","id":7,"data":{"key":null,"value":42}}"#
    );
    client.send_json(&json!({"event": "get", "id": {"seq": [1, 2]}}));
    assert_eq!(recv_json(&mut client)["id"], json!({"seq": [1, 2]}));
}

#[test]
fn typed_handlers_can_reply_too() {
    #[derive(Deserialize)]
    struct Add {
        a: i64,
        b: i64,
    }
    let app = base()
        .on_typed("add", |ctx, add: Add| {
            let id = ctx.event_id().cloned();
            ctx.reply(&json!({"sum": add.a + add.b, "id_seen": id})).unwrap();
        })
        .build();
    let (_server, mut client) = connect(app);
    client.send_json(&json!({"event": "add", "id": 3, "a": 1, "b": 2}));
    assert_eq!(
        recv_text(&mut client),
        r#"{"event":"add","id":3,"data":{"id_seen":3,"sum":3}}"#
    );
}

#[test]
fn handlers_can_send_the_validation_error_themselves() {
    let app = base()
        .validation_details(true)
        .on("age", |ctx, event| match event.get("age").and_then(Value::as_u64) {
            Some(age) if age < 150 => ctx.send_event("ok", &age).unwrap(),
            _ => ctx.send_validation_error("age", "must be below 150").unwrap(),
        })
        .build();
    let (_server, mut client) = connect(app);
    client.send_json(&json!({"event": "age", "age": 200}));
    assert_eq!(
        recv_json(&mut client),
        json!({
            "event": "validation_error",
            "message": "Invalid data received",
            "details": {"event": "age", "path": "age", "reason": "must be below 150"},
        })
    );
    client.send_json(&json!({"event": "age", "age": 20}));
    assert_eq!(recv_json(&mut client), json!({"event": "ok", "data": 20}));
}

#[test]
fn reply_to_an_event_without_id_is_a_no_id_error() {
    let app = base()
        .on_connect(|ctx| {
            let outcome = ctx.reply(&1);
            ctx.send_json(&json!({"connect_no_id": matches!(outcome, Err(ReplyError::NoId))}))
                .unwrap();
        })
        .on("get", |ctx, _| {
            let outcome = ctx.reply(&1);
            ctx.send_json(&json!({"no_id": matches!(outcome, Err(ReplyError::NoId))}))
                .unwrap();
        })
        .build();
    let (_server, mut client) = connect(app);
    assert_eq!(recv_json(&mut client), json!({"connect_no_id": true}));
    client.send_event("get", &json!({}));
    // Only the handler's own report: the failed reply sent nothing.
    assert_eq!(client.recv_all(), vec![Message::Text(r#"{"no_id":true}"#.to_owned())]);
}

type AckResults = Log<(String, Result<Value, AckError>)>;

/// `ask` sends an acknowledgement request `confirm` labelled with the event's `label`
/// and the given timeout; the callback records the outcome and tells the client.
fn ack_app(results: &AckResults, timeout: Duration) -> App {
    let results = results.clone();
    base()
        .on("ask", move |ctx, event| {
            let label = event.get("label").and_then(Value::as_str).unwrap_or("").to_owned();
            let results = results.clone();
            let tag = label.clone();
            let n = ctx
                .request_ack("confirm", &json!({ "label": label }), timeout, move |ctx, outcome| {
                    results.push((tag.clone(), outcome.clone()));
                    let _ = ctx.send_event("settled", &json!({"label": tag, "ok": outcome.is_ok()}));
                })
                .unwrap();
            ctx.send_event("asked", &n).unwrap();
        })
        .build()
}

/// Sends `ask` and returns the ack number of the request the client received, checking
/// the request's envelope and that it is the number `request_ack` returned.
fn ask(client: &mut TestClient, label: &str) -> u64 {
    client.send_json(&json!({"event": "ask", "label": label}));
    let request = recv_json(client);
    let n = request["ack"].as_u64().expect("the request carries an ack number");
    assert_eq!(request, json!({"event": "confirm", "ack": n, "data": {"label": label}}));
    assert_eq!(recv_json(client), json!({"event": "asked", "data": n}));
    n
}

#[test]
fn server_ack_request_reaches_its_callback_with_the_clients_data() {
    let results = AckResults::new();
    let (server, mut client) = connect(ack_app(&results, Duration::from_secs(5)));
    client.send_json(&json!({"event": "ask", "label": "delete?"}));
    assert_eq!(
        recv_text(&mut client),
        r#"{"event":"confirm","ack":1,"data":{"label":"delete?"}}"#
    );
    assert_eq!(recv_json(&mut client), json!({"event": "asked", "data": 1}));
    assert!(results.items().is_empty());

    client.send_ack(1, &json!({"answer": "yes"}));
    assert_eq!(
        results.items(),
        vec![("delete?".to_owned(), Ok(json!({"answer": "yes"})))]
    );
    assert_eq!(
        recv_json(&mut client),
        json!({"event": "settled", "data": {"label": "delete?", "ok": true}})
    );
    // A second answer, or the deadline passing, does not run the callback again.
    client.send_ack(1, &"again");
    server.advance(Duration::from_secs(10));
    assert_eq!(results.len(), 1);
    assert_still_serving(&mut client);
}

#[test]
fn ack_numbers_are_unique_and_route_answers_to_their_own_callback() {
    let results = AckResults::new();
    let (_server, mut client) = connect(ack_app(&results, Duration::from_secs(5)));
    let n1 = ask(&mut client, "first");
    let n2 = ask(&mut client, "second");
    assert_ne!(n1, n2);
    // Answer out of order; an ack without data gives null.
    client.send_json(&json!({"ack": n2}));
    client.send_ack(n1, &"one");
    let items = results.items();
    assert_eq!(
        items,
        vec![
            ("second".to_owned(), Ok(Value::Null)),
            ("first".to_owned(), Ok(json!("one")))
        ]
    );
}

#[test]
fn ack_timeout_runs_the_callback_once_with_timeout() {
    let results = AckResults::new();
    let (server, mut client) = connect(ack_app(&results, Duration::from_secs(5)));
    client.send_json(&json!({"event": "ask", "label": "slow"}));
    let n = recv_json(&mut client)["ack"].as_u64().unwrap();
    let _asked = recv_json(&mut client);

    server.advance(Duration::from_millis(4_999));
    assert!(results.items().is_empty(), "the timeout fired early");
    server.advance(Duration::from_millis(1));
    assert_eq!(results.items(), vec![("slow".to_owned(), Err(AckError::Timeout))]);
    assert_eq!(
        recv_json(&mut client),
        json!({"event": "settled", "data": {"label": "slow", "ok": false}})
    );

    server.advance(Duration::from_secs(5));
    client.send_ack(n, &"too late");
    assert_eq!(results.len(), 1);
    assert_still_serving(&mut client);
}

#[test]
fn disconnect_before_the_ack_gives_disconnected_once() {
    for how in ["abrupt", "close frame", "drop"] {
        let results = AckResults::new();
        let (server, mut client) = connect(ack_app(&results, Duration::from_secs(5)));
        client.send_json(&json!({"event": "ask", "label": how}));
        let n = recv_json(&mut client)["ack"].as_u64().unwrap();
        match how {
            "abrupt" => client.disconnect(),
            "close frame" => client.close(1000, ""),
            _ => drop(client),
        }
        assert_eq!(
            results.items(),
            vec![(how.to_owned(), Err(AckError::Disconnected))],
            "{how}"
        );
        server.advance(Duration::from_secs(10));
        assert_eq!(results.len(), 1, "{how}: the callback ran again (ack {n})");
    }
}

// --- flags and typed state ---------------------------------------------------------------------

/// A `flags` event runs one flag operation named by `op` and answers with its result
/// and every flag afterwards.
fn flags_app() -> App {
    base()
        .on("flags", |ctx, event| {
            let arg = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
            let key = event.get("key").and_then(Value::as_str).unwrap_or("").to_owned();
            let result = match event.get("op").and_then(Value::as_str).unwrap_or("") {
                "add" => {
                    ctx.flags_mut().add(key.as_str(), arg("value"));
                    Value::Null
                }
                "add_many" => {
                    let pairs = arg("pairs").as_object().cloned().unwrap_or_default();
                    ctx.flags_mut().add_many(pairs);
                    Value::Null
                }
                "get" => ctx.flags().get(&key).cloned().unwrap_or(Value::Null),
                "remove" => ctx.flags_mut().remove(&key).unwrap_or(Value::Null),
                "remove_many" => {
                    let keys: Vec<String> = serde_json::from_value(arg("keys")).unwrap();
                    ctx.flags_mut().remove_many(keys.iter().map(String::as_str));
                    Value::Null
                }
                "clear" => {
                    ctx.flags_mut().clear();
                    Value::Null
                }
                "all_is_a_copy" => {
                    // Change the copy and the flags; neither change shows in the other.
                    let mut copy = ctx.flags().all();
                    copy.insert("only_in_copy".into(), json!(true));
                    copy.remove("a");
                    ctx.flags_mut().add("only_in_flags", true);
                    json!(copy)
                }
                other => panic!("unknown op {other}"),
            };
            let all = ctx.flags().all();
            ctx.send_json(&json!({"result": result, "all": all, "len": ctx.flags().len()}))
                .unwrap();
        })
        .build()
}

fn flags_op(client: &mut TestClient, op: Value) -> Value {
    let mut event = op;
    event["event"] = json!("flags");
    client.send_json(&event);
    recv_json(client)
}

#[test]
fn flag_operations_through_a_connection() {
    let (server, mut client) = connect(flags_app());
    let r = flags_op(&mut client, json!({"op": "add", "key": "a", "value": 1}));
    assert_eq!((r["all"].clone(), r["len"].clone()), (json!({"a": 1}), json!(1)));
    let r = flags_op(
        &mut client,
        json!({"op": "add", "key": "a", "value": {"replaced": true}}),
    );
    assert_eq!(r["all"], json!({"a": {"replaced": true}}));
    let r = flags_op(
        &mut client,
        json!({"op": "add_many", "pairs": {"b": "two", "c": [3], "d": null}}),
    );
    assert_eq!(
        r["all"],
        json!({"a": {"replaced": true}, "b": "two", "c": [3], "d": null})
    );
    assert_eq!(flags_op(&mut client, json!({"op": "get", "key": "b"}))["result"], "two");

    // `all` is a copy: changing it does not change the flags, and the reverse.
    let r = flags_op(&mut client, json!({"op": "all_is_a_copy"}));
    assert_eq!(
        r["result"],
        json!({"b": "two", "c": [3], "d": null, "only_in_copy": true})
    );
    assert_eq!(
        r["all"],
        json!({"a": {"replaced": true}, "b": "two", "c": [3], "d": null, "only_in_flags": true})
    );
    assert_eq!(client.server_flags().get("only_in_copy"), None);

    let r = flags_op(&mut client, json!({"op": "remove", "key": "a"}));
    assert_eq!(r["result"], json!({"replaced": true}));
    assert_eq!(r["len"], 4);
    let r = flags_op(&mut client, json!({"op": "remove", "key": "a"}));
    assert_eq!(r["result"], Value::Null);
    let r = flags_op(&mut client, json!({"op": "remove_many", "keys": ["b", "c", "missing"]}));
    assert_eq!(r["all"], json!({"d": null, "only_in_flags": true}));
    let r = flags_op(&mut client, json!({"op": "clear"}));
    assert_eq!((r["all"].clone(), r["len"].clone()), (json!({}), json!(0)));
    assert!(client.server_flags().is_empty());

    // Flags belong to one connection.
    flags_op(&mut client, json!({"op": "add", "key": "mine", "value": 1}));
    let mut other = server.connect("/ws").unwrap();
    let r = flags_op(&mut other, json!({"op": "get", "key": "mine"}));
    assert_eq!((r["result"].clone(), r["all"].clone()), (Value::Null, json!({})));
    assert_eq!(client.server_flags().get("mine"), Some(&json!(1)));
}

#[test]
fn typed_state_lives_with_its_connection() {
    struct Visits(u32);
    struct Nick(String);
    let app = App::builder()
        .route(Route::new("/ws").on_upgrade(|upgrade| {
            let nick = upgrade.query_param("nick").unwrap_or("anon").to_owned();
            upgrade.extensions_mut().insert(Nick(nick));
            Ok(())
        }))
        .on_connect(|ctx| {
            ctx.extensions_mut().insert(Visits(0));
        })
        .on("visit", |ctx, _| {
            let visits = ctx.extensions_mut().get_mut::<Visits>().unwrap();
            visits.0 += 1;
            let count = visits.0;
            let nick = ctx.extensions().get::<Nick>().map(|n| n.0.clone());
            ctx.send_json(&json!({"nick": nick, "visits": count})).unwrap();
        })
        .on("forget", |ctx, _| {
            let old = ctx.extensions_mut().remove::<Visits>().map(|v| v.0);
            let gone = ctx.extensions().get::<Visits>().is_none();
            ctx.send_json(&json!({"old": old, "gone": gone})).unwrap();
        })
        .build();
    let server = TestServer::new(app);
    let mut ada = server.connect("/ws?nick=ada").unwrap();
    let mut anon = server.connect("/ws").unwrap();
    ada.send_event("visit", &());
    ada.send_event("visit", &());
    anon.send_event("visit", &());
    assert_eq!(
        std::iter::from_fn(|| ada.recv_json()).collect::<Vec<_>>(),
        vec![json!({"nick": "ada", "visits": 1}), json!({"nick": "ada", "visits": 2})]
    );
    assert_eq!(recv_json(&mut anon), json!({"nick": "anon", "visits": 1}));
    ada.send_event("forget", &());
    assert_eq!(recv_json(&mut ada), json!({"old": 2, "gone": true}));
}

// --- event middleware ------------------------------------------------------------------------

/// An app whose `work` handler counts its calls and answers `done`; `middleware` runs
/// before it.
fn middleware_app(
    handled: &Counter,
    middleware: impl Fn(&mut Context<'_>, &EventMessage) -> Flow + Send + Sync + 'static,
) -> App {
    let handled = handled.clone();
    base()
        .event_middleware(middleware)
        .on("work", move |ctx, event| {
            handled.hit();
            ctx.send_event("done", event.data().unwrap_or(&Value::Null)).unwrap();
        })
        .build()
}

#[test]
fn event_middleware_continue_passes_the_event_on() {
    let handled = Counter::new();
    let seen = Log::<Value>::new();
    let s = seen.clone();
    let app = middleware_app(&handled, move |_, event| {
        s.push(json!([event.name(), event.value()]));
        Flow::Continue
    });
    let (_server, mut client) = connect(app);
    client.send_event("work", &7);
    assert_eq!(recv_json(&mut client), json!({"event": "done", "data": 7}));
    assert_eq!(handled.get(), 1);
    assert_eq!(seen.items(), vec![json!(["work", {"event": "work", "data": 7}])]);
}

#[test]
fn event_middleware_drop_discards_the_event_silently() {
    let handled = Counter::new();
    let app = middleware_app(&handled, |_, event| match event.data() {
        Some(data) if data == "secret" => Flow::Drop,
        _ => Flow::Continue,
    });
    let (_server, mut client) = connect(app);
    client.send_event("work", &"secret");
    assert_eq!(handled.get(), 0);
    assert_still_serving(&mut client);
    client.send_event("work", &"public");
    assert_eq!(recv_json(&mut client), json!({"event": "done", "data": "public"}));
}

#[test]
fn event_middleware_reject_sends_its_error_event_instead() {
    let handled = Counter::new();
    let app = middleware_app(&handled, |ctx, _| match ctx.flags().get("user") {
        Some(_) => Flow::Continue,
        None => Flow::Reject(json!({"event": "error", "message": "login first"})),
    });
    let (_server, mut client) = connect(app);
    client.send_event("work", &1);
    assert_eq!(recv_text(&mut client), r#"{"event":"error","message":"login first"}"#);
    assert_eq!(handled.get(), 0);
    // Middleware runs before every event, and the connection stays open.
    client.send_event("ping", &json!({}));
    assert_eq!(recv_json(&mut client)["event"], "error");
    // A rejected request gets its id back, so the client need not wait for its timeout.
    client.send_json(&json!({"event": "work", "id": "r7", "data": 1}));
    assert_eq!(
        recv_json(&mut client),
        json!({"event": "error", "message": "login first", "id": "r7"})
    );
    assert_quiet_and_open(&mut client);
}

#[test]
fn event_middleware_close_closes_with_its_code() {
    let handled = Counter::new();
    let app = middleware_app(&handled, |_, _| Flow::Close(CloseCode(4001), "rate limited".into()));
    let (_server, mut client) = connect(app);
    client.send_event("work", &1);
    assert_eq!(
        client.recv_all(),
        vec![Message::Close(Some(4001), "rate limited".into())]
    );
    assert_eq!(handled.get(), 0);
    client.close(4001, "");
    assert!(client.is_closed());
}

#[test]
fn event_middleware_runs_in_the_order_added_and_stops_at_the_first_decision() {
    let log = Log::<String>::new();
    let (first, second) = (log.clone(), log.clone());
    let handled = Counter::new();
    let h = handled.clone();
    let app = base()
        .event_middleware(move |_, event| {
            first.push(format!("first {}", event.name()));
            if event.name() == "stop" {
                Flow::Drop
            } else {
                Flow::Continue
            }
        })
        .event_middleware(move |_, event| {
            second.push(format!("second {}", event.name()));
            Flow::Continue
        })
        .on("go", move |_, _| h.hit())
        .on("stop", |_, _| panic!("a dropped event reached its handler"))
        .build();
    let (_server, mut client) = connect(app);
    client.send_event("go", &());
    client.send_event("stop", &());
    assert_eq!(log.items(), ["first go", "second go", "first stop"]);
    assert_eq!(handled.get(), 1);
    assert_quiet_and_open(&mut client);
}

#[test]
fn event_middleware_can_rate_limit_with_flags() {
    let handled = Counter::new();
    let app = middleware_app(&handled, |ctx, _| {
        let count = ctx.flags().get("count").and_then(Value::as_u64).unwrap_or(0) + 1;
        ctx.flags_mut().add("count", count);
        if count > 2 {
            Flow::Reject(json!({"event": "error", "message": "slow down"}))
        } else {
            Flow::Continue
        }
    });
    let (_server, mut client) = connect(app);
    for i in 0..4 {
        client.send_event("work", &i);
    }
    let replies: Vec<Value> = std::iter::from_fn(|| client.recv_json()).collect();
    assert_eq!(
        replies,
        vec![
            json!({"event": "done", "data": 0}),
            json!({"event": "done", "data": 1}),
            json!({"event": "error", "message": "slow down"}),
            json!({"event": "error", "message": "slow down"}),
        ]
    );
    assert_eq!(handled.get(), 2);
    assert_eq!(client.server_flags().get("count"), Some(&json!(4)));
}

#[test]
fn typed_handlers_still_validate_behind_event_middleware() {
    let app = typed_app(base().event_middleware(|_, _| Flow::Continue));
    let (_server, mut client) = connect(app);
    client.send_json(&json!({"event": "join", "room": "r", "user": {"name": "ada", "age": 3}}));
    assert_eq!(recv_json(&mut client)["joined"], "r");
    client.send_json(&json!({"event": "join", "room": []}));
    assert_eq!(recv_text(&mut client), DEFAULT_VALIDATION_ERROR);
}
