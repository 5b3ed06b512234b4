//! The connection pool: a few worker threads share one edge-triggered epoll instance and
//! serve every connection, one pass at a time; handlers run on them. A connection is
//! served by at most one worker at once (its [`Conn::state`]), so a handler that blocks
//! holds one worker and the others serve everyone else. When no pass has finished for
//! 10 ms, the timer thread wakes a sleeping worker for what is queued, or adds a worker
//! (up to a maximum) when none sleeps; spare workers leave after a quiet spell.
//!
//! Socket events, mail (broadcasts, sends by id, closes) and deadlines all put a
//! connection on one ready queue. From outside the pool that wakes at most one sleeping
//! worker per burst, never a thread per recipient; a worker runs what it queued itself.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use eventum_core::driver::Session;
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};

use crate::transport::Transport;

/// Bytes a worker reads at once (one buffer per worker; connections keep none).
const READ_SIZE: usize = 64 * 1024;
/// Reads per pass before the connection goes to the back of the ready queue.
const READS_PER_PASS: usize = 16;
/// Most epoll events a worker takes at once.
const EVENTS: usize = 64;
/// How long a closing transport may take to send its last bytes (a TLS `close_notify`).
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// How long every worker must be stuck in its pass before the pool adds one.
const STALL: Duration = Duration::from_millis(10);
/// How long a worker beyond the minimum waits for work before it leaves.
const SPARE_WAIT: Duration = Duration::from_secs(10);
/// The epoll key of the wake-up eventfd (connection keys have a generation below 2^32).
const WAKE_KEY: u64 = u64::MAX;

// What an epoll event said about a connection's socket.
/// Input (or its end) is ready.
const READABLE: u8 = 1;
/// The peer closed its side or reset.
const HUNG_UP: u8 = 2;

// A connection's scheduling state.
/// No worker has it and it is not queued.
const IDLE: u8 = 0;
/// On the ready queue.
const SCHEDULED: u8 = 1;
/// A worker is running a pass.
const RUNNING: u8 = 2;
/// A worker is running a pass and something happened since it began: queue it again.
const NOTIFIED: u8 = 3;

thread_local! {
    /// The pool this thread is a worker of (its address), or 0: a handler on one pool
    /// that sends to another pool's connection must still wake that pool.
    static WORKER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many threads the pool runs, and their stacks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Threads {
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) stack_size: usize,
}

/// The pool; dropping the last clone does not stop it: [`Pool::stop`] does.
#[derive(Clone, Debug)]
pub(crate) struct Pool(Arc<Shared>);

struct Shared {
    epoll: OwnedFd,
    /// Wakes one sleeping worker for the ready queue (registered edge-triggered).
    wake: OwnedFd,
    /// Set from the write on `wake` until a worker takes that wake-up: one per burst.
    wake_pending: AtomicBool,
    slots: RwLock<Slots>,
    ready: Mutex<VecDeque<Arc<Conn>>>,
    ready_len: AtomicUsize,
    timers: Mutex<BinaryHeap<Timer>>,
    /// Signals the timer thread: an earlier deadline, a worker busy (watch for stalls),
    /// or the stop.
    timers_changed: Condvar,
    threads: Threads,
    /// Workers alive, workers waiting in epoll, workers in a pass.
    workers: AtomicUsize,
    sleeping: AtomicUsize,
    busy: AtomicUsize,
    /// Passes finished, for the timer thread to see progress.
    passes: AtomicU64,
    /// Whether the timer thread watches for a stall.
    watching: AtomicBool,
    started: AtomicBool,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads)
            .field("workers", &self.workers)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

/// Connections by epoll key: the slot index, and its generation in the high half, so an
/// event for a connection that ended (its slot reused) is recognised and ignored.
#[derive(Default)]
struct Slots {
    conns: Vec<(u32, Option<Arc<Conn>>)>,
    free: Vec<u32>,
}

/// One connection: its scheduling state and, while it lasts, what a pass needs.
struct Conn {
    key: u64,
    state: AtomicU8,
    /// What epoll reported since the last pass: [`READABLE`], [`HUNG_UP`].
    socket_ready: AtomicU8,
    io: Mutex<Option<Io>>,
}

