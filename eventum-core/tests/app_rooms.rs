//! Rooms and sends to other connections, driven through `TestServer` (the app's real
//! endpoint, driven the way an adapter does), plus bare sessions as an adapter sees them.

mod common;

use eventum_core::app::{App, ConnectionId, Route};
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

/// What an adapter sees: a session hands rooms and sends to its endpoint's hub (each
/// frame encoded once), and a session dropped mid-way (a cancelled driver) still runs its
/// disconnect hook once and leaves every room.
#[test]
#[allow(clippy::disallowed_methods)] // bare sessions need a starting instant
fn a_dropped_session_leaves_every_room_and_disconnects_once() {
    use eventum_core::driver::{Endpoint, Session};
    use eventum_core::frame::{encode_client_frame, OpCode};
    let now = std::time::Instant::now();
    let disconnects = Counter::new();
    let hook = disconnects.clone();
    let app = App::builder()
        .route(Route::new("/ws"))
        .on("go", |ctx, event| {
            let to = ConnectionId(event.get("to").and_then(Value::as_u64).unwrap());
            ctx.join("a");
            ctx.join("b");
            ctx.join("a");
            ctx.broadcast("a", SharedFrame::text("to a"));
            ctx.broadcast_others("b", SharedFrame::text("to b"));
            ctx.broadcast_all(SharedFrame::text("to all"));
            ctx.send_to(to, SharedFrame::text("to you"));
        })
        .on("join", |ctx, _| ctx.join("a"))
        .on_disconnect(move |_, _| hook.hit())
        .build();
    let endpoint = Endpoint::new(app);
    let send = |session: &mut Session, text: &str| {
        let mut frame = Vec::new();
        encode_client_frame(&mut frame, true, OpCode::Text, text.as_bytes(), [1, 2, 3, 4]);
        session.handle_input(now, &frame);
    };
    let take_output = |session: &mut Session| {
        let transmit = session.poll_transmit();
        let bytes: Vec<u8> = transmit.chunks().flatten().copied().collect();
        session.transmitted(bytes.len());
        bytes
    };
    let (mut ada, mut bob) = (endpoint.admit(now, None).unwrap(), endpoint.admit(now, None).unwrap());
    for session in [&mut ada, &mut bob] {
        session.handle_input(now, &upgrade_request("/ws", &[]));
        assert!(session.is_open());
        take_output(session);
    }
    let (ada_id, bob_id) = (ada.id(), bob.id());
    send(&mut bob, r#"{"event":"join"}"#);
    send(&mut ada, &format!(r#"{{"event":"go","to":{}}}"#, bob_id.0));
    assert_eq!(ada.rooms().collect::<Vec<_>>(), ["a", "b"]);
    let mut members = endpoint.room_members("a");
    members.sort();
    assert_eq!(members, [ada_id, bob_id]);

    // Ada's own copies were applied before her input call returned; Bob's wait in his
    // mailbox until his driver takes them. Each frame went out as it was encoded.
    let expected = |texts: &[&str]| -> Vec<u8> {
        texts
            .iter()
            .flat_map(|t| SharedFrame::text(t).as_bytes().to_vec())
            .collect()
    };
    assert_eq!(take_output(&mut ada), expected(&["to a", "to all"]));
    assert!(bob.has_mail());
    bob.handle_mail(now);
    assert_eq!(take_output(&mut bob), expected(&["to a", "to all", "to you"]));

    // A driver that stops without ending the connection (a dropped future).
    let ada_handle = endpoint.connection(ada_id).expect("ada is registered");
    drop(ada);
    assert_eq!(disconnects.get(), 1, "the disconnect hook ran once");
    assert_eq!(endpoint.room_members("a"), [bob_id]);
    assert!(endpoint.room_members("b").is_empty());
    assert!(endpoint.connection(ada_id).is_none());
    assert!(ada_handle.is_closed());
    assert_eq!(
        ada_handle.send_text("late"),
        Err(eventum_core::app::HandleError::Closed)
    );
    assert_eq!(endpoint.connections(), 1);

    // A connection that ended normally disconnects once too, and is gone when dropped.
    bob.handle_eof(now);
    assert_eq!(disconnects.get(), 2);
    drop(bob);
    assert_eq!(disconnects.get(), 2);
    assert!(endpoint.room_members("a").is_empty());
    assert_eq!(endpoint.connections(), 0);
}
