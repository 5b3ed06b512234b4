//! The handshake side of an `App`, driven through `TestServer`: byte-exact HTTP answers,
//! routes and their parameters, subprotocol choice, refusals, handshake middleware, extra
//! 101 headers and the connect hook.

mod common;

use eventum_core::app::{App, Route};
use eventum_core::handshake::{DeflateConfig, HttpResponse};
use eventum_core::testing::Message;
use eventum_core::testing::TestServer;
use serde_json::{json, Value};

use common::*;

/// An app with one route at `/chat` and a `ping` event answered with `pong`.
fn ping_app(builder: eventum_core::app::AppBuilder) -> App {
    builder
        .on("ping", |ctx, _| {
            ctx.send_event("pong", &json!({})).unwrap();
        })
        .build()
}

/// Asserts the connection works both ways: a ping event gets its pong.
fn assert_ping_pong(client: &mut eventum_core::testing::TestClient) {
    client.send_event("ping", &json!({}));
    assert_eq!(client.recv_json(), Some(json!({"event": "pong", "data": {}})));
}

// --- byte-exact HTTP answers ------------------------------------------------------------

#[test]
fn accepted_upgrade_is_a_byte_exact_101() {
    let server = TestServer::new(App::builder().route(Route::new("/chat")).build());
    let out = server.raw(&upgrade_request("/chat", &[]));
    assert_wire(
        &out,
        &format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n\r\n"
        ),
    );
}

#[test]
fn rfc_sample_101_carries_the_subprotocol_then_extra_headers() {
    let app = App::builder()
        .route(Route::new("/chat").on_upgrade(|upgrade| {
            upgrade.add_header("X-Served-By", "eventum");
            upgrade.add_header("Set-Cookie", "session=abc; HttpOnly");
            Ok(())
        }))
        .build();
    let server = TestServer::new(app);
    let request = upgrade_request(
        "/chat",
        &[
            ("Origin", "http://example.com"),
            ("Sec-WebSocket-Protocol", "chat, superchat"),
        ],
    );
    assert_wire(
        &server.raw(&request),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\
         X-Served-By: eventum\r\nSet-Cookie: session=abc; HttpOnly\r\n\r\n",
    );
}

#[test]
fn unknown_path_is_a_byte_exact_404() {
    let server = TestServer::new(App::builder().route(Route::new("/chat")).build());
    let expected = text_response("404 Not Found", "Not Found");
    for path in ["/nope", "/chat/", "/chatter", "/", "/chat/x"] {
        assert_wire(&server.raw(&upgrade_request(path, &[])), &expected);
    }
    // The query is not part of the path.
    assert!(server
        .raw(&upgrade_request("/chat?room=a", &[]))
        .starts_with(b"HTTP/1.1 101 "));
    let refused = server.connect("/nope").unwrap_err();
    assert_eq!((refused.status, refused.text()), (404, "Not Found".to_owned()));
}

#[test]
fn missing_required_header_is_a_byte_exact_400() {
    let app = App::builder()
        .route(
            Route::new("/secure")
                .require_header("X-Token")
                .require_headers(["X-Client", "X-Version"]),
        )
        .build();
    let server = TestServer::new(app);
    let expected = text_response("400 Bad Request", "Missing required headers");
    assert_wire(&server.raw(&upgrade_request("/secure", &[])), &expected);
    // One of the three missing is enough to refuse.
    let two = [("X-Token", "t"), ("X-Client", "c")];
    assert_wire(&server.raw(&upgrade_request("/secure", &two)), &expected);
    // Header names match case-insensitively.
    let all = [("x-token", "t"), ("x-client", "c"), ("X-VERSION", "1")];
    assert!(server
        .raw(&upgrade_request("/secure", &all))
        .starts_with(b"HTTP/1.1 101 "));

    let refused = server.request("/secure").header("X-Token", "t").connect().unwrap_err();
    assert_eq!(refused.status, 400);
    assert_eq!(refused.text(), "Missing required headers");
}

