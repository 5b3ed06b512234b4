//! Scale-out over a real redis-server: nodes on both adapters share a room, sends by id
//! cross nodes, leaving stops delivery everywhere, Redis killed and restarted mid-run
//! heals within a bounded time, and a node that dies takes nothing else down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventum_core::app::{App, ConnectionId, Route};
use eventum_core::SharedFrame;
use eventum_e2e::redis::redis_or_skip;
use eventum_e2e::{generous, wait_until, Adapter, Client, Options, RecvError, TestServer};
use eventum_redis::Redis;
use tungstenite::Message;

/// Text commands: `join R`, `leave R`, `say R TEXT` (to the room, the sender included),
/// `all TEXT`, `to ID TEXT`, `id` (answers `id N`).
fn app() -> App {
    App::builder()
        .route(Route::new("/ws"))
        .on_text(|ctx, text| {
            let mut words = text.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("join"), Some(room), None) => {
                    ctx.join(room);
                    let _ = ctx.send_text(&format!("joined {room}"));
                }
                (Some("leave"), Some(room), None) => {
                    ctx.leave(room);
                    let _ = ctx.send_text(&format!("left {room}"));
                }
                (Some("say"), Some(room), Some(said)) => ctx.broadcast(room, SharedFrame::text(said)),
                (Some("all"), Some(said), None) => ctx.broadcast_all(SharedFrame::text(said)),
                (Some("to"), Some(id), Some(said)) => {
                    if let Ok(id) = id.parse() {
                        ctx.send_to(ConnectionId(id), SharedFrame::text(said));
                    }
                }
                (Some("id"), None, None) => {
                    let _ = ctx.send_text(&format!("id {}", ctx.id().0));
                }
                _ => {}
            }
        })
        .build()
}

struct Node {
    server: TestServer,
    redis: Arc<Redis>,
}

fn node(adapter: Adapter, url: &str) -> Node {
    let redis = Redis::connect(url).expect("the backplane connects");
    let options = Options {
        backplane: Some(Arc::clone(&redis) as Arc<dyn eventum_core::backplane::Backplane>),
        ..Options::default()
    };
    let server = adapter.start_with(app(), options);
    Node { server, redis }
}

fn join(node: &Node, room: &str) -> Client {
    let mut client = node.server.client("/ws");
    client.send_text(&format!("join {room}"));
    assert_eq!(client.recv_text(), format!("joined {room}"));
    client
}

fn id_of(client: &mut Client) -> u64 {
    client.send_text("id");
    let answer = client.recv_text();
    answer
        .strip_prefix("id ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an id: {answer}"))
}

/// Waits until every node's receiver is subscribed to `room` (or, with `false`, is not).
fn wait_subscribed(nodes: &[&Node], room: &str, subscribed: bool) {
    let ok = wait_until(generous(Duration::from_secs(5)), || {
        nodes.iter().all(|n| n.redis.is_subscribed(room) == subscribed)
    });
    assert!(ok, "every node's subscription to {room} is {subscribed}");
}

/// Receives exactly `n` texts, then checks nothing more comes for a short while.
fn recv_exactly(client: &mut Client, n: usize, who: &str) -> Vec<String> {
    let texts: Vec<String> = (0..n).map(|_| client.recv_text()).collect();
    match client.try_recv(Duration::from_millis(300)) {
        Err(RecvError::Timeout) => {}
        other => panic!("{who}: one more message than {n}: {other:?}"),
    }
    texts
}

