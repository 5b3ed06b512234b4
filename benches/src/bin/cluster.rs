//! Cross-node broadcast over Redis beside the same room on one node: deliveries per second
//! and p50/p99 delivery latency (send to receipt, as the members' clients see it).
//!
//! `cargo run --release -p eventum-benches --bin cluster -- REDIS_URL [MEMBERS] [MESSAGES] [WINDOW]`
//! (`benches/run-cluster.sh` starts a redis-server for it; WINDOW 1 measures latency
//! without queueing). Three rows, same run:
//!
//! * `one node`: every member on one eventum-smol node without a backplane;
//! * `one node + redis`: the same, with the Redis backplane attached (each broadcast is
//!   also published; no other node listens);
//! * `two nodes`: members alternate between two nodes joined over Redis; the sender is on
//!   the first, so half the deliveries cross Redis.
//!
//! The nodes (each its own endpoint, executor and Redis connections) and the clients share
//! this process; the traffic between nodes crosses the real Redis over loopback TCP. The
//! sender keeps at most `WINDOW` (default 64) messages ahead of the slowest member. Each message is the
//! echo app's `/broadcast` room: every member gets every message, the sender included.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eventum_core::backplane::Backplane;
use eventum_core::driver::Endpoint;
use eventum_redis::Redis;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: cluster REDIS_URL [MEMBERS] [MESSAGES] [WINDOW]")?;
    let members: usize = args.next().map_or(Ok(64), |m| m.parse())?;
    let messages: u64 = args.next().map_or(Ok(20_000), |m| m.parse())?;
    let window: u64 = args.next().map_or(Ok(64), |m| m.parse())?;
    println!("{members} members, {messages} messages of ~24 bytes, window {window}\n");
    println!("| layout | deliveries/s | p50 latency | p99 latency |");
    println!("|---|---:|---:|---:|");
    let mut reference = None;
    for layout in [Layout::OneNode, Layout::OneNodeRedis, Layout::TwoNodes] {
        let result = run(layout, &url, members, messages, window.max(1))?;
        let ratio = reference.map_or(String::new(), |r: f64| format!(" ({:.2}×)", result.rate / r));
        reference.get_or_insert(result.rate);
        println!(
            "| {} | {:.0}{ratio} | {:?} | {:?} |",
            layout.name(),
            result.rate,
            result.p50,
            result.p99
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    OneNode,
    OneNodeRedis,
    TwoNodes,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::OneNode => "one node",
            Layout::OneNodeRedis => "one node + redis",
            Layout::TwoNodes => "two nodes over redis",
        }
    }
}

struct Outcome {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

struct Node {
    running: eventum_smol::Running,
    redis: Option<Arc<Redis>>,
}

fn start_node(url: Option<&str>) -> Result<Node, Box<dyn std::error::Error>> {
    let mut server = eventum_smol::Server::from(Endpoint::new(eventum_demo::echo_app())).threads(1);
    let redis = match url {
        Some(url) => {
            let redis = Redis::connect(url)?;
            server = server.backplane(Arc::clone(&redis) as Arc<dyn Backplane>);
            Some(redis)
        }
        None => None,
    };
    Ok(Node {
        running: server.listen("127.0.0.1:0")?,
        redis,
    })
}

fn connect(node: &Node) -> Result<WebSocket<TcpStream>, Box<dyn std::error::Error>> {
    let addr = node.running.local_addr();
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let (ws, _) = tungstenite::client(format!("ws://{addr}/broadcast"), stream)?;
    Ok(ws)
}

fn run(
    layout: Layout,
    url: &str,
    members: usize,
    messages: u64,
    window: u64,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let nodes = match layout {
        Layout::OneNode => vec![start_node(None)?],
        Layout::OneNodeRedis => vec![start_node(Some(url))?],
        Layout::TwoNodes => vec![start_node(Some(url))?, start_node(Some(url))?],
    };
    let epoch = Instant::now();
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..members).map(|_| AtomicU64::new(0)).collect());
    let mut sender = None;
    let mut readers = Vec::new();
    for m in 0..members {
        let mut ws = connect(&nodes[m % nodes.len()])?;
        if m == 0 {
            // The sender writes on a second handle of member 0's socket; its reader reads.
            let writer = ws.get_ref().try_clone()?;
            sender = Some(WebSocket::from_raw_socket(writer, Role::Client, None));
        }
        let received = Arc::clone(&received);
        readers.push(thread::spawn(move || {
            let mut latencies = Vec::with_capacity(messages as usize);
            while received[m].load(Ordering::Relaxed) < messages {
                let Ok(Message::Text(text)) = ws.read() else {
                    continue;
                };
                let sent: u64 = text.split(' ').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                latencies.push((epoch.elapsed().as_nanos() as u64).saturating_sub(sent));
                received[m].fetch_add(1, Ordering::Relaxed);
            }
            let _ = ws.close(None);
            latencies
        }));
    }
    // Every node subscribed before the clock starts (membership → subscription).
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes
        .iter()
        .any(|n| n.redis.as_ref().is_some_and(|r| !r.is_subscribed("broadcast")))
    {
        if Instant::now() > deadline {
            return Err("the nodes never subscribed to the room".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    let mut sender = sender.ok_or("no sender")?;
    let started = Instant::now();
    for seq in 0..messages {
        while seq >= window + received.iter().map(|r| r.load(Ordering::Relaxed)).min().unwrap_or(0) {
            thread::yield_now();
        }
        sender.send(Message::text(format!("{seq} {}", epoch.elapsed().as_nanos())))?;
    }
    let mut latencies: Vec<u64> = Vec::new();
    for reader in readers {
        latencies.extend(reader.join().map_err(|_| "a reader panicked")?);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| Duration::from_nanos(latencies[((latencies.len() - 1) as f64 * q) as usize]);
    let outcome = Outcome {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    };
    for node in nodes {
        node.running.shutdown();
    }
    Ok(outcome)
}