#[test]
fn unsupported_version_is_a_byte_exact_426() {
    let server = TestServer::new(App::builder().route(Route::new("/chat")).build());
    let request = format!(
        "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    let expected = http_response(
        "426 Upgrade Required",
        &[
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Sec-WebSocket-Version", "13"),
            ("Upgrade", "websocket"),
        ],
        "Unsupported WebSocket version; this server speaks version 13",
    );
    assert_wire(&server.raw(request.as_bytes()), &expected);
}

#[test]
fn plain_http_request_gets_a_short_400_by_default() {
    let server = TestServer::new(App::builder().route(Route::new("/chat")).build());
    let out = server.raw(b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    let body = "This endpoint only accepts WebSocket upgrade requests";
    assert_wire(&out, &text_response("400 Bad Request", body));
    assert!(body.len() < 100, "the default body is meant to be short");
}

#[test]
fn http_fallback_serves_the_apps_page() {
    const PAGE: &str = "<!doctype html><title>chat</title>";
    let app = App::builder()
        .route(Route::new("/ws"))
        .http_fallback(|request| match request.path() {
            "/" => HttpResponse::html(200, PAGE),
            _ => HttpResponse::text(404, format!("no page at {}", request.path())),
        })
        .on("ping", |ctx, _| ctx.send_event("pong", &json!({})).unwrap())
        .build();
    let server = TestServer::new(app);
    assert_wire(
        &server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        &http_response("200 OK", &[("Content-Type", "text/html; charset=utf-8")], PAGE),
    );
    assert_wire(
        &server.raw(b"GET /missing?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        &text_response("404 Not Found", "no page at /missing"),
    );
    // Upgrades still go to the routes.
    let mut client = server.connect("/ws").unwrap();
    assert_ping_pong(&mut client);
}

#[test]
fn panicking_http_fallback_is_a_500_and_the_next_request_is_served() {
    quiet_deliberate_panics();
    let app = App::builder()
        .http_fallback(|request| {
            if request.path() == "/boom" {
                panic!("{DELIBERATE}: http fallback");
            }
            HttpResponse::text(200, "fine")
        })
        .build();
    let server = TestServer::new(app);
    assert_wire(
        &server.raw(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"),
        &text_response("500 Internal Server Error", "Internal Server Error"),
    );
    assert_wire(
        &server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        &text_response("200 OK", "fine"),
    );
}

// --- what handlers see of the request ----------------------------------------------------

#[test]
fn params_query_headers_and_peer_reach_the_upgrade_handler_and_event_handlers() {
    let seen = Log::<Value>::new();
    let seen_in_route = seen.clone();
    let app = App::builder()
        .route(Route::new("/rooms/{id}").on_upgrade(move |upgrade| {
            seen_in_route.push(json!({
                "path": upgrade.path(),
                "id": upgrade.param("id"),
                "params": upgrade.params().len(),
                "user": upgrade.query_param("user"),
                "token": upgrade.header("x-token"),
                "peer": upgrade.peer_addr().map(|p| p.to_string()),
            }));
            Ok(())
        }))
        .on("whoami", |ctx, _| {
            let reply = json!({
                "path": ctx.path(),
                "id": ctx.param("id"),
                "params": ctx.params().len(),
                "user": ctx.query_param("user"),
                "token": ctx.header("X-TOKEN"),
                "peer": ctx.peer_addr().map(|p| p.to_string()),
                "missing": ctx.param("nope").is_none() && ctx.header("x-nope").is_none(),
            });
            ctx.send_json(&reply).unwrap();
        })
        .build();
    let server = TestServer::new(app);
    let mut client = server
        .request("/rooms/a%20b?user=ada+lovelace&x=1")
        .header("X-Token", "t-1")
        .connect()
        .unwrap();
    let expected = json!({
        "path": "/rooms/a%20b",
        "id": "a b",
        "params": 1,
        "user": "ada lovelace",
        "token": "t-1",
        "peer": "127.0.0.1:40000",
    });
    assert_eq!(seen.items(), vec![expected.clone()]);
    client.send_event("whoami", &json!({}));
    let mut in_event = expected;
    in_event["missing"] = json!(true);
    assert_eq!(recv_json(&mut client), in_event);
}

#[test]
fn upgrade_handler_sees_offered_subprotocols_and_extensions() {
    let seen = Log::<Value>::new();
    let seen_in_route = seen.clone();
    let app = App::builder()
        .route(Route::new("/chat").on_upgrade(move |upgrade| {
            let request = upgrade.request();
            let extensions: Vec<Value> = request
                .extensions()
                .iter()
                .map(|e| json!([e.name(), e.params().len()]))
                .collect();
            seen_in_route.push(json!({
                "subprotocols": request.subprotocols(),
                "extensions": extensions,
            }));
            Ok(())
        }))
        .build();
    let server = TestServer::new(app);
    let client = server
        .request("/chat")
        .subprotocol("chat")
        .subprotocol("superchat")
        .header("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
        .connect()
        .unwrap();
    assert_eq!(
        seen.items(),
        vec![json!({"subprotocols": ["chat", "superchat"], "extensions": [["permessage-deflate", 1]]})]
    );
    // permessage-deflate is negotiated by default.
    assert_eq!(
        client.response_header("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12")
    );
}

#[test]
fn handlers_switch_compression_off_or_read_what_was_agreed() {
    let agreed = Log::<Value>::new();
    let agreed_in_handler = agreed.clone();
    let app = App::builder()
        .route(Route::new("/plain").on_upgrade(|upgrade| {
            assert!(upgrade.compression().is_some(), "offered and on by default");
            upgrade.set_compression(DeflateConfig::disabled());
            assert!(upgrade.compression().is_none());
            Ok(())
        }))
        .route(Route::new("/chat"))
        .on("hello", move |ctx, _| {
            let bits = ctx.compression().map(|p| p.server_max_window_bits());
            agreed_in_handler.push(json!(bits));
            ctx.send_text(&"a compressible reply ".repeat(20)).unwrap();
        })
        .build();
    let server = TestServer::new(app);
    let offer = "permessage-deflate; client_max_window_bits";
    let plain = server
        .request("/plain")
        .header("Sec-WebSocket-Extensions", offer)
        .connect()
        .unwrap();
    assert_eq!(plain.response_header("sec-websocket-extensions"), None);
    let mut chat = server
        .request("/chat")
        .header("Sec-WebSocket-Extensions", offer)
        .connect()
        .unwrap();
    chat.send_event("hello", &json!({}));
    assert_eq!(chat.recv(), Some(Message::Text("a compressible reply ".repeat(20))));
    assert_eq!(agreed.items(), vec![json!(12)]);
}

// --- subprotocols --------------------------------------------------------------------------

type Chooser = fn(&[String]) -> Option<String>;

/// An app at `/chat` whose route installs `chooser` (when given) and whose `proto` event
/// answers with the subprotocol the connection got.
fn proto_app(chooser: Option<Chooser>, connects: &Counter) -> App {
    let connects = connects.clone();
    App::builder()
        .route(Route::new("/chat").on_upgrade(move |upgrade| {
            if let Some(chooser) = chooser {
                upgrade.choose_subprotocol(chooser);
            }
            Ok(())
        }))
        .on_connect(move |_| connects.hit())
        .on("proto", |ctx, _| {
            let proto = ctx.subprotocol().map(str::to_owned);
            ctx.send_json(&json!({ "proto": proto })).unwrap();
        })
        .build()
}

#[test]
fn default_subprotocol_is_the_first_offered() {
    let server = TestServer::new(proto_app(None, &Counter::new()));
    let mut client = server
        .request("/chat")
        .subprotocol("superchat")
        .subprotocol("chat")
        .connect()
        .unwrap();
    assert_eq!(client.subprotocol(), Some("superchat"));
    client.send_event("proto", &json!({}));
    assert_eq!(recv_json(&mut client), json!({"proto": "superchat"}));
}

#[test]
fn custom_chooser_picks_from_the_offer() {
    fn prefer_v2(offered: &[String]) -> Option<String> {
        offered.iter().find(|p| *p == "chat.v2").cloned()
    }
    let server = TestServer::new(proto_app(Some(prefer_v2), &Counter::new()));
    let mut client = server
        .request("/chat")
        .subprotocol("chat.v1")
        .subprotocol("chat.v2")
        .connect()
        .unwrap();
    assert_eq!(client.subprotocol(), Some("chat.v2"));
    client.send_event("proto", &json!({}));
    assert_eq!(recv_json(&mut client), json!({"proto": "chat.v2"}));

    // The chooser may decline: the connection opens without a protocol.
    let mut client = server.request("/chat").subprotocol("chat.v1").connect().unwrap();
    assert_eq!(client.response_header("sec-websocket-protocol"), None);
    client.send_event("proto", &json!({}));
    assert_eq!(recv_json(&mut client), json!({"proto": null}));
}

#[test]
fn choosing_a_subprotocol_that_was_not_offered_refuses_with_500() {
    fn invent(_: &[String]) -> Option<String> {
        Some("not-offered".to_owned())
    }
    let connects = Counter::new();
    let server = TestServer::new(proto_app(Some(invent), &connects));
    for offer in [vec!["chat"], vec![]] {
        let mut request = server.request("/chat");
        for protocol in offer {
            request = request.subprotocol(protocol);
        }
        let refused = request.connect().unwrap_err();
        assert_eq!(refused.status, 500);
        assert!(
            refused
                .headers
                .iter()
                .all(|(name, value)| !name.eq_ignore_ascii_case("sec-websocket-protocol")
                    && !value.contains("not-offered")),
            "the unoffered protocol leaked: {:?}",
            refused.headers
        );
    }
    assert_eq!(connects.get(), 0, "a refused upgrade ran the connect hook");
    assert_eq!(server.open_connections(), 0);
}

#[test]
fn no_offer_means_no_subprotocol_header() {
    let server = TestServer::new(proto_app(None, &Counter::new()));
    let mut client = server.connect("/chat").unwrap();
    assert_eq!(client.response_header("sec-websocket-protocol"), None);
    client.send_event("proto", &json!({}));
    assert_eq!(recv_json(&mut client), json!({"proto": null}));
}

#[test]
fn panicking_subprotocol_chooser_refuses_with_500() {
    quiet_deliberate_panics();
    let app = App::builder()
        .route(Route::new("/chat").on_upgrade(|upgrade| {
            upgrade.choose_subprotocol(|offered| {
                if offered.iter().any(|p| p == "boom") {
                    panic!("{DELIBERATE}: chooser");
                }
                offered.first().cloned()
            });
            Ok(())
        }))
        .build();
    let server = TestServer::new(app);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server.request("/chat").subprotocol("boom").connect().map(|_| ())
    }));
    let result = caught.expect("the chooser's panic escaped the session");
    assert_eq!(result.unwrap_err().status, 500);
    assert_eq!(
        server
            .request("/chat")
            .subprotocol("chat")
            .connect()
            .unwrap()
            .subprotocol(),
        Some("chat")
    );
}

// --- refusals ------------------------------------------------------------------------------

#[test]
fn route_refusal_is_sent_with_its_status_headers_and_body() {
    let connects = Counter::new();
    let disconnects = Counter::new();
    let (c, d) = (connects.clone(), disconnects.clone());
    let app = App::builder()
        .route(Route::new("/rooms/{id}").on_upgrade(|upgrade| {
            if upgrade.param("id") == Some("secret") {
                return Err(HttpResponse::text(403, "Forbidden room")
                    .header("X-Reason", "private")
                    .header("Retry-After", "60"));
            }
            Ok(())
        }))
        .on_connect(move |_| c.hit())
        .on_disconnect(move |_, _| d.hit())
        .build();
    let server = TestServer::new(app);
    assert_wire(
        &server.raw(&upgrade_request("/rooms/secret", &[])),
        &http_response(
            "403 Forbidden",
            &[
                ("Content-Type", "text/plain; charset=utf-8"),
                ("X-Reason", "private"),
                ("Retry-After", "60"),
            ],
            "Forbidden room",
        ),
    );
    let refused = server.connect("/rooms/secret").unwrap_err();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), "Forbidden room");
    assert!(refused.headers.contains(&("X-Reason".to_owned(), "private".to_owned())));
    let _open = server.connect("/rooms/lobby").unwrap();
    assert_eq!((connects.get(), disconnects.get()), (1, 0));
}

