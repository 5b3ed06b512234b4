//! Scale eventum out over Redis (or Valkey) pub/sub: several eventum servers behind a load
//! balancer share rooms, broadcasts and sends by connection id, with the same app code.
//!
//! ```no_run
//! use eventum_redis::Redis;
//!
//! # let app = eventum_core::app::App::builder().build();
//! let redis = Redis::connect("redis://127.0.0.1:6379")?;
//! eventum_smol::Server::new(app).backplane(redis).listen("0.0.0.0:8080")?.wait();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! (`eventum_std::Server` takes the same backplane.)
//!
//! # How
//!
//! The node implements eventum-core's [`Backplane`]: a room broadcast is published on the
//! room's channel (`PREFIX:room:ROOM`), a broadcast to all on `PREFIX:all`, a send to a
//! connection of another node on that node's channel (`PREFIX:node:N`; the node's number
//! is in every connection id). A node subscribes to a room's channel while it has at least
//! one local member in the room, so a broadcast reaches only the nodes that need it. Two
//! threads of this crate talk to Redis: one publishes (pipelining what queued up while the
//! last round trip was in flight), one receives and delivers to local connections.
//!
//! # Faults
//!
//! Delivery across nodes is **at most once**. When Redis goes away, local delivery goes
//! on; publications made meanwhile are dropped and counted ([`Redis::stats`], the metric
//! `eventum_backplane_dropped_total`, and a warning in the log when the outage starts); the
//! node reconnects with backoff (100 ms doubling to 5 s) and subscribes again to every
//! room it still has members in. Every reply is awaited at most 2 s and a quiet
//! subscription is pinged every second, so a connection that died without a word (a
//! failover, a NAT that forgot it) is noticed too. Waiting publications are bounded in
//! bytes ([`Builder::queue_bytes`]). [`Redis::connect`] refuses to start when Redis cannot be
//! reached; [`Redis::builder`]`(url).start_degraded(true)` starts anyway and connects
//! when Redis comes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use eventum_core::backplane::{Backplane, Inbox, Publication, Target, MAX_NODE};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the receiver waits for a message before it looks at subscription changes.
const POLL: Duration = Duration::from_millis(20);
/// How long a reply (to PUBLISH, SUBSCRIBE, PING) may take before the connection counts
/// as lost; also bounds writes.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// After this long without a message the receiver pings Redis, so a connection that died
/// silently (a failover, a NAT that forgot it) is noticed.
const PING_EVERY: Duration = Duration::from_secs(1);
/// The first and the longest wait between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Most publications sent in one pipelined round trip.
const BATCH: usize = 256;

/// Why the backplane could not start.
#[derive(Debug)]
pub struct RedisError(String);

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis backplane: {}", self.0)
    }
}

impl std::error::Error for RedisError {}

impl From<RedisError> for std::io::Error {
    fn from(e: RedisError) -> Self {
        std::io::Error::other(e)
    }
}

/// Settings of a [`Redis`] backplane.
#[derive(Debug, Clone)]
pub struct Builder {
    url: String,
    prefix: String,
    queue_bytes: usize,
    start_degraded: bool,
}

impl Builder {
    /// The channel prefix (default `eventum`): nodes with the same prefix form a cluster.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Most bytes of publications waiting to be sent (default 64 MiB); past it, new ones
    /// are dropped and counted.
    pub fn queue_bytes(mut self, limit: usize) -> Self {
        self.queue_bytes = limit;
        self
    }

    /// Start even when Redis cannot be reached (default false: refuse): the node serves its
    /// own connections and joins the cluster when Redis comes.
    pub fn start_degraded(mut self, degraded: bool) -> Self {
        self.start_degraded = degraded;
        self
    }

