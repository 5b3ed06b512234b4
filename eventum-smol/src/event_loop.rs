//! The per-core event loops [`Server::listen`](crate::Server::listen) serves plain TCP on.
//!
//! Each loop is one thread with its own epoll instance, level-triggered, that owns its
//! connections outright: a slab of sessions, one read buffer, a heap of deadlines. There
//! is no task, channel, reactor registration or lock per connection, and nothing is
//! handed between threads on the way from a read to its reply. All loops watch the one
//! listener (`EPOLLEXCLUSIVE`, so a connection wakes one loop) and keep what they accept.
//!
//! A pass over a connection takes its mail, its passed deadline, one read when the
//! socket is readable (level-triggered epoll reports it again while input waits, which
//! keeps loops fair), and writes until the socket would block. The read goes into the
//! loop's buffer, which the session decodes where it lies
//! ([`Session::handle_input_buffer`]): only the start of an unfinished frame is copied
//! into the connection, not every read. Writable interest is registered only while
//! output waits; readable interest only while the session wants input, so a connection
//! held back by a slow reader costs no wake-ups.
//!
//! Mail from another thread (a broadcast, a send by id, the shutdown plan) queues the
//! connection's key on its loop and writes the loop's eventfd only when the loop sleeps:
//! one wake-up per burst, none while it is busy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, IoSlice, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventum_core::driver::{Endpoint, Session};
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};
use rustix::net::{self, RecvFlags, SendAncillaryBuffer, SendFlags};

/// Bytes read at once, into the loop's one buffer.
const READ_SIZE: usize = 256 * 1024;
/// Most epoll events taken at once.
const EVENTS: usize = 256;
/// Most connections accepted per readiness of the listener, before the loop serves
/// the ones it has.
const ACCEPTS: usize = 64;
/// How long a loop stops accepting after running out of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// The epoll keys of the eventfd and the listener; a connection's key is its slot index
/// with the slot's generation in the high half, never both of these.
const WAKE_KEY: u64 = u64::MAX;
const LISTENER_KEY: u64 = u64::MAX - 1;

/// The running loops.
#[derive(Debug)]
pub(crate) struct Loops {
    shared: Vec<Arc<Shared>>,
    threads: Vec<JoinHandle<()>>,
}

/// What other threads reach of a loop: its mail queue and its wake-up.
#[derive(Debug)]
struct Shared {
    /// Keys of connections with mail, in the order it came.
    mail: Mutex<Vec<u64>>,
    /// Set while the loop waits in epoll (or is about to): only then does mail write
    /// `wake`.
    parked: AtomicBool,
    wake: OwnedFd,
    stopping: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

/// The mailbox's waker: queues the connection on its loop.
struct MailWaker {
    shared: Arc<Shared>,
    key: u64,
}

impl Wake for MailWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.shared.mail).push(self.key);
        // SeqCst against the loop's store before it looks at the queue: either the loop
        // sees this key, or this sees it parked and wakes it.
        if self.shared.parked.swap(false, SeqCst) {
            self.shared.wake();
        }
    }
}

impl Loops {
    /// Starts `count` loops serving connections from `listener` for `endpoint`.
    pub(crate) fn start(endpoint: &Endpoint, listener: TcpListener, count: usize) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = Arc::new(listener);
        let mut loops = Loops {
            shared: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..count.max(1) {
            let event_loop = EventLoop::new(endpoint.clone(), Arc::clone(&listener))?;
            loops.shared.push(Arc::clone(&event_loop.shared));
            let thread = std::thread::Builder::new()
                .name(format!("eventum-smol-{i}"))
                .spawn(move || event_loop.run());
            match thread {
                Ok(thread) => loops.threads.push(thread),
                Err(e) => {
                    loops.stop();
                    return Err(e);
                }
            }
        }
        Ok(loops)
    }

    /// Blocks until the loops end.
    pub(crate) fn wait(&mut self) {
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }

    /// Ends the loops (dropping their connections: disconnect hooks run) and waits for them.
    pub(crate) fn stop(&mut self) {
        for shared in &self.shared {
            shared.stopping.store(true, SeqCst);
            shared.wake();
        }
        self.wait();
    }
}

/// One loop's own state, on its thread.
struct EventLoop {
    shared: Arc<Shared>,
    epoll: OwnedFd,
    endpoint: Endpoint,
    listener: Arc<TcpListener>,
    /// When accepting resumes, after it ran out of descriptors.
    accept_paused: Option<Instant>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    /// Deadlines by connection key; an entry that is no longer a connection's armed
    /// deadline is skipped when it comes up.
    timers: Timers,
    buf: Vec<u8>,
    /// The time, read once per wake-up: the passes of one batch of events share it.
    now: Instant,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Box<Conn>>,
}

impl Slot {
    /// Whether the slot holds the connection `key` names, not one that ended before it.
    fn holds(&self, key: u64) -> bool {
        self.conn.is_some() && u64::from(self.generation) == key >> 32
    }
}

/// The slot a connection's key names (its low half).
fn slot_index(key: u64) -> usize {
    key as u32 as usize
}

struct Conn {
    session: Session,
    stream: TcpStream,
    /// The interest registered with epoll.
    interest: EventFlags,
    /// The deadline a timer entry is queued for, as a [`Timers`] tick (0: none).
    armed: u64,
}