#[test]
fn invalid_refusal_response_becomes_a_500() {
    let app = App::builder()
        .route(Route::new("/{kind}").on_upgrade(|upgrade| {
            Err(match upgrade.param("kind") {
                Some("crlf") => HttpResponse::text(403, "no").header("X-Bad", "a\r\nX-Injected: 1"),
                Some("reserved") => HttpResponse::text(403, "no").header("Content-Length", "2"),
                _ => HttpResponse::new(1000),
            })
        }))
        .build();
    let server = TestServer::new(app);
    let expected = text_response("500 Internal Server Error", "Internal Server Error");
    for path in ["/crlf", "/reserved", "/status"] {
        assert_wire(&server.raw(&upgrade_request(path, &[])), &expected);
    }
}

// --- handshake middleware ----------------------------------------------------------------

/// Auth middleware: `?token=` is required and becomes the `user_id` flag.
fn auth_app(routed: &Counter) -> App {
    let routed = routed.clone();
    App::builder()
        .middleware(|upgrade, next| {
            let Some(token) = upgrade.query_param("token").map(str::to_owned) else {
                return Err(HttpResponse::text(401, "Unauthorized").header("WWW-Authenticate", "Bearer"));
            };
            upgrade.flags_mut().add("user_id", format!("user-{token}"));
            next.run(upgrade)
        })
        .route(Route::new("/chat").on_upgrade(move |upgrade| {
            routed.hit();
            // The route sees what the middleware stored.
            assert!(upgrade.flags().get("user_id").is_some());
            Ok(())
        }))
        .on_connect(|ctx| {
            let user = ctx.flags().get("user_id").cloned();
            ctx.send_event("welcome", &json!({ "user": user })).unwrap();
        })
        .on("me", |ctx, _| {
            let user = ctx.flags().get_str("user_id").map(str::to_owned);
            ctx.send_json(&json!({ "user": user })).unwrap();
        })
        .build()
}