    /// Connects and takes a node number (`INCR PREFIX:nodes`).
    pub fn connect(self) -> Result<Arc<Redis>, RedisError> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| RedisError(format!("{}: {e}", self.url)))?;
        let node = match take_node_number(&client, &self.prefix) {
            Ok(node) => node,
            Err(e) if self.start_degraded => {
                log::warn!("redis backplane: {} unreachable ({e}); starting degraded", self.url);
                random_node()
            }
            Err(e) => return Err(RedisError(format!("{} unreachable: {e}", self.url))),
        };
        log::info!("redis backplane: node {node} on {}", self.url);
        let shared = Arc::new(Shared {
            client,
            prefix: self.prefix,
            node,
            queue_bytes: self.queue_bytes,
            inbox: OnceLock::new(),
            outbox: Mutex::new(Outbox::default()),
            outbox_ready: Condvar::new(),
            rooms: Mutex::new(Rooms::default()),
            subscribed: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
            stats: Counters::default(),
        });
        Ok(Arc::new(Redis { shared }))
    }
}

/// Counts of what the backplane did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Publications Redis accepted.
    pub published: u64,
    /// Publications of other nodes received (and delivered locally).
    pub received: u64,
    /// Publications dropped: Redis was away, or the queue was full.
    pub dropped: u64,
    /// Publications received that were not valid (and were ignored).
    pub invalid: u64,
    /// Connections to Redis made again after one was lost.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    invalid: AtomicU64,
    reconnects: AtomicU64,
}

/// One node's link to a Redis server: give it to a server with `.backplane(redis)`.
pub struct Redis {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    prefix: String,
    node: u32,
    queue_bytes: usize,
    inbox: OnceLock<Inbox>,
    outbox: Mutex<Outbox>,
    outbox_ready: Condvar,
    /// Rooms with a local member: the receiver's wanted subscriptions.
    rooms: Mutex<Rooms>,
    /// Rooms the receiver is subscribed to now.
    subscribed: Mutex<HashSet<String>>,
    stop: AtomicBool,
    stats: Counters,
}

/// Publications waiting for the publisher thread.
#[derive(Default)]
struct Outbox {
    /// Channel and publication, in the order they were made.
    queue: VecDeque<(String, Publication)>,
    /// Their bytes, for the queue's budget.
    bytes: usize,
}

/// The rooms with a local member, and a count of changes so the receiver copies the set
/// only when it changed.
#[derive(Default)]
struct Rooms {
    wanted: HashSet<String>,
    generation: u64,
}

impl Redis {
    /// Connects to `url` (`redis://host:port/db`) with the default settings; fails when
    /// Redis cannot be reached.
    pub fn connect(url: &str) -> Result<Arc<Redis>, RedisError> {
        Self::builder(url).connect()
    }

    /// Settings for a backplane on `url`.
    pub fn builder(url: &str) -> Builder {
        Builder {
            url: url.to_owned(),
            prefix: "eventum".to_owned(),
            queue_bytes: 64 << 20,
            start_degraded: false,
        }
    }

    /// This node's number in the cluster.
    pub fn node(&self) -> u32 {
        self.shared.node
    }

    /// Whether the receiver is subscribed to `room`'s channel now (a room gets subscribed
    /// shortly after its first local member joins, and again after a reconnection).
    pub fn is_subscribed(&self, room: &str) -> bool {
        lock(&self.shared.subscribed).contains(room)
    }

    /// What the backplane did so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.stats;
        Stats {
            published: c.published.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }
}

impl Backplane for Redis {
    fn node(&self) -> u32 {
        self.shared.node
    }

    fn attach(&self, inbox: Inbox) {
        if self.shared.inbox.set(inbox).is_err() {
            log::error!("redis backplane: one backplane serves one endpoint; this one is attached already");
            return;
        }
        for (name, run) in [
            ("eventum-redis-pub", publisher as fn(&Shared)),
            ("eventum-redis-sub", receiver),
        ] {
            let shared = Arc::clone(&self.shared);
            if let Err(e) = thread::Builder::new().name(name.into()).spawn(move || run(&shared)) {
                log::error!("redis backplane: cannot start {name}: {e}");
            }
        }
    }