struct Io {
    session: Session,
    stream: Box<dyn Transport>,
    /// Readiness not used up yet: cleared only by `WouldBlock` (or a short read from a
    /// socket), since the epoll instance reports edges.
    readable: bool,
    /// The peer closed or reset: read until `WouldBlock` or the end, short reads or not
    /// (the edge for the end may have come with the last data).
    hung_up: bool,
    /// Set once the session is over: until when the transport may take to send what it
    /// owes the peer (TLS: its `close_notify`) before the socket is shut down.
    closing: Option<Instant>,
    /// The earliest deadline the timer thread holds for this connection.
    armed: Option<Instant>,
    /// Told when the connection ends (`serve_stream` waits on it).
    done: Option<Sender<()>>,
}

/// A connection's deadline in the timer thread's heap (earliest first). Entries are
/// never removed early: one that fires before the connection's real deadline only costs
/// a pass that finds nothing due.
struct Timer {
    at: Instant,
    conn: Weak<Conn>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

/// What a pass left to do.
enum Pass {
    /// Waiting for the socket, mail or a deadline.
    Wait,
    /// Input is still ready: queue the connection behind the others.
    Again,
    /// The connection is over.
    Ended,
}

/// The mailbox's waker: queues the connection for a pass.
struct MailWaker {
    conn: Weak<Conn>,
    pool: Weak<Shared>,
}

impl Wake for MailWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let (Some(conn), Some(pool)) = (self.conn.upgrade(), self.pool.upgrade()) {
            pool.notify(conn);
        }
    }
}

impl Pool {
    pub(crate) fn new(threads: Threads) -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &wake,
            EventData::new_u64(WAKE_KEY),
            EventFlags::IN | EventFlags::ET,
        )?;
        Ok(Pool(Arc::new(Shared {
            epoll,
            wake,
            wake_pending: AtomicBool::new(false),
            slots: RwLock::default(),
            ready: Mutex::default(),
            ready_len: AtomicUsize::new(0),
            timers: Mutex::default(),
            timers_changed: Condvar::new(),
            threads,
            workers: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            passes: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        })))
    }

    /// Serves `stream` with `session` until it ends; `done` is told then.
    pub(crate) fn serve(
        &self,
        session: Session,
        stream: Box<dyn Transport>,
        done: Option<Sender<()>>,
    ) -> io::Result<()> {
        let shared = &self.0;
        if !shared.started.swap(true, AcqRel) {
            if let Err(e) = shared.start() {
                shared.started.store(false, Release);
                return Err(e);
            }
        }
        stream.set_nonblocking(true)?;
        let conn = shared.insert(|key| Conn {
            key,
            state: AtomicU8::new(IDLE),
            socket_ready: AtomicU8::new(0),
            io: Mutex::new(Some(Io {
                session,
                stream,
                readable: true,
                hung_up: false,
                closing: None,
                armed: None,
                done,
            })),
        })?;
        let waker = Waker::from(Arc::new(MailWaker {
            conn: Arc::downgrade(&conn),
            pool: Arc::downgrade(shared),
        }));
        let mut guard = lock(&conn.io);
        let added = match guard.as_mut() {
            Some(io) => {
                io.session.set_waker(&waker);
                let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
                epoll::add(&shared.epoll, &io.stream, EventData::new_u64(conn.key), flags)
            }
            None => Ok(()),
        };
        if let Err(e) = added {
            // Nothing may serve it: its session ends here, with the error.
            shared.remove(conn.key);
            drop(guard.take());
            return Err(e.into());
        }
        // No need to queue it: epoll reports a fresh socket writable at once, and that
        // first pass reads what is there and arms the handshake deadline.
        Ok(())
    }

    /// Stops the workers and the timer thread, waiting at most `timeout` for them, and
    /// drops the connections left (their disconnect hooks run).
    pub(crate) fn stop(&self, timeout: Duration) {
        let shared = &self.0;
        shared.stopping.store(true, Release);
        // Under its lock, so the timer thread is either waiting or yet to look at the flag.
        drop(lock(&shared.timers));
        shared.timers_changed.notify_all();
        let until = Instant::now() + timeout;
        while shared.workers.load(Acquire) > 0 && Instant::now() < until {
            // Each write wakes one sleeping worker, which sees `stopping` and leaves.
            let _ = rustix::io::write(&shared.wake, &1u64.to_ne_bytes());
            std::thread::sleep(Duration::from_millis(1));
        }
        let left = shared.workers.load(Acquire);
        if left > 0 {
            log::warn!("{left} worker threads are still busy in handlers; leaving them");
        }
        let conns: Vec<_> = shared.slots.write().unwrap_or_else(|e| e.into_inner()).take_all();
        for conn in conns {
            // A connection a stuck worker holds stays with it.
            if let Ok(mut io) = conn.io.try_lock() {
                drop(io.take());
            }
        }
    }
}