/// Each sender's messages arrive once each, in the order it sent them.
fn assert_each_once_in_order(texts: &[String], senders: usize, per_sender: usize, who: &str) {
    let mut next: HashMap<usize, usize> = HashMap::new();
    for text in texts {
        let (sender, i) = text
            .split_once('-')
            .and_then(|(s, i)| Some((s.strip_prefix('s')?.parse::<usize>().ok()?, i.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("{who}: unexpected {text:?}"));
        let expected = next.entry(sender).or_default();
        assert_eq!(i, *expected, "{who}: sender {sender}'s messages in order, each once");
        *expected += 1;
    }
    for sender in 0..senders {
        assert_eq!(
            next.get(&sender).copied(),
            Some(per_sender),
            "{who}: all of sender {sender}"
        );
    }
}

#[test]
fn three_nodes_share_a_room_sends_by_id_and_leaves() {
    let Some(redis) = redis_or_skip("three_nodes_share_a_room_sends_by_id_and_leaves") else {
        return;
    };
    let url = redis.url();
    // Both adapters in one cluster.
    let nodes = [
        node(Adapter::Smol, &url),
        node(Adapter::Std, &url),
        node(Adapter::Smol, &url),
    ];
    let numbers: Vec<u32> = nodes.iter().map(|n| n.redis.node()).collect();
    assert!(
        numbers[0] != numbers[1] && numbers[1] != numbers[2] && numbers[0] != numbers[2],
        "{numbers:?}"
    );
    let mut members: Vec<Client> = nodes.iter().flat_map(|n| [join(n, "r"), join(n, "r")]).collect();
    wait_subscribed(&nodes.iter().collect::<Vec<_>>(), "r", true);

    // Every member receives every broadcast exactly once, each sender's in order.
    let per_sender = 25;
    for i in 0..per_sender {
        for (sender, member) in [0, 2, 4].into_iter().enumerate() {
            members[member].send_text(&format!("say r s{sender}-{i}"));
        }
    }
    for (m, member) in members.iter_mut().enumerate() {
        let texts = recv_exactly(member, 3 * per_sender, &format!("member {m}"));
        assert_each_once_in_order(&texts, 3, per_sender, &format!("member {m}"));
    }

    // A send by id reaches the member on another node, and only it.
    let target = id_of(&mut members[5]);
    assert_eq!(eventum_core::backplane::node_of(ConnectionId(target)), numbers[2]);
    members[0].send_text(&format!("to {target} for you only"));
    assert_eq!(members[5].recv_text(), "for you only");
    for (m, member) in members.iter_mut().enumerate().filter(|(m, _)| *m != 5) {
        assert!(
            matches!(member.try_recv(Duration::from_millis(200)), Err(RecvError::Timeout)),
            "member {m}"
        );
    }

    // Both members on node 1 leave: node 1 unsubscribes, and a broadcast reaches only
    // the members left.
    for member in &mut members[2..4] {
        member.send_text("leave r");
        assert_eq!(member.recv_text(), "left r");
    }
    wait_subscribed(&[&nodes[1]], "r", false);
    assert!(nodes[0].redis.is_subscribed("r") && nodes[2].redis.is_subscribed("r"));
    members[0].send_text("say r s0-0");
    for m in [0, 1, 4, 5] {
        assert_eq!(recv_exactly(&mut members[m], 1, &format!("member {m}")), ["s0-0"]);
    }
    for m in [2, 3] {
        assert!(
            matches!(members[m].try_recv(Duration::from_millis(300)), Err(RecvError::Timeout)),
            "member {m} left"
        );
    }

    // A broadcast to all crosses nodes too.
    members[4].send_text("all everyone");
    for (m, member) in members.iter_mut().enumerate() {
        assert_eq!(member.recv_text(), "everyone", "member {m}");
    }

    // Node 2 dies: the others keep serving each other.
    let [first, second, third] = nodes;
    drop(members.split_off(4));
    third.server.shutdown();
    drop(third.redis);
    members[0].send_text("say r s0-1");
    assert_eq!(members[1].recv_text(), "s0-1");
    members[2].send_text("join r");
    assert_eq!(members[2].recv_text(), "joined r");
    wait_subscribed(&[&second], "r", true);
    members[0].send_text("say r s0-2");
    assert_eq!(members[2].recv_text(), "s0-2", "a member on the std node");
    assert!(first.redis.stats().published > 0 && second.redis.stats().received > 0);
    drop(members);
    first.server.shutdown();
    second.server.shutdown();
}

#[test]
fn redis_killed_and_restarted_heals() {
    let Some(mut redis) = redis_or_skip("redis_killed_and_restarted_heals") else {
        return;
    };
    let url = redis.url();
    let nodes = [node(Adapter::Std, &url), node(Adapter::Smol, &url)];
    let mut a = join(&nodes[0], "heal");
    let mut local = join(&nodes[0], "heal");
    let mut b = join(&nodes[1], "heal");
    wait_subscribed(&nodes.iter().collect::<Vec<_>>(), "heal", true);
    a.send_text("say heal before");
    for client in [&mut a, &mut local, &mut b] {
        assert_eq!(client.recv_text(), "before");
    }

    redis.kill();
    // Local delivery goes on; what was published meanwhile is dropped and counted.
    let outage = Instant::now();
    let dropped_before = nodes[0].redis.stats().dropped;
    a.send_text("say heal during");
    assert_eq!(local.recv_text(), "during", "local members still get broadcasts");
    assert_eq!(a.recv_text(), "during");
    assert!(
        wait_until(generous(Duration::from_secs(5)), || nodes[0].redis.stats().dropped
            > dropped_before),
        "the publication made during the outage was counted as dropped"
    );
    assert!(matches!(
        b.try_recv(Duration::from_millis(200)),
        Err(RecvError::Timeout)
    ));

    redis.restart();
    // Both nodes reconnect with backoff and subscribe again to the room they have members in.
    let healed = wait_until(generous(Duration::from_secs(10)), || {
        nodes
            .iter()
            .all(|n| n.redis.is_subscribed("heal") && n.redis.stats().reconnects > 0)
    });
    assert!(
        healed,
        "resubscribed within the bound ({:?} after the kill)",
        outage.elapsed()
    );
    // The publisher reconnects on its next publication; at most once, so retry until one
    // crosses.
    let crossed = wait_until(generous(Duration::from_secs(10)), || {
        a.send_text("say heal after");
        matches!(b.try_recv(Duration::from_millis(200)), Ok(Message::Text(t)) if t.as_str() == "after")
    });
    assert!(crossed, "broadcasts flow across nodes again");
    for node in nodes {
        node.server.shutdown();
    }
}

#[test]
fn unreachable_redis_is_refused_or_started_degraded() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port());
    let url = format!("redis://127.0.0.1:{}", port.expect("a free port"));
    let error = Redis::connect(&url).expect_err("refused by default");
    assert!(error.to_string().contains("unreachable"), "{error}");
    let degraded = Redis::builder(&url)
        .start_degraded(true)
        .connect()
        .expect("started degraded");
    assert!(degraded.node() >= 1);
}