    fn publish(&self, publication: Publication) {
        let shared = &self.shared;
        let channel = match publication.target() {
            Target::Room(room) => shared.room_channel(room),
            Target::All => format!("{}:all", shared.prefix),
            Target::Node(node) => shared.node_channel(node),
        };
        let size = publication.as_bytes().len() + channel.len();
        let mut outbox = lock(&shared.outbox);
        if outbox.bytes + size > shared.queue_bytes {
            drop(outbox);
            shared.dropped(1);
            return;
        }
        outbox.bytes += size;
        outbox.queue.push_back((channel, publication));
        drop(outbox);
        shared.outbox_ready.notify_one();
    }

    fn subscribe(&self, room: &str) {
        let mut rooms = lock(&self.shared.rooms);
        if rooms.wanted.insert(room.to_owned()) {
            rooms.generation += 1;
        }
    }

    fn unsubscribe(&self, room: &str) {
        let mut rooms = lock(&self.shared.rooms);
        if rooms.wanted.remove(room) {
            rooms.generation += 1;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.outbox_ready.notify_all();
    }
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("node", &self.shared.node)
            .field("prefix", &self.shared.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Shared {
    fn room_channel(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    fn node_channel(&self, node: u32) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.inbox.get().is_some_and(Inbox::is_closed)
    }

    fn dropped(&self, n: u64) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("eventum_backplane_dropped_total").increment(n);
    }

    /// A connection whose replies and writes are bounded: a Redis that stopped answering
    /// counts as lost instead of hanging a thread.
    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(REPLY_TIMEOUT))?;
        conn.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(conn)
    }
}