#[test]
fn middleware_refuses_with_401_before_routing() {
    let routed = Counter::new();
    let server = TestServer::new(auth_app(&routed));
    let refused = server.connect("/chat").unwrap_err();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.text(), "Unauthorized");
    assert!(refused
        .headers
        .contains(&("WWW-Authenticate".to_owned(), "Bearer".to_owned())));
    assert_eq!(routed.get(), 0, "the route ran after the middleware refused");
    assert!(server.connect("/chat?token=7").is_ok());
    assert_eq!(routed.get(), 1);
}

#[test]
fn middleware_flags_are_readable_in_connect_and_event_handlers() {
    let server = TestServer::new(auth_app(&Counter::new()));
    let mut ada = server.connect("/chat?token=ada").unwrap();
    let mut bob = server.connect("/chat?token=bob").unwrap();
    assert_eq!(
        recv_json(&mut ada),
        json!({"event": "welcome", "data": {"user": "user-ada"}})
    );
    assert_eq!(
        recv_json(&mut bob),
        json!({"event": "welcome", "data": {"user": "user-bob"}})
    );
    ada.send_event("me", &json!({}));
    assert_eq!(recv_json(&mut ada), json!({"user": "user-ada"}));
    bob.send_event("me", &json!({}));
    assert_eq!(recv_json(&mut bob), json!({"user": "user-bob"}));
    assert_eq!(ada.server_flags().get_str("user_id"), Some("user-ada"));
}

