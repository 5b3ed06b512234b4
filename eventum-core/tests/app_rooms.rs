//! Rooms and sends to other connections, driven through `TestServer` (which delivers the
//! session's actions the way an adapter does), plus the actions as an adapter sees them
//! on a bare `Session`.

mod common;

use eventum_core::app::{Action, App, ConnectionId, Route};
use eventum_core::testing::{Message, TestClient, TestServer};
use eventum_core::SharedFrame;
use serde_json::{json, Value};

use common::*;

/// A chat: `join`/`leave` a `room`; `say` to a room (`others: true` skips the sender);
/// `shout` to everyone; `dm` one connection by id; `rooms` lists the sender's rooms.
/// Every delivered message is `{"event": "said", "data": {"from": id, "text": ...}}`.
/// The disconnect hook tells the rooms the connection was in that it left.
fn chat_app() -> App {
    fn said(ctx: &eventum_core::app::Context<'_>, event: &eventum_core::app::EventMessage) -> SharedFrame {
        let text = event.get("text").cloned().unwrap_or(Value::Null);
        SharedFrame::event("said", &json!({"from": ctx.id().0, "text": text})).unwrap()
    }
    fn room(event: &eventum_core::app::EventMessage) -> String {
        field(event.value(), "room").to_owned()
    }
    App::builder()
        .route(Route::new("/ws"))
        .on("join", |ctx, event| ctx.join(&room(&event)))
        .on("leave", |ctx, event| ctx.leave(&room(&event)))
        .on("say", |ctx, event| {
            let frame = said(ctx, &event);
            match event.get("others") {
                Some(Value::Bool(true)) => ctx.broadcast_others(&room(&event), frame),
                _ => ctx.broadcast(&room(&event), frame),
            }
        })
        .on("shout", |ctx, event| {
            let frame = said(ctx, &event);
            ctx.broadcast_all(frame);
        })
        .on("dm", |ctx, event| {
            let to = ConnectionId(event.get("to").and_then(Value::as_u64).unwrap());
            let frame = said(ctx, &event);
            ctx.send_to(to, frame);
        })
        .on("rooms", |ctx, _| {
            let rooms: Vec<String> = ctx.rooms().map(str::to_owned).collect();
            let in_lobby = ctx.in_room("lobby");
            ctx.send_json(&json!({"rooms": rooms, "in_lobby": in_lobby})).unwrap();
        })
        .on_disconnect(|ctx, _| {
            let rooms: Vec<String> = ctx.rooms().map(str::to_owned).collect();
            for room in rooms {
                let frame = SharedFrame::event("left", &json!({"id": ctx.id().0, "room": room})).unwrap();
                ctx.broadcast_others(&room, frame);
            }
        })
        .build()
}

fn join(client: &mut TestClient, room: &str) {
    client.send_json(&json!({"event": "join", "room": room}));
}

fn say(client: &mut TestClient, room: &str, text: &str) {
    client.send_json(&json!({"event": "say", "room": room, "text": text}));
}

fn said(from: &TestClient, text: &str) -> Value {
    json!({"event": "said", "data": {"from": from.id().0, "text": text}})
}

/// Every message received so far, each parsed as JSON text.
fn inbox(client: &mut TestClient) -> Vec<Value> {
    let messages = client.recv_all();
    messages
        .into_iter()
        .map(|m| match m {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected JSON text, got {other:?}"),
        })
        .collect()
}

fn sorted(mut ids: Vec<ConnectionId>) -> Vec<ConnectionId> {
    ids.sort();
    ids
}

#[test]
fn broadcast_reaches_exactly_the_rooms_members() {
    let server = TestServer::new(chat_app());
    let mut a = server.connect("/ws").unwrap();
    let mut b = server.connect("/ws").unwrap();
    let mut c = server.connect("/ws").unwrap();
    join(&mut a, "lobby");
    join(&mut b, "lobby");
    join(&mut c, "kitchen");
    assert_eq!(server.room_members("lobby"), sorted(vec![a.id(), b.id()]));

    say(&mut a, "lobby", "hello");
    assert_eq!(inbox(&mut a), vec![said(&a, "hello")]);
    assert_eq!(inbox(&mut b), vec![said(&a, "hello")]);
    assert_eq!(inbox(&mut c), Vec::<Value>::new());

    // A non-member may broadcast into a room; it does not receive it.
    say(&mut c, "lobby", "knock knock");
    assert_eq!(inbox(&mut a), vec![said(&c, "knock knock")]);
    assert_eq!(inbox(&mut b), vec![said(&c, "knock knock")]);
    assert_eq!(inbox(&mut c), Vec::<Value>::new());

    // An empty room reaches nobody.
    say(&mut a, "attic", "echo?");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(inbox(client), Vec::<Value>::new());
    }
}