/// The publishing thread: sends what queued up, in order, one pipelined round trip at a
/// time; while Redis is away, drops (and counts) what is queued.
fn publisher(shared: &Shared) {
    let mut link = Link::new("publisher");
    let mut batch = Vec::with_capacity(BATCH);
    while !shared.stopped() {
        {
            let mut outbox = lock(&shared.outbox);
            while outbox.queue.is_empty() && !shared.stopped() {
                outbox = shared
                    .outbox_ready
                    .wait_timeout(outbox, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let n = outbox.queue.len().min(BATCH);
            batch.extend(outbox.queue.drain(..n));
            let taken: usize = batch
                .iter()
                .map(|(c, p): &(String, Publication)| c.len() + p.as_bytes().len())
                .sum();
            outbox.bytes = outbox.bytes.saturating_sub(taken);
        }
        if batch.is_empty() {
            continue;
        }
        let Some(conn) = link.get(shared) else {
            shared.dropped(batch.len() as u64);
            batch.clear();
            continue;
        };
        let mut pipe = redis::pipe();
        for (channel, publication) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(publication.as_bytes()).ignore();
        }
        match pipe.exec(conn) {
            Ok(()) => {
                shared.stats.published.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                link.lost(&e);
                shared.dropped(batch.len() as u64);
            }
        }
        batch.clear();
    }
}

/// The receiving thread: keeps the subscriptions in step with the rooms that have local
/// members, delivers every message to the endpoint's inbox, and pings a quiet Redis.
fn receiver(shared: &Shared) {
    let mut link = Link::new("receiver");
    while !shared.stopped() {
        let Some(conn) = link.get(shared) else {
            continue;
        };
        let mut pubsub = conn.as_pubsub();
        let served = serve_subscriptions(shared, &mut pubsub);
        lock(&shared.subscribed).clear();
        drop(pubsub);
        if let Err(e) = served {
            link.lost(&e);
        }
    }
}

/// One connection's life as a subscriber; an error means the connection is lost.
fn serve_subscriptions(shared: &Shared, pubsub: &mut redis::PubSub<'_>) -> redis::RedisResult<()> {
    pubsub.subscribe(&[format!("{}:all", shared.prefix), shared.node_channel(shared.node)][..])?;
    let (mut current, mut seen) = (HashSet::new(), None);
    let mut last_heard = Instant::now();
    // Replies wait up to REPLY_TIMEOUT; messages are polled every POLL.
    let mut polling = false;
    while !shared.stopped() {
        let changed = {
            let rooms = lock(&shared.rooms);
            (seen != Some(rooms.generation)).then(|| (rooms.generation, rooms.wanted.clone()))
        };
        let quiet = last_heard.elapsed() >= PING_EVERY;
        if changed.is_some() || quiet {
            pubsub.set_read_timeout(Some(REPLY_TIMEOUT))?;
            polling = false;
        }
        if let Some((generation, wanted)) = changed {
            let channels = |rooms: std::collections::hash_set::Difference<'_, String, _>| -> Vec<String> {
                rooms.map(|room| shared.room_channel(room)).collect()
            };
            let (add, remove) = (
                channels(wanted.difference(&current)),
                channels(current.difference(&wanted)),
            );
            // One command each, however many rooms (an empty UNSUBSCRIBE would mean all).
            if !add.is_empty() {
                pubsub.subscribe(&add[..])?;
            }
            if !remove.is_empty() {
                pubsub.unsubscribe(&remove[..])?;
            }
            current = wanted;
            seen = Some(generation);
            lock(&shared.subscribed).clone_from(&current);
        }
        if quiet {
            pubsub.ping::<redis::Value>()?;
            last_heard = Instant::now();
        }
        if !polling {
            pubsub.set_read_timeout(Some(POLL))?;
            polling = true;
        }
        match pubsub.get_message() {
            Ok(message) => {
                last_heard = Instant::now();
                deliver(shared, message.get_payload_bytes());
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn deliver(shared: &Shared, payload: &[u8]) {
    let Some(inbox) = shared.inbox.get() else {
        return;
    };
    match inbox.receive(payload) {
        Ok(()) => {
            shared.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            shared.stats.invalid.fetch_add(1, Ordering::Relaxed);
            log::debug!("redis backplane: ignored a publication: {e}");
        }
    }
}

/// A thread's connection to Redis, made again with backoff after it is lost.
struct Link {
    role: &'static str,
    conn: Option<redis::Connection>,
    /// When to try connecting next, and the wait after that.
    retry: Option<(Instant, Duration)>,
    /// It was connected once: the next connection is a reconnection.
    was_up: bool,
}

impl Link {
    fn new(role: &'static str) -> Self {
        Link {
            role,
            conn: None,
            retry: None,
            was_up: false,
        }
    }

    /// The connection, connecting when it is time to try; `None` while Redis is away (the
    /// call then waits at most a short while, so the thread can notice a stop).
    fn get(&mut self, shared: &Shared) -> Option<&mut redis::Connection> {
        if self.conn.is_none() {
            if let Some((at, _)) = self.retry {
                let wait = at.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    thread::sleep(wait.min(Duration::from_millis(100)));
                    return None;
                }
            }
            match shared.connection() {
                Ok(conn) => {
                    if self.retry.is_some() || self.was_up {
                        shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("eventum_backplane_reconnects_total").increment(1);
                        log::warn!("redis backplane: {} connected again", self.role);
                    }
                    self.conn = Some(conn);
                    self.retry = None;
                    self.was_up = true;
                }
                Err(e) => {
                    let next = self.retry.map_or(BACKOFF.0, |(_, wait)| (wait * 2).min(BACKOFF.1));
                    log::debug!(
                        "redis backplane: {} cannot connect ({e}); next try in {next:?}",
                        self.role
                    );
                    self.retry = Some((Instant::now() + next, next));
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    /// The connection failed: drop it and retry soon.
    fn lost(&mut self, error: &redis::RedisError) {
        if self.conn.take().is_some() {
            log::warn!(
                "redis backplane: {} lost Redis ({error}); cross-node delivery pauses",
                self.role
            );
        }
        self.retry = Some((Instant::now() + BACKOFF.0, BACKOFF.0));
    }
}

/// A node number from the cluster's counter, unique among nodes that share the prefix.
fn take_node_number(client: &redis::Client, prefix: &str) -> redis::RedisResult<u32> {
    let mut conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    let n: u64 = redis::cmd("INCR").arg(format!("{prefix}:nodes")).query(&mut conn)?;
    // INCR counts from 1: nodes 1, 2, … (wrapping after MAX_NODE).
    Ok((n.saturating_sub(1) % u64::from(MAX_NODE)) as u32 + 1)
}

/// A node number when Redis cannot be asked: from the clock and the process id.
fn random_node() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ std::process::id().rotate_left(16)) % MAX_NODE + 1
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