#[test]
fn middleware_runs_in_the_order_added_around_routing() {
    let log = Log::<String>::new();
    let (first, second, route) = (log.clone(), log.clone(), log.clone());
    let app = App::builder()
        .middleware(move |upgrade, next| {
            first.push(format!("first:before params={}", upgrade.params().len()));
            let result = next.run(upgrade);
            first.push("first:after".into());
            result
        })
        .middleware(move |upgrade, next| {
            second.push("second:before".into());
            let result = next.run(upgrade);
            second.push(format!("second:after ok={}", result.is_ok()));
            result
        })
        .route(Route::new("/rooms/{id}").on_upgrade(move |upgrade| {
            route.push(format!("route params={}", upgrade.params().len()));
            Ok(())
        }))
        .build();
    let server = TestServer::new(app);
    server.connect("/rooms/1").unwrap();
    assert_eq!(
        log.items(),
        [
            "first:before params=0",
            "second:before",
            "route params=1",
            "second:after ok=true",
            "first:after"
        ]
    );
}

#[test]
fn middleware_can_add_101_headers_and_replace_the_result() {
    let app = App::builder()
        .middleware(|upgrade, next| {
            upgrade.add_header("X-Middleware", "1");
            // Turn the route's 404 into a redirect.
            next.run(upgrade).map_err(|refusal| match refusal.status() {
                404 => HttpResponse::new(308).header("Location", "/chat"),
                _ => refusal,
            })
        })
        .route(Route::new("/chat").on_upgrade(|upgrade| {
            upgrade.add_header("X-Route", "2");
            Ok(())
        }))
        .build();
    let server = TestServer::new(app);
    let client = server.connect("/chat").unwrap();
    assert_eq!(client.response_header("x-middleware"), Some("1"));
    assert_eq!(client.response_header("x-route"), Some("2"));
    let refused = server.connect("/old").unwrap_err();
    assert_eq!(refused.status, 308);
    assert!(refused.headers.contains(&("Location".to_owned(), "/chat".to_owned())));
}