impl Shared {
    /// Starts the minimum of workers and the timer thread.
    fn start(self: &Arc<Self>) -> io::Result<()> {
        for _ in 0..self.threads.min.max(1) {
            self.spawn_worker()?;
        }
        let pool = Arc::clone(self);
        std::thread::Builder::new()
            .name("eventum-timers".into())
            .spawn(move || pool.keep_time())?;
        Ok(())
    }

    fn spawn_worker(self: &Arc<Self>) -> io::Result<()> {
        self.workers.fetch_add(1, AcqRel);
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("eventum-worker".into())
            .stack_size(self.threads.stack_size)
            .spawn(move || pool.work());
        if spawned.is_err() {
            self.workers.fetch_sub(1, AcqRel);
        }
        spawned.map(drop)
    }

    /// Gives the connection a slot; refused once the pool stops (checked under the lock
    /// `stop` empties the slots with, so no connection is left behind).
    fn insert(&self, conn: impl FnOnce(u64) -> Conn) -> io::Result<Arc<Conn>> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if self.stopping.load(Acquire) {
            return Err(io::Error::other("the server has shut down"));
        }
        let index = slots.free.pop().unwrap_or_else(|| {
            slots.conns.push((0, None));
            (slots.conns.len() - 1) as u32
        });
        let slot = &mut slots.conns[index as usize];
        slot.0 = slot.0.wrapping_add(1) & 0x7fff_ffff;
        let conn = Arc::new(conn((u64::from(slot.0) << 32) | u64::from(index)));
        slot.1 = Some(Arc::clone(&conn));
        Ok(conn)
    }

    fn lookup(&self, key: u64) -> Option<Arc<Conn>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        match slots.conns.get(key as u32 as usize) {
            Some((generation, Some(conn))) if u64::from(*generation) == key >> 32 => Some(Arc::clone(conn)),
            _ => None,
        }
    }

    /// Frees the slot `key` names, unless it already holds another connection.
    fn remove(&self, key: u64) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let index = key as u32;
        if let Some(slot) = slots.conns.get_mut(index as usize) {
            if u64::from(slot.0) == key >> 32 && slot.1.take().is_some() {
                slots.free.push(index);
            }
        }
    }

    /// Something happened for `conn` (input, mail, a deadline): queue it unless it is
    /// queued or running (then it runs again).
    fn notify(&self, conn: Arc<Conn>) {
        if self.claim(&conn) {
            self.enqueue(conn);
        }
    }

    /// Marks an idle connection scheduled (true: the caller queues it), a running one to
    /// run again.
    fn claim(&self, conn: &Conn) -> bool {
        let mut state = conn.state.load(Acquire);
        loop {
            let next = match state {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                _ => return false,
            };
            match conn.state.compare_exchange_weak(state, next, AcqRel, Acquire) {
                Ok(_) => return state == IDLE,
                Err(now) => state = now,
            }
        }
    }

    /// Puts a scheduled connection on the ready queue. From a worker, that is all: it runs
    /// the queue before it sleeps again. From any other thread (a handle, the timers, the
    /// acceptor) it wakes one sleeping worker, once per burst.
    fn enqueue(&self, conn: Arc<Conn>) {
        lock(&self.ready).push_back(conn);
        self.ready_len.fetch_add(1, SeqCst);
        if WORKER_OF.get() != self as *const Shared as usize {
            self.wake_one();
        }
    }

    fn dequeue(&self) -> Option<Arc<Conn>> {
        if self.ready_len.load(SeqCst) == 0 {
            return None;
        }
        let conn = lock(&self.ready).pop_front()?;
        self.ready_len.fetch_sub(1, SeqCst);
        Some(conn)
    }

    /// Wakes one sleeping worker, unless none sleeps or a wake-up is already on its way.
    fn wake_one(&self) {
        if self.sleeping.load(SeqCst) > 0 && !self.wake_pending.swap(true, AcqRel) {
            // Never read back: the counter would fill (and the write fail) after 2^64 - 2
            // wake-ups, centuries away.
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
    }

    /// A worker: takes socket events (without waiting when connections are queued), then
    /// runs the queue as it stands, until the pool stops (or, beyond the minimum, until
    /// nothing comes for a while). Socket events go through the queue too, behind the
    /// mail already there: input read from many connections is handled before the passes
    /// its broadcasts cause, so each member writes a burst of frames at once.
    fn work(self: Arc<Self>) {
        WORKER_OF.set(Arc::as_ptr(&self) as usize);
        let mut buf = vec![0u8; READ_SIZE];
        let mut events = vec![
            Event {
                flags: EventFlags::empty(),
                data: EventData::new_u64(0),
            };
            EVENTS
        ];
        let no_wait = Timespec::default();
        let spare_wait = Timespec::try_from(SPARE_WAIT).unwrap_or_default();
        while !self.stopping.load(Acquire) {
            let queued = self.ready_len.load(SeqCst) > 0;
            let spare = self.workers.load(Acquire) > self.threads.min;
            let timeout = match (queued, spare) {
                (true, _) => Some(&no_wait),
                (false, true) => Some(&spare_wait),
                (false, false) => None,
            };
            if !queued {
                // Announce the sleep, then look once more: `enqueue` wakes only sleepers.
                self.sleeping.fetch_add(1, SeqCst);
                if self.ready_len.load(SeqCst) > 0 {
                    self.sleeping.fetch_sub(1, SeqCst);
                    continue;
                }
            }
            let waited = epoll::wait(&self.epoll, &mut events[..], timeout);
            if !queued {
                self.sleeping.fetch_sub(1, SeqCst);
            }
            match waited {
                Ok(0) if !queued && spare && self.leave() => return,
                Ok(n) => events[..n].iter().for_each(|event| self.dispatch(*event)),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("epoll_wait failed: {e}");
                    std::thread::sleep(STALL);
                }
            }
            for _ in 0..self.ready_len.load(SeqCst) {
                let Some(conn) = self.dequeue() else { break };
                conn.state.store(RUNNING, Release);
                self.run(conn, &mut buf);
            }
        }
        // Stopping: what is still queued would never run. A connection another worker
        // holds stays with it (that worker ends it when its handler returns).
        while let Some(conn) = self.dequeue() {
            if let Ok(mut guard) = conn.io.try_lock() {
                let io = guard.take();
                drop(guard);
                self.end(&conn, io);
            }
        }
        self.workers.fetch_sub(1, AcqRel);
    }

    /// Ends this worker if the pool still has more than its minimum.
    fn leave(&self) -> bool {
        let min = self.threads.min;
        self.workers
            .fetch_update(AcqRel, Acquire, |n| (n > min).then(|| n - 1))
            .is_ok()
    }

    /// Queues the connection an epoll event is for (this worker runs the queue next).
    fn dispatch(&self, event: Event) {
        // The kernel's event struct is packed: copy its fields out.
        let (key, flags) = (event.data.u64(), { event.flags });
        if key == WAKE_KEY {
            // SeqCst, as `enqueue`'s count and `wake_one`'s look at `sleeping` are.
            self.wake_pending.swap(false, SeqCst);
            return;
        }
        let Some(conn) = self.lookup(key) else { return };
        let mut ready = 0;
        if flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR) {
            ready |= READABLE;
        }
        if flags.intersects(EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR) {
            ready |= HUNG_UP;
        }
        if ready != 0 {
            conn.socket_ready.fetch_or(ready, AcqRel);
        }
        self.notify(conn);
    }

    /// Runs one pass of a connection this worker claimed, then releases or requeues it.
    fn run(&self, conn: Arc<Conn>, buf: &mut [u8]) {
        self.busy.fetch_add(1, SeqCst);
        if !self.watching.load(SeqCst) && !self.watching.swap(true, SeqCst) {
            // Under the timer thread's lock, so the signal cannot fall between its look
            // at `busy` and its wait.
            let _timers = lock(&self.timers);
            self.timers_changed.notify_one();
        }
        // Handlers' panics are caught in the core; this catches the driver's own, so a
        // bug ends one connection, not a worker the pool counts on.
        let pass = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut guard = lock(&conn.io);
            match guard.as_mut() {
                None => Pass::Ended,
                Some(io) => {
                    let pass = self.pass(&conn, io, buf);
                    if matches!(pass, Pass::Ended) {
                        let io = guard.take();
                        drop(guard);
                        self.end(&conn, io);
                    }
                    pass
                }
            }
        }))
        .unwrap_or_else(|_| {
            log::error!("a connection's pass panicked; closing the connection");
            // Ending it drops the session (its disconnect hook runs) on a connection the
            // panic may have left inconsistent: a second panic must not end the worker.
            let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let io = lock(&conn.io).take();
                self.end(&conn, io);
            }));
            if ended.is_err() {
                log::error!("closing a connection after a panic panicked too");
            }
            Pass::Ended
        });
        self.busy.fetch_sub(1, AcqRel);
        self.passes.fetch_add(1, Relaxed);
        if self.stopping.load(Acquire) && !matches!(pass, Pass::Ended) {
            // The pool has stopped (a handler outlived `stop`'s wait): nothing would run
            // this connection again, so it ends here rather than wait in the queue.
            let io = lock(&conn.io).take();
            self.end(&conn, io);
            conn.state.store(IDLE, Release);
            return;
        }
        match pass {
            Pass::Ended => conn.state.store(IDLE, Release),
            Pass::Again => {
                conn.state.store(SCHEDULED, Release);
                self.enqueue(conn);
            }
            Pass::Wait => {
                if conn.state.compare_exchange(RUNNING, IDLE, AcqRel, Acquire).is_err() {
                    // Notified during the pass.
                    conn.state.store(SCHEDULED, Release);
                    self.enqueue(conn);
                }
            }
        }
    }

    /// Mail, deadlines, reads, writes: what the connection's state allows now.
    fn pass(&self, conn: &Arc<Conn>, io: &mut Io, buf: &mut [u8]) -> Pass {
        let ready = conn.socket_ready.swap(0, AcqRel);
        io.readable |= ready & READABLE != 0;
        io.hung_up |= ready & HUNG_UP != 0;
        let now = Instant::now();
        if let Some(until) = io.closing {
            return self.finish_close(conn, io, now, until);
        }
        let session = &mut io.session;
        if session.has_mail() {
            session.handle_mail(now);
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        let mut reads = 0;
        while io.readable && session.wants_read() && reads < READS_PER_PASS {
            reads += 1;
            match io.stream.read(buf) {
                Ok(0) => {
                    io.readable = false;
                    session.handle_eof(Instant::now());
                }
                Ok(n) => {
                    session.handle_input(Instant::now(), &buf[..n]);
                    // A short read from a socket drained it: skip the read that would block.
                    io.readable = io.hung_up || !(n < buf.len() && io.stream.short_read_drains());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => io.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => session.handle_transport_error(Instant::now()),
            }
        }
        // Flushed too: a buffering transport (TLS) holds written bytes until then, and
        // bytes of its own (a handshake flight queued while reading).
        session.write_to(Instant::now(), &mut *io.stream);
        if session.should_close_transport() {
            // The server closes the TCP connection first (RFC 6455 §7.1.1), once the
            // transport has sent what it owes the peer.
            io.stream.close_notify();
            let until = now + CLOSE_FLUSH;
            io.closing = Some(until);
            return self.finish_close(conn, io, now, until);
        }
        if let Some(at) = io.session.poll_timeout() {
            self.arm(conn, io, now, at);
        }
        match io.readable && io.session.wants_read() {
            true => Pass::Again,
            false => Pass::Wait,
        }
    }

    /// Sends what a closing transport still holds, without blocking: over when it is
    /// all sent (or cannot be), or at `until`; until then the socket's writable edge or
    /// the deadline brings the next try.
    fn finish_close(&self, conn: &Arc<Conn>, io: &mut Io, now: Instant, until: Instant) -> Pass {
        match io.stream.flush() {
            Err(e) if e.kind() == ErrorKind::WouldBlock && now < until => {
                self.arm(conn, io, now, until);
                Pass::Wait
            }
            _ => Pass::Ended,
        }
    }

    /// Makes sure the timer thread runs a pass for `conn` at `at` (or earlier).
    fn arm(&self, conn: &Arc<Conn>, io: &mut Io, now: Instant, at: Instant) {
        if io.armed.is_some_and(|armed| armed <= now) {
            // That entry has fired, or is about to.
            io.armed = None;
        }
        if io.armed.is_none_or(|armed| at < armed) {
            io.armed = Some(at);
            let mut timers = lock(&self.timers);
            let earliest = timers.peek().is_none_or(|first| at < first.at);
            timers.push(Timer {
                at,
                conn: Arc::downgrade(conn),
            });
            if earliest {
                self.timers_changed.notify_one();
            }
        }
    }

    /// Closes the transport of a connection that is over and frees its slot (a pass that
    /// finds the connection already ended does nothing: its slot may be another's now).
    fn end(&self, conn: &Conn, io: Option<Io>) {
        let Some(mut io) = io else { return };
        self.remove(conn.key);
        let _ = epoll::delete(&self.epoll, &io.stream);
        let _ = io.stream.shutdown(Shutdown::Write);
        let _ = io.stream.shutdown(Shutdown::Both);
        let done = io.done.take();
        // The session goes (its disconnect hook runs) before `serve_stream` returns.
        drop(io);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// No pass finished for [`STALL`] while `busy` workers are in one: they are blocked in
    /// handlers. A sleeping worker takes the queue they left; with none, the pool grows.
    fn unstall(self: &Arc<Self>, busy: usize) {
        let workers = self.workers.load(Acquire);
        if self.sleeping.load(SeqCst) > 0 {
            if self.ready_len.load(SeqCst) > 0 {
                self.wake_one();
            }
        } else if busy >= workers && workers < self.threads.max {
            log::debug!("every worker ({workers}) is blocked in a handler: adding one");
            let _ = self.spawn_worker();
        }
    }

    /// The timer thread: queues connections whose deadline came, and, while a worker is
    /// busy, checks every [`STALL`] that passes finish (see [`Shared::unstall`]) and that
    /// no queued work waits while workers sleep.
    fn keep_time(self: Arc<Self>) {
        let mut timers = lock(&self.timers);
        let mut seen = (self.passes.load(Relaxed), Instant::now());
        let mut helped = Instant::now();
        while !self.stopping.load(Acquire) {
            let now = Instant::now();
            while timers.peek().is_some_and(|first| first.at <= now) {
                if let Some(conn) = timers.pop().and_then(|timer| timer.conn.upgrade()) {
                    self.notify(conn);
                }
            }
            let mut wait = timers.peek().map(|first| first.at - now);
            let mut busy = self.busy.load(SeqCst);
            if busy == 0 {
                // Stop watching, then look once more: a pass that began before the store
                // is seen here, one that begins after it sees the flag down and signals.
                self.watching.store(false, SeqCst);
                busy = self.busy.load(SeqCst);
                seen = (self.passes.load(Relaxed), now);
            }
            if busy > 0 {
                let passes = self.passes.load(Relaxed);
                if passes != seen.0 {
                    seen = (passes, now);
                } else if now - seen.1 >= STALL {
                    self.unstall(busy);
                    seen.1 = now;
                }
                // Passes finish, but work waits in the queue while workers sleep: one worker
                // took a batch of socket events whose handlers each block a little (under
                // STALL). A worker queues for itself without waking others, so wake one to
                // share the rest; at most once per STALL.
                if now - helped >= STALL && self.ready_len.load(SeqCst) > 0 {
                    self.wake_one();
                    helped = now;
                }
                wait = Some(wait.map_or(STALL, |w| w.min(STALL)));
            }
            timers = match wait {
                Some(wait) => {
                    self.timers_changed
                        .wait_timeout(timers, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.timers_changed.wait(timers).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

impl Slots {
    fn take_all(&mut self) -> Vec<Arc<Conn>> {
        self.free.clear();
        self.conns.drain(..).filter_map(|(_, conn)| conn).collect()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