impl EventLoop {
    fn new(endpoint: Endpoint, listener: Arc<TcpListener>) -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, EventData::new_u64(WAKE_KEY), EventFlags::IN)?;
        let event_loop = EventLoop {
            shared: Arc::new(Shared {
                mail: Mutex::default(),
                parked: AtomicBool::new(false),
                wake,
                stopping: AtomicBool::new(false),
            }),
            epoll,
            endpoint,
            listener,
            accept_paused: None,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            timers: Timers::new(),
            buf: Vec::with_capacity(READ_SIZE),
            now: Instant::now(),
        };
        event_loop.watch_listener()?;
        Ok(event_loop)
    }

    fn watch_listener(&self) -> io::Result<()> {
        let flags = EventFlags::IN | EventFlags::EXCLUSIVE;
        Ok(epoll::add(
            &self.epoll,
            &*self.listener,
            EventData::new_u64(LISTENER_KEY),
            flags,
        )?)
    }

    fn run(mut self) {
        let mut events = vec![
            Event {
                flags: EventFlags::empty(),
                data: EventData::new_u64(0),
            };
            EVENTS
        ];
        let mut mail = Vec::new();
        while !self.shared.stopping.load(SeqCst) {
            self.now = Instant::now();
            let next = self.fire_timers(self.now);
            self.shared.parked.store(true, SeqCst);
            let no_wait = !lock(&self.shared.mail).is_empty();
            let timeout = match (no_wait, next) {
                (true, _) => Some(Timespec::default()),
                (false, Some(at)) => Timespec::try_from(at.saturating_duration_since(self.now)).ok(),
                (false, None) => None,
            };
            let waited = epoll::wait(&self.epoll, &mut events[..], timeout.as_ref());
            self.shared.parked.store(false, SeqCst);
            self.now = Instant::now();
            match waited {
                Ok(n) => {
                    for event in &events[..n] {
                        // The kernel's event struct is packed: copy its fields out.
                        let (key, flags) = (event.data.u64(), { event.flags });
                        self.dispatch(key, flags);
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("epoll_wait failed: {e}");
                    std::thread::sleep(ACCEPT_BACKOFF);
                }
            }
            std::mem::swap(&mut *lock(&self.shared.mail), &mut mail);
            for key in mail.drain(..) {
                self.pass(key, EventFlags::empty());
            }
        }
        // Stopping: the connections left end here (their disconnect hooks run).
        for slot in std::mem::take(&mut self.slots) {
            if let Some(conn) = slot.conn {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Runs the passes whose deadlines have come; returns the next deadline.
    fn fire_timers(&mut self, now: Instant) -> Option<Instant> {
        if self.accept_paused.is_some_and(|at| at <= now) && self.watch_listener().is_ok() {
            self.accept_paused = None;
        }
        let due = self.timers.tick_passed(now);
        while let Some(&Reverse((at, key))) = self.timers.heap.peek() {
            if at > due {
                break;
            }
            self.timers.heap.pop();
            if let Some(conn) = self.conn(key).filter(|conn| conn.armed == at) {
                conn.armed = 0;
                self.pass(key, EventFlags::empty());
            }
        }
        // Entries of ended connections wait for their time; past twice the live ones,
        // they are swept so a burst of short connections cannot grow the heap unbounded.
        if self.timers.heap.len() > 2 * self.live + 64 {
            let slots = &self.slots;
            self.timers.heap.retain(|Reverse((at, key))| {
                let slot = slots.get(slot_index(*key)).filter(|slot| slot.holds(*key));
                slot.and_then(|slot| slot.conn.as_deref())
                    .is_some_and(|conn| conn.armed == *at)
            });
        }
        let next = self
            .timers
            .heap
            .peek()
            .and_then(|Reverse((at, _))| self.timers.instant(*at));
        match (next, self.accept_paused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn dispatch(&mut self, key: u64, flags: EventFlags) {
        match key {
            WAKE_KEY => {
                let mut count = [0; 8];
                let _ = rustix::io::read(&self.shared.wake, &mut count);
            }
            LISTENER_KEY => self.accept(),
            _ => self.pass(key, flags),
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS {
            let (stream, peer) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if is_out_of_resources(&e) => {
                    // Level-triggered: the listener would be reported again at once.
                    log::warn!("accept failed: {e}");
                    let _ = epoll::delete(&self.epoll, &*self.listener);
                    self.accept_paused = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    log::debug!("accept failed: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            match self.endpoint.admit(self.now, Some(peer)) {
                Ok(session) => self.insert(session, stream),
                Err(busy) => {
                    // A fresh socket takes a few hundred bytes without blocking.
                    let _ = (&stream).write(busy.response());
                    let _ = stream.shutdown(Shutdown::Write);
                }
            }
        }
    }

    fn insert(&mut self, session: Session, stream: TcpStream) {
        let index = match self.free.pop() {
            Some(index) => index,
            None => match u32::try_from(self.slots.len()) {
                Ok(index) if index < u32::MAX - 1 => {
                    self.slots.push(Slot::default());
                    index
                }
                // Four billion connections on one loop: this one ends (its session drops).
                _ => return,
            },
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let key = (u64::from(slot.generation) << 32) | u64::from(index);
        let interest = EventFlags::IN;
        if let Err(e) = epoll::add(&self.epoll, &stream, EventData::new_u64(key), interest) {
            log::warn!("cannot watch a connection: {e}");
            self.free.push(index);
            return;
        }
        session.set_waker(&Waker::from(Arc::new(MailWaker {
            shared: Arc::clone(&self.shared),
            key,
        })));
        slot.conn = Some(Box::new(Conn {
            session,
            stream,
            interest,
            armed: 0,
        }));
        self.live += 1;
        // The request has usually come with the connection: read it now.
        self.pass(key, EventFlags::IN);
    }

    fn conn(&mut self, key: u64) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(slot_index(key)).filter(|slot| slot.holds(key))?;
        slot.conn.as_deref_mut()
    }

    /// One pass over a connection: what `flags` reported, its mail, its deadline.
    fn pass(&mut self, key: u64, flags: EventFlags) {
        let (epoll, buf, timers, now) = (&self.epoll, &mut self.buf, &mut self.timers, self.now);
        let Some(slot) = self.slots.get_mut(slot_index(key)).filter(|slot| slot.holds(key)) else {
            return;
        };
        let Some(conn) = slot.conn.as_deref_mut() else {
            return;
        };
        // Handlers' panics are caught in the core; this catches the loop's own, so a bug
        // ends one connection rather than every connection of the loop.
        let over = std::panic::catch_unwind(AssertUnwindSafe(|| serve(conn, flags, buf, epoll, key, timers, now)))
            .unwrap_or_else(|_| {
                log::error!("a connection's pass panicked; closing the connection");
                true
            });
        if over {
            if let Some(conn) = slot.conn.take() {
                let _ = epoll::delete(epoll, &conn.stream);
                // The server closes the TCP connection first (RFC 6455 §7.1.1).
                let _ = conn.stream.shutdown(Shutdown::Write);
                self.free.push(key as u32);
                self.live -= 1;
            }
        }
    }
}

/// The pass itself; returns whether the connection is over.
fn serve(
    conn: &mut Conn,
    flags: EventFlags,
    buf: &mut Vec<u8>,
    epoll: &OwnedFd,
    key: u64,
    timers: &mut Timers,
    now: Instant,
) -> bool {
    let session = &mut conn.session;
    if session.has_mail() {
        session.handle_mail(now);
    }
    if session.poll_timeout().is_some_and(|at| at <= now) {
        session.handle_timeout(now);
    }
    let mut socket = Socket(&conn.stream);
    if flags.contains(EventFlags::IN) && session.wants_read() {
        // Sessions hand the buffer back empty, with its capacity (this covers a pass that
        // panicked while its session held it).
        buf.clear();
        buf.reserve(READ_SIZE);
        match socket.recv_into(buf) {
            Ok(0) => session.handle_eof(now),
            // Decoded where it lies: only an unfinished frame's bytes are copied out.
            Ok(_) => session.handle_input_buffer(now, buf),
            // Level-triggered: a socket still readable is reported again.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => session.handle_transport_error(now),
        }
    } else if flags.intersects(EventFlags::HUP | EventFlags::ERR) {
        // Reported whatever the interest, and again on every wait: the socket is dead.
        session.handle_transport_error(now);
    }
    session.write_to(now, &mut socket);
    if session.should_close_transport() {
        return true;
    }
    let mut interest = EventFlags::empty();
    if session.wants_read() {
        interest |= EventFlags::IN;
    }
    if !session.poll_transmit().is_empty() {
        interest |= EventFlags::OUT;
    }
    if interest != conn.interest {
        if epoll::modify(epoll, &conn.stream, EventData::new_u64(key), interest).is_err() {
            return true;
        }
        conn.interest = interest;
    }
    if let Some(at) = session.poll_timeout() {
        // One entry per connection, replaced only when the deadline comes earlier: a pass
        // before a later deadline is harmless (handle_timeout does nothing).
        let at = timers.tick(at);
        if conn.armed == 0 || at < conn.armed {
            conn.armed = at;
            timers.heap.push(Reverse((at, key)));
        }
    }
    false
}

/// A connection's socket read and written by direct system calls (rustix), not through
/// libc as `TcpStream`'s `Read` and `Write` are: libc's wrappers mark each call a thread
/// cancellation point, two more calls around every `recv` and `writev` that cost ~2.5% of
/// the loop's CPU in a 16 B echo (`perf`; `benches/README.md`). Writes say `MSG_NOSIGNAL`
/// (std's `write_vectored` is a plain `writev`): a peer gone away is an error for its
/// session, never a `SIGPIPE` for a process that has not ignored it. (The streams that
/// `serve_stream` and TLS drive still write through `Async`, a plain `writev`.)
struct Socket<'a>(&'a TcpStream);

impl Socket<'_> {
    /// Reads what has arrived onto the end of `buf`, into its spare capacity (the kernel
    /// fills it: nothing is zeroed first); returns how many bytes came, 0 at the end.
    fn recv_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let (read, _) = net::recv(self.0, spare_capacity(buf), RecvFlags::empty())?;
        Ok(read)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(net::send(self.0, buf, SendFlags::NOSIGNAL)?)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut no_control = SendAncillaryBuffer::default();
        Ok(net::sendmsg(self.0, bufs, &mut no_control, SendFlags::NOSIGNAL)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The loop's deadlines, in whole milliseconds since the loop started (a tick): an entry
/// is two `u64`s, not an `Instant` and a key (every connection has one, or two while an
/// earlier deadline replaces a later one).
struct Timers {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Timers {
    fn new() -> Self {
        Timers {
            epoch: Instant::now(),
            heap: BinaryHeap::new(),
        }
    }

    /// The first tick at or after `at`, and at least 1 (0 is no deadline): a deadline is
    /// never acted on before it is due.
    fn tick(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        let millis = u64::from(since.subsec_nanos().div_ceil(1_000_000));
        since.as_secs().saturating_mul(1000).saturating_add(millis).max(1)
    }

    /// The last tick that has passed at `now`.
    fn tick_passed(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        let millis = u64::from(since.subsec_millis());
        since.as_secs().saturating_mul(1000).saturating_add(millis)
    }

    /// When `tick` is; `None` past what an `Instant` can hold (a deadline never due).
    fn instant(&self, tick: u64) -> Option<Instant> {
        self.epoch.checked_add(Duration::from_millis(tick))
    }
}

/// Whether an accept error means the process or the system is out of something (file
/// descriptors, memory): retrying at once would fail again.
fn is_out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    matches!(errno, Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM))
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A connected loopback pair: the server's end non-blocking, as the loop keeps it.
    fn pair() -> io::Result<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        server.set_nonblocking(true)?;
        // A test of broken writes fails rather than hangs.
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok((server, client))
    }

    /// Retries `op` while it would block, as the loop does on the next readiness (5 s at most).
    fn when_ready<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match op() {
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }

    #[test]
    fn socket_reads_what_arrives_and_says_would_block_and_end() -> io::Result<()> {
        let (server, mut client) = pair()?;
        let mut buf = Vec::with_capacity(64);
        let empty = Socket(&server).recv_into(&mut buf).map(|_| ());
        assert_eq!(empty.map_err(|e| e.kind()), Err(ErrorKind::WouldBlock));
        client.write_all(b"hello")?;
        let n = when_ready(|| Socket(&server).recv_into(&mut buf))?;
        assert_eq!((n, &buf[..]), (5, &b"hello"[..]), "appended to the buffer");
        client.write_all(b" you")?;
        when_ready(|| Socket(&server).recv_into(&mut buf))?;
        assert_eq!(buf, b"hello you");
        client.shutdown(Shutdown::Write)?;
        assert_eq!(
            when_ready(|| Socket(&server).recv_into(&mut buf))?,
            0,
            "the peer's end reads as 0"
        );
        Ok(())
    }

    #[test]
    fn socket_writes_slices_in_order_and_reports_a_vanished_peer() -> io::Result<()> {
        let (server, mut client) = pair()?;
        let slices = [IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")];
        assert_eq!(Socket(&server).write_vectored(&slices)?, 5);
        assert_eq!(Socket(&server).write(b"f")?, 1);
        let mut got = [0u8; 6];
        client.read_exact(&mut got)?;
        assert_eq!(&got, b"abcdef");
        // Once the peer has closed, a write draws its reset and a later one fails (EPIPE or
        // ECONNRESET): the error reaches the caller. (`MSG_NOSIGNAL` keeps it from also being
        // a `SIGPIPE`, which no test here can see: Rust's runtime ignores the signal.)
        drop(client);
        let failed = (0..5000).find_map(|_| {
            let written = Socket(&server).write(b"more");
            std::thread::sleep(Duration::from_millis(1));
            written.err().filter(|e| e.kind() != ErrorKind::WouldBlock)
        });
        let kind = failed.map(|e| e.kind());
        assert!(
            matches!(kind, Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)),
            "{kind:?}"
        );
        Ok(())
    }
}