#[test]
fn panicking_middleware_is_a_500_and_the_next_connection_works() {
    quiet_deliberate_panics();
    let connects = Counter::new();
    let c = connects.clone();
    let app = App::builder()
        .middleware(|upgrade, next| {
            if upgrade.header("x-panic").is_some() {
                panic!("{DELIBERATE}: middleware");
            }
            next.run(upgrade)
        })
        .route(Route::new("/chat"))
        .on_connect(move |_| c.hit());
    let server = TestServer::new(ping_app(app));
    assert_wire(
        &server.raw(&upgrade_request("/chat", &[("X-Panic", "1")])),
        &text_response("500 Internal Server Error", "Internal Server Error"),
    );
    let refused = server.request("/chat").header("X-Panic", "1").connect().unwrap_err();
    assert_eq!(refused.status, 500);
    assert_eq!(connects.get(), 0);
    let mut client = server.connect("/chat").unwrap();
    assert_ping_pong(&mut client);
    assert_eq!(connects.get(), 1);
}

#[test]
fn panicking_route_handler_is_a_500() {
    quiet_deliberate_panics();
    let app = App::builder().route(Route::new("/{x}").on_upgrade(|upgrade| {
        if upgrade.param("x") == Some("boom") {
            panic!("{DELIBERATE}: route");
        }
        Ok(())
    }));
    let server = TestServer::new(ping_app(app));
    assert_eq!(server.connect("/boom").unwrap_err().status, 500);
    let mut client = server.connect("/fine").unwrap();
    assert_ping_pong(&mut client);
}

// --- extra 101 headers ---------------------------------------------------------------------

#[test]
fn extra_headers_are_present_in_the_101() {
    let app = App::builder().route(Route::new("/chat").on_upgrade(|upgrade| {
        upgrade.add_header("Set-Cookie", "session=abc");
        upgrade.add_header("X-Empty", "");
        Ok(())
    }));
    let server = TestServer::new(ping_app(app));
    let mut client = server.connect("/chat").unwrap();
    assert_eq!(client.response_header("set-cookie"), Some("session=abc"));
    assert_eq!(client.response_header("x-empty"), Some(""));
    assert_ping_pong(&mut client);
}