#[test]
fn broadcast_others_excludes_the_sender() {
    let server = TestServer::new(chat_app());
    let mut a = server.connect("/ws").unwrap();
    let mut b = server.connect("/ws").unwrap();
    let mut c = server.connect("/ws").unwrap();
    for client in [&mut a, &mut b] {
        join(client, "lobby");
    }
    a.send_json(&json!({"event": "say", "room": "lobby", "text": "hi", "others": true}));
    assert_eq!(inbox(&mut a), Vec::<Value>::new());
    assert_eq!(inbox(&mut b), vec![said(&a, "hi")]);
    assert_eq!(inbox(&mut c), Vec::<Value>::new());
}

#[test]
fn broadcast_all_reaches_every_open_connection() {
    let server = TestServer::new(chat_app());
    let mut a = server.connect("/ws").unwrap();
    let mut b = server.connect("/ws").unwrap();
    let mut c = server.connect("/ws").unwrap();
    let mut gone = server.connect("/ws").unwrap();
    join(&mut a, "lobby");
    gone.disconnect();
    a.send_json(&json!({"event": "shout", "text": "fire drill"}));
    let expected = said(&a, "fire drill");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(inbox(client), vec![expected.clone()]);
    }
    assert_eq!(inbox(&mut gone), Vec::<Value>::new());
}

#[test]
fn send_to_reaches_one_connection_by_id() {
    let server = TestServer::new(chat_app());
    let mut a = server.connect("/ws").unwrap();
    let mut b = server.connect("/ws").unwrap();
    let mut c = server.connect("/ws").unwrap();
    a.send_json(&json!({"event": "dm", "to": c.id().0, "text": "psst"}));
    assert_eq!(inbox(&mut c), vec![said(&a, "psst")]);
    assert_eq!(inbox(&mut a), Vec::<Value>::new());
    assert_eq!(inbox(&mut b), Vec::<Value>::new());

    // To a connection that is gone: nothing happens, the sender stays open.
    let gone = b.id();
    drop(b);
    a.send_json(&json!({"event": "dm", "to": gone.0, "text": "hello?"}));
    a.send_json(&json!({"event": "dm", "to": u64::MAX, "text": "anyone?"}));
    assert_quiet_and_open(&mut a);
    assert_eq!(inbox(&mut c), Vec::<Value>::new());
}

#[test]
fn join_and_leave_change_membership() {
    let server = TestServer::new(chat_app());
    let mut a = server.connect("/ws").unwrap();
    let mut b = server.connect("/ws").unwrap();
    join(&mut a, "lobby");
    join(&mut a, "lobby"); // joining twice is one membership
    join(&mut a, "kitchen");
    join(&mut b, "lobby");
    a.send_event("rooms", &());
    assert_eq!(
        a.recv_json(),
        Some(json!({"rooms": ["kitchen", "lobby"], "in_lobby": true}))
    );

    a.send_json(&json!({"event": "leave", "room": "lobby"}));
    assert_eq!(server.room_members("lobby"), vec![b.id()]);
    assert_eq!(server.room_members("kitchen"), vec![a.id()]);
    a.send_event("rooms", &());
    assert_eq!(a.recv_json(), Some(json!({"rooms": ["kitchen"], "in_lobby": false})));
    // Leaving a room one is not in changes nothing.
    b.send_json(&json!({"event": "leave", "room": "kitchen"}));
    assert_eq!(server.room_members("kitchen"), vec![a.id()]);

    say(&mut b, "lobby", "still here?");
    assert_eq!(inbox(&mut a), Vec::<Value>::new());
    assert_eq!(inbox(&mut b), vec![said(&b, "still here?")]);
    a.send_json(&json!({"event": "leave", "room": "kitchen"}));
    assert_eq!(server.room_members("kitchen"), vec![]);
}

#[test]
fn a_disconnected_member_leaves_every_room_and_no_longer_receives() {
    let server = TestServer::new(chat_app());
    let mut a = server.connect("/ws").unwrap();
    let mut b = server.connect("/ws").unwrap();
    let mut c = server.connect("/ws").unwrap();
    join(&mut a, "lobby");
    join(&mut b, "lobby");
    join(&mut b, "kitchen");
    join(&mut c, "lobby");

    b.disconnect();
    assert_eq!(server.room_members("lobby"), sorted(vec![a.id(), c.id()]));
    assert_eq!(server.room_members("kitchen"), vec![]);
    // The others were told by the disconnect hook, which still saw b's rooms.
    let left = json!({"event": "left", "data": {"id": b.id().0, "room": "lobby"}});
    assert_eq!(inbox(&mut a), vec![left.clone()]);
    assert_eq!(inbox(&mut c), vec![left]);

    say(&mut a, "lobby", "bye b");
    assert_eq!(inbox(&mut b), Vec::<Value>::new());
    assert_eq!(inbox(&mut a), vec![said(&a, "bye b")]);
    assert_eq!(inbox(&mut c), vec![said(&a, "bye b")]);

    // A close handshake leaves rooms too.
    c.close(1000, "");
    assert_eq!(server.room_members("lobby"), vec![a.id()]);
}

#[test]
fn connect_hook_can_join_a_room_named_by_the_path() {
    let app = App::builder()
        .route(Route::new("/rooms/{id}"))
        .on_connect(|ctx| {
            let room = ctx.param("id").unwrap().to_owned();
            ctx.join(&room);
        })
        .on("say", |ctx, event| {
            let room = ctx.param("id").unwrap().to_owned();
            ctx.broadcast_others(&room, SharedFrame::json(event.value()).unwrap());
        })
        .build();
    let server = TestServer::new(app);
    let mut a = server.connect("/rooms/1").unwrap();
    let mut b = server.connect("/rooms/1").unwrap();
    let mut c = server.connect("/rooms/2").unwrap();
    assert_eq!(server.room_members("1"), sorted(vec![a.id(), b.id()]));
    assert_eq!(server.room_members("2"), vec![c.id()]);
    a.send_json(&json!({"event": "say", "text": "room one"}));
    assert_eq!(b.recv_json(), Some(json!({"event": "say", "text": "room one"})));
    assert_eq!(inbox(&mut a), Vec::<Value>::new());
    assert_eq!(inbox(&mut c), Vec::<Value>::new());
}

/// What an adapter sees: the session expresses rooms and sends as actions, with the
/// frame encoded once, and leaves every room when the connection ends.
#[test]
#[allow(clippy::disallowed_methods)] // a bare session needs a starting instant
fn session_expresses_rooms_and_sends_as_actions() {
    use eventum_core::frame::{encode_client_frame, OpCode};
    let now = std::time::Instant::now();
    let app = App::builder()
        .route(Route::new("/ws"))
        .on("go", |ctx, _| {
            ctx.join("a");
            ctx.join("b");
            ctx.join("a");
            ctx.broadcast("a", SharedFrame::text("to a"));
            ctx.broadcast_others("b", SharedFrame::text("to b"));
            ctx.broadcast_all(SharedFrame::text("to all"));
            ctx.send_to(ConnectionId(9), SharedFrame::text("to 9"));
            ctx.leave("b");
        })
        .build();
    let mut session = app.session(now, None);
    let id = session.id();
    session.handle_input(now, &upgrade_request("/ws", &[]));
    assert!(session.is_open());
    let mut frame = Vec::new();
    encode_client_frame(&mut frame, true, OpCode::Text, br#"{"event":"go"}"#, [1, 2, 3, 4]);
    session.handle_input(now, &frame);

    let actions: Vec<Action> = std::iter::from_fn(|| session.poll_action()).collect();
    assert_eq!(
        actions,
        vec![
            Action::Join { room: "a".into() },
            Action::Join { room: "b".into() },
            Action::Broadcast {
                room: "a".into(),
                frame: SharedFrame::text("to a"),
                except: None
            },
            Action::Broadcast {
                room: "b".into(),
                frame: SharedFrame::text("to b"),
                except: Some(id)
            },
            Action::BroadcastAll {
                frame: SharedFrame::text("to all"),
                except: None
            },
            Action::SendTo {
                to: ConnectionId(9),
                frame: SharedFrame::text("to 9")
            },
            Action::Leave { room: "b".into() },
        ]
    );
    assert_eq!(session.rooms().collect::<Vec<_>>(), ["a"]);

    // A frame delivered from another connection goes out as is.
    let mut wire = Vec::new();
    session.poll_transmit(&mut wire);
    let pushed = SharedFrame::text("from elsewhere");
    session.deliver(now, &pushed).unwrap();
    wire.clear();
    session.poll_transmit(&mut wire);
    assert_eq!(wire, pushed.as_bytes());

    session.handle_eof(now);
    assert!(!session.is_open());
    assert_eq!(
        std::iter::from_fn(|| session.poll_action()).collect::<Vec<_>>(),
        vec![Action::Leave { room: "a".into() }]
    );
    assert_eq!(session.rooms().count(), 0);
}