#[test]
fn invalid_extra_header_refuses_with_500() {
    let connects = Counter::new();
    let c = connects.clone();
    let app = App::builder()
        .route(Route::new("/{case}").on_upgrade(|upgrade| {
            match upgrade.param("case") {
                Some("crlf") => upgrade.add_header("X-Bad", "a\r\nX-Injected: 1"),
                Some("lf") => upgrade.add_header("X-Bad", "a\nX-Injected: 1"),
                Some("name") => upgrade.add_header("Bad Name", "v"),
                Some("reserved") => upgrade.add_header("Sec-WebSocket-Accept", "forged"),
                _ => {}
            }
            Ok(())
        }))
        .on_connect(move |_| c.hit())
        .build();
    let server = TestServer::new(app);
    for case in ["crlf", "lf", "name", "reserved"] {
        let path = format!("/{case}");
        let out = server.raw(&upgrade_request(&path, &[]));
        assert_wire(
            &out,
            &text_response("500 Internal Server Error", "Internal Server Error"),
        );
        let refused = server.connect(&path).unwrap_err();
        assert_eq!(refused.status, 500, "{case}");
    }
    assert_eq!(connects.get(), 0);
    assert!(server.connect("/fine").is_ok());
    assert_eq!(connects.get(), 1);
}

// --- the connect hook ---------------------------------------------------------------------

#[test]
fn connect_hook_runs_once_per_connection_and_can_greet() {
    let connects = Counter::new();
    let c = connects.clone();
    let app = App::builder()
        .route(Route::new("/chat"))
        .on_connect(move |ctx| {
            c.hit();
            ctx.send_event("welcome", &json!({ "id": ctx.id().0 })).unwrap();
        })
        .build();
    let server = TestServer::new(app);
    let mut a = server.connect("/chat").unwrap();
    let mut b = server.connect("/chat").unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(recv_json(&mut a), json!({"event": "welcome", "data": {"id": a.id().0}}));
    assert_eq!(recv_json(&mut b), json!({"event": "welcome", "data": {"id": b.id().0}}));
    assert_quiet_and_open(&mut a);
    assert_eq!(connects.get(), 2);
}

#[test]
fn connect_and_disconnect_hooks_do_not_run_for_refused_upgrades() {
    let connects = Counter::new();
    let disconnects = Counter::new();
    let (c, d) = (connects.clone(), disconnects.clone());
    let app = App::builder()
        .middleware(|upgrade, next| match upgrade.query_param("deny") {
            Some(_) => Err(HttpResponse::text(401, "no")),
            None => next.run(upgrade),
        })
        .route(Route::new("/chat").require_header("X-Token"))
        .on_connect(move |_| c.hit())
        .on_disconnect(move |_, _| d.hit())
        .build();
    let server = TestServer::new(app);
    assert_eq!(server.connect("/nope").unwrap_err().status, 404);
    assert_eq!(server.connect("/chat").unwrap_err().status, 400);
    assert_eq!(
        server
            .request("/chat?deny=1")
            .header("X-Token", "t")
            .connect()
            .unwrap_err()
            .status,
        401
    );
    let old_version = upgrade_request("/chat", &[("X-Token", "t")]);
    let old_version = String::from_utf8(old_version)
        .unwrap()
        .replace("Version: 13", "Version: 12");
    assert!(server.raw(old_version.as_bytes()).starts_with(b"HTTP/1.1 426 "));
    assert!(server
        .raw(b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")
        .starts_with(b"HTTP/1.1 400 "));
    assert_eq!((connects.get(), disconnects.get()), (0, 0));

    let client = server.request("/chat").header("X-Token", "t").connect().unwrap();
    assert_eq!(connects.get(), 1);
    drop(client);
    assert_eq!(disconnects.get(), 1);
}

#[test]
fn app_is_shared_between_threads_cheaply() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
    let app = App::builder().route(Route::new("/chat")).build();
    assert_shareable(&app);
    let clone = app.clone();
    let handle = std::thread::spawn(move || clone.config().max_message_size());
    assert_eq!(handle.join().unwrap(), app.config().max_message_size());
}
