//! Load generator for WebSocket echo servers (eventum's examples and peers alike).
//!
//! ```text
//! loadgen echo --url ws://127.0.0.1:9001/ --connections 50 --inflight 1 --size 16 --duration 10 [--warmup 1] [--threads 1]
//! loadgen idle --url ws://127.0.0.1:9001/ --connections 10000 --hold-seconds 10 [--deflate 1]
//! loadgen broadcast --url ws://127.0.0.1:9001/broadcast --connections 64 --inflight 1 --size 16 --duration 10
//! loadgen handshake --url ws://127.0.0.1:9001/ --threads 1 --duration 10
//! ```
//!
//! `echo` opens C connections, keeps W text messages of S bytes in flight on each (a new
//! one goes out as each echo comes back), and reports messages/s and the p50/p99 round
//! trip over the measured window (after the warm-up). `idle` opens N connections (the
//! handshake only), prints `HOLDING ...` once they are all open, holds them for H seconds
//! so the server's memory can be read, then closes them. `broadcast` is `echo` against a
//! server that sends every message to all C connections (each member of one room): every
//! connection keeps W of its own messages in flight (the next goes out when its own copy
//! comes back) and deliveries/s counts every copy received. `handshake` opens and closes
//! connections back to back on T threads and reports handshakes/s.
//!
//! `--deflate 1` offers permessage-deflate with no context takeover either way (what
//! eventum answers to a browser's offer by default, and what makes every compressed echo
//! of a message the same bytes). `idle --deflate 1` then exchanges one compressed 1 KiB
//! JSON message on every connection before holding it, so the memory read is what an idle
//! connection costs after it has used compression. `echo --deflate 1` sends `--size` bytes
//! of JSON, compressed once up front; the server must agree, and each connection's first
//! compressed echo is inflated and checked, the later ones compared with it byte for byte.
//! `broadcast --deflate 1` does the same for each member's own copies and counts the other
//! members' compressed copies without inflating them.
//!
//! The client is a minimal hand-written one (one epoll loop per thread, `--threads`
//! default 1, frames encoded once up front) so that the load generator costs as little
//! CPU as possible and the server is what is measured. Every echo is checked byte for byte.
//! The last line printed is `RESULT key=value ...`, for scripts.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use eventum_core::frame::{encode_client_frame, OpCode};

const KEY: [u8; 4] = [0x1f, 0x2e, 0x3d, 0x4c];
/// RFC 6455 §1.3's example key and the accept value it must produce.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// A connection whose echo has not come back after this long counts as stalled.
const STALL: Duration = Duration::from_secs(10);

fn usage() -> ! {
    eprintln!(
        "usage:\n  loadgen echo --url ws://HOST:PORT/PATH [--connections C] [--inflight W] [--size S] \
         [--duration SECONDS] [--warmup SECONDS] [--threads T] [--deflate 1]\n  loadgen idle --url ws://HOST:PORT/PATH [--connections N] \
         [--hold-seconds H] [--deflate 1]\n  loadgen broadcast (the options of echo; --size >= 8)\n  loadgen handshake --url ws://HOST:PORT/PATH \
         [--threads T] [--duration SECONDS] [--warmup SECONDS]"
    );
    std::process::exit(2)
}

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    host: String,
    path: String,
    connections: usize,
    inflight: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    hold: f64,
    threads: usize,
    /// Offer permessage-deflate and send compressed JSON (`--deflate 1`).
    deflate: bool,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    if !["echo", "idle", "broadcast", "handshake"].contains(&mode.as_str()) {
        usage();
    }
    let mut args = Args {
        mode,
        host: "127.0.0.1:9001".into(),
        path: "/".into(),
        connections: 50,
        inflight: 1,
        size: 16,
        duration: 10.0,
        warmup: 1.0,
        hold: 10.0,
        threads: 1,
        deflate: false,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let number = || value.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--url" => {
                let rest = value.strip_prefix("ws://").unwrap_or_else(|| usage());
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                args.host = host.to_owned();
                args.path = if path.is_empty() { "/".into() } else { path.to_owned() };
            }
            "--connections" => args.connections = number() as usize,
            "--inflight" => args.inflight = (number() as usize).max(1),
            "--size" => args.size = number() as usize,
            "--duration" => args.duration = number(),
            "--warmup" => args.warmup = number(),
            "--hold-seconds" => args.hold = number(),
            "--threads" => args.threads = (number() as usize).max(1),
            "--deflate" => args.deflate = number() != 0.0,
            _ => usage(),
        }
    }
    args
}

/// How the server answered the upgrade.
enum Opened {
    /// The stream, any bytes read past the response head, and whether permessage-deflate
    /// was agreed.
    Open(TcpStream, Vec<u8>, bool),
    /// Any status but 101 (e.g. 503 over a connection limit).
    Refused(String),
}

/// Connects and upgrades; returns the stream and any bytes read past the response head.
fn open(args: &Args) -> io::Result<Opened> {
    let addr = args
        .host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, STALL)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(STALL))?;
    let offer = match args.deflate {
        true => {
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover; client_max_window_bits\r\n"
        }
        false => "",
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
        args.path, args.host
    );
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("response head too long"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the handshake",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    if !status.starts_with("HTTP/1.1 101") {
        return Ok(Opened::Refused(status));
    }
    let accepted = head.lines().any(|line| {
        line.split_once(':')
            .is_some_and(|(n, v)| n.eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == WS_ACCEPT)
    });
    if !accepted {
        return Err(io::Error::other("101 without the right Sec-WebSocket-Accept"));
    }
    let deflate = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("sec-websocket-extensions") && v.trim().starts_with("permessage-deflate")
        })
    });
    Ok(Opened::Open(stream, buf.split_off(head_end), deflate))
}

/// A server frame at the start of `buf`: (opcode, payload range, frame length).
fn parse_frame(buf: &[u8]) -> io::Result<Option<(u8, std::ops::Range<usize>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 || buf[0] & 0x80 == 0 {
        return Err(io::Error::other("server frame masked or fragmented"));
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap_or_default()), 10),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let total = header + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((buf[0] & 0x0f, header..total, total)))
}

#[derive(Default)]
struct EchoStats {
    /// Round trips completed inside the measured window, in nanoseconds.
    latencies: Vec<u64>,
    /// Frames received inside the measured window (in `broadcast`, every copy).
    delivered: u64,
    /// Echoes received over the whole run (warm-up and drain included).
    total: u64,
    errors: Vec<String>,
}

/// One connection of an echo run.
struct EchoConn {
    stream: mio::net::TcpStream,
    rx: Vec<u8>,
    /// Bytes not written yet: `tx[tx_pos..]`.
    tx: Vec<u8>,
    tx_pos: usize,
    /// When each message in flight was sent, oldest first (echoes come back in order).
    sent: VecDeque<Instant>,
    done: bool,
    /// This connection's message: the shared one in `echo`; in `broadcast`, one that
    /// starts with this connection's number, so its own copies can be told apart.
    frame: Vec<u8>,
    payload: Vec<u8>,
    /// `--deflate`: the server's compressed echo of `payload`, once one was inflated and
    /// checked (without context takeover every echo of it is the same bytes).
    deflated_echo: Option<Vec<u8>>,
}

impl EchoConn {
    /// Writes what is pending until the socket would block.
    fn flush(&mut self) -> io::Result<()> {
        while self.tx_pos < self.tx.len() {
            match self.stream.write(&self.tx[self.tx_pos..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "server stopped reading")),
                Ok(n) => self.tx_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.tx.clear();
        self.tx_pos = 0;
        Ok(())
    }

    /// Reads until the socket would block; checks every echo, records its round trip and
    /// sends the next message while the run lasts.
    fn on_readable(&mut self, chunk: &mut [u8], ctx: &EchoCtx, stats: &mut EchoStats) -> io::Result<()> {
        loop {
            match self.stream.read(chunk) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed")),
                Ok(n) => self.rx.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        let mut at = 0;
        while let Some((opcode, range, len)) = parse_frame(&self.rx[at..])? {
            let compressed = self.rx[at] & 0x40 != 0;
            let body = &self.rx[at..][range];
            let own = match compressed {
                false => body == &self.payload[..],
                true if self.deflated_echo.as_deref() == Some(body) => true,
                // Until its own copy is known, every compressed frame is inflated and
                // compared; after that, other members' copies are only counted.
                true if self.deflated_echo.is_none()
                    && eventum_benches::inflate_message(body).as_deref() == Some(&self.payload[..]) =>
                {
                    self.deflated_echo = Some(body.to_vec());
                    true
                }
                true => false,
            };
            // In `broadcast` any member's message of the right size is a delivery, and
            // any compressed one (its size is only known inflated).
            let other = ctx.broadcast && (compressed || body.len() == self.payload.len());
            if opcode != 0x1 || !(own || other) {
                return Err(io::Error::other(format!(
                    "unexpected frame (opcode {opcode:#x}, {len} bytes)"
                )));
            }
            at += len;
            stats.total += 1;
            if now >= ctx.start && now < ctx.end {
                stats.delivered += 1;
            }
            if !own {
                continue;
            }
            let Some(t) = self.sent.pop_front() else {
                return Err(io::Error::other("more echoes than messages sent"));
            };
            if t >= ctx.start && now < ctx.end {
                stats.latencies.push(now.duration_since(t).as_nanos() as u64);
            }
            if now < ctx.end {
                self.tx.extend_from_slice(&self.frame);
                self.sent.push_back(now);
            }
        }
        self.rx.drain(..at);
        Ok(())
    }
}

/// What every connection of a run shares.
struct EchoCtx {
    broadcast: bool,
    start: Instant,
    end: Instant,
}

/// One thread's share of the connections, driven by one epoll loop: keep `inflight`
/// messages out on each until the window ends, then wait for the last echoes.
fn run_echo(
    streams: Vec<(usize, TcpStream, Vec<u8>)>,
    args: &Args,
    barrier: &Barrier,
    window: &(Instant, Instant),
) -> EchoStats {
    let mut stats = EchoStats::default();
    if let Err(e) = echo_loop(streams, args, barrier, window, &mut stats) {
        stats.errors.push(e.to_string());
    }
    stats
}

fn echo_loop(
    streams: Vec<(usize, TcpStream, Vec<u8>)>,
    args: &Args,
    barrier: &Barrier,
    window: &(Instant, Instant),
    stats: &mut EchoStats,
) -> io::Result<()> {
    let broadcast = args.mode == "broadcast";
    let ctx = EchoCtx {
        broadcast,
        start: window.0,
        end: window.1,
    };
    let mut poll = mio::Poll::new()?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, (number, stream, rx)) in streams.into_iter().enumerate() {
        let mut payload: Vec<u8> = match args.deflate {
            true => eventum_benches::json_message(args.size).into_bytes(),
            false => (0..args.size).map(|i| b'a' + (i % 26) as u8).collect(),
        };
        if broadcast {
            let tag = format!("{number:08}");
            let n = tag.len().min(payload.len());
            payload[..n].copy_from_slice(&tag.as_bytes()[..n]);
        }
        let mut frame = Vec::new();
        if args.deflate {
            let compressed = eventum_benches::client_deflate(&payload);
            encode_client_frame(&mut frame, true, OpCode::Text, &compressed, KEY);
            frame[0] |= 0x40; // RSV1: a compressed message
        } else {
            encode_client_frame(&mut frame, true, OpCode::Text, &payload, KEY);
        }
        stream.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        poll.registry().register(
            &mut stream,
            mio::Token(i),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        conns.push(EchoConn {
            stream,
            rx,
            tx: Vec::with_capacity(frame.len() * args.inflight),
            tx_pos: 0,
            sent: VecDeque::with_capacity(args.inflight),
            done: false,
            frame,
            payload,
            deflated_echo: None,
        });
    }
    barrier.wait();
    let now = Instant::now();
    for conn in &mut conns {
        for _ in 0..args.inflight {
            conn.tx.extend_from_slice(&conn.frame);
            conn.sent.push_back(now);
        }
        conn.flush()?;
    }
    let mut active = conns.len();
    let mut events = mio::Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    while active > 0 {
        poll.poll(&mut events, Some(STALL))?;
        if events.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{active} connections stalled"),
            ));
        }
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            if conn.done {
                continue;
            }
            if event.is_readable() || event.is_read_closed() {
                if let Err(e) = conn.on_readable(&mut chunk, &ctx, stats) {
                    stats.errors.push(e.to_string());
                    conn.done = true;
                    active -= 1;
                    continue;
                }
            }
            if let Err(e) = conn.flush() {
                stats.errors.push(e.to_string());
                conn.done = true;
                active -= 1;
                continue;
            }
            if conn.sent.is_empty() {
                conn.done = true;
                active -= 1;
            }
        }
    }
    for conn in conns {
        close_mio(conn.stream);
    }
    Ok(())
}

/// Sends a normal close on a non-blocking stream (best effort) and lets go of it.
fn close_mio(mut stream: mio::net::TcpStream) {
    let mut frame = Vec::new();
    encode_client_frame(&mut frame, true, OpCode::Close, &1000u16.to_be_bytes(), KEY);
    let _ = stream.write(&frame);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Sends a normal close and lets go of the connection.
fn close(mut stream: TcpStream) {
    let mut frame = Vec::new();
    encode_client_frame(&mut frame, true, OpCode::Close, &1000u16.to_be_bytes(), KEY);
    let _ = stream.write_all(&frame);
    let _ = stream.shutdown(Shutdown::Write);
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn echo(args: &Args) -> io::Result<()> {
    let began = Instant::now();
    if args.mode == "broadcast" && args.size < 8 {
        return Err(io::Error::other(
            "broadcast needs --size 8 or more (the sender's number)",
        ));
    }
    if args.deflate && args.size < 64 {
        return Err(io::Error::other("--deflate 1 needs --size 64 or more (a JSON message)"));
    }
    let mut streams = Vec::with_capacity(args.connections);
    for number in 0..args.connections {
        match open(args)? {
            Opened::Open(_, _, false) if args.deflate => {
                return Err(io::Error::other("the server did not agree permessage-deflate"));
            }
            Opened::Open(stream, rest, _) => streams.push((number, stream, rest)),
            Opened::Refused(status) => return Err(io::Error::other(format!("upgrade refused: {status}"))),
        }
    }
    let threads = args.threads.clamp(1, streams.len().max(1));
    let mut shares: Vec<Vec<(usize, TcpStream, Vec<u8>)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, pair) in streams.into_iter().enumerate() {
        shares[i % threads].push(pair);
    }
    let barrier = Arc::new(Barrier::new(threads + 1));
    // Decided before the threads start; they wait on the barrier until then.
    let start = Instant::now() + Duration::from_millis(50) + Duration::from_secs_f64(args.warmup);
    let window = Arc::new((start, start + Duration::from_secs_f64(args.duration)));
    let threads: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (args, barrier, window) = (args.clone(), Arc::clone(&barrier), Arc::clone(&window));
            std::thread::spawn(move || run_echo(share, &args, &barrier, &window))
        })
        .collect();
    barrier.wait();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let (mut total, mut delivered) = (0, 0);
    for thread in threads {
        let stats = thread
            .join()
            .map_err(|_| io::Error::other("a connection thread panicked"))?;
        latencies.extend(stats.latencies);
        total += stats.total;
        delivered += stats.delivered;
        errors.extend(stats.errors);
    }
    latencies.sort_unstable();
    for e in errors.iter().take(5) {
        eprintln!("connection error: {e}");
    }
    let rate = latencies.len() as f64 / args.duration;
    println!(
        "echo: {} connections x {} in flight, {} B text, {:.1} s measured: {:.0} msgs/s, p50 {:.1} us, p99 {:.1} us, {} errors",
        args.connections,
        args.inflight,
        args.size,
        args.duration,
        rate,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        errors.len()
    );
    println!(
        "RESULT mode={} connections={} inflight={} size={} seconds={} messages={} total={total} msgs_per_sec={:.0} deliveries_per_sec={:.0} p50_us={:.1} p99_us={:.1} errors={} client_cpu_share={:.2}",
        args.mode,
        args.connections,
        args.inflight,
        args.size,
        args.duration,
        latencies.len(),
        rate,
        delivered as f64 / args.duration,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        errors.len(),
        client_cpu_share(began.elapsed().as_secs_f64())
    );
    Ok(())
}

/// Opens and closes connections back to back on `--threads` threads for the duration.
fn handshake(args: &Args) -> io::Result<()> {
    let began = Instant::now();
    let end = Instant::now() + Duration::from_secs_f64(args.warmup + args.duration);
    let start = Instant::now() + Duration::from_secs_f64(args.warmup);
    let threads: Vec<_> = (0..args.threads)
        .map(|_| {
            let args = args.clone();
            std::thread::spawn(move || -> (u64, u64, Option<String>) {
                let (mut counted, mut total) = (0, 0);
                while Instant::now() < end {
                    match open(&args) {
                        Ok(Opened::Open(stream, _, _)) => close(stream),
                        Ok(Opened::Refused(status)) => return (counted, total, Some(status)),
                        Err(e) => return (counted, total, Some(e.to_string())),
                    }
                    total += 1;
                    counted += u64::from(Instant::now() >= start);
                }
                (counted, total, None)
            })
        })
        .collect();
    let (mut counted, mut total, mut errors) = (0, 0, Vec::new());
    for thread in threads {
        let (c, t, error) = thread.join().map_err(|_| io::Error::other("a thread panicked"))?;
        counted += c;
        total += t;
        errors.extend(error);
    }
    for e in errors.iter().take(5) {
        eprintln!("handshake error: {e}");
    }
    let rate = counted as f64 / args.duration;
    println!(
        "handshake: {} threads, {:.1} s measured: {rate:.0} handshakes/s",
        args.threads, args.duration
    );
    println!(
        "RESULT mode=handshake threads={} seconds={} total={total} handshakes_per_sec={rate:.0} errors={} client_cpu_share={:.2}",
        args.threads,
        args.duration,
        errors.len(),
        client_cpu_share(began.elapsed().as_secs_f64())
    );
    Ok(())
}

/// This process's CPU time (user + system, all threads) over `wall` seconds, from
/// /proc/self/stat (in USER_HZ, which Linux fixes at 100): the load generator's own share
/// of its core, so a run where the client was the limit can be told apart.
fn client_cpu_share(wall: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ") ".
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0 / wall.max(1e-9)
}

/// The soft limit on open files, from /proc (no libc needed).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn idle(args: &Args) -> io::Result<()> {
    if let Some(limit) = open_files_limit() {
        if args.connections + 16 > limit {
            eprintln!(
                "warning: {} connections but only {limit} open files allowed (raise `ulimit -n`)",
                args.connections
            );
        }
    }
    let began = Instant::now();
    let mut held = Vec::with_capacity(args.connections);
    let (mut refused, mut failed) = (0usize, 0usize);
    let mut first_refusal = None;
    let mut first_error = None;
    let message = deflate_message();
    let (mut negotiated, mut exchanged) = (0usize, 0usize);
    for _ in 0..args.connections {
        match open(args) {
            Ok(Opened::Open(mut stream, rest, deflate)) => {
                negotiated += usize::from(deflate);
                if deflate {
                    match exchange_compressed(&mut stream, rest, &message) {
                        Ok(()) => exchanged += 1,
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert(e.to_string());
                            continue;
                        }
                    }
                }
                held.push(stream);
            }
            Ok(Opened::Refused(status)) => {
                refused += 1;
                first_refusal.get_or_insert(status);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(status) = first_refusal {
        eprintln!("{refused} refused, first with {status:?}");
    }
    if let Some(e) = first_error {
        eprintln!("{failed} failed, first with {e}");
    }
    println!(
        "HOLDING opened={} refused={refused} failed={failed} negotiated={negotiated} exchanged={exchanged} open_seconds={:.2}",
        held.len(),
        began.elapsed().as_secs_f64()
    );
    io::stdout().flush()?;
    std::thread::sleep(Duration::from_secs_f64(args.hold));
    let opened = held.len();
    for stream in held {
        close(stream);
    }
    println!(
        "RESULT mode=idle requested={} opened={opened} refused={refused} failed={failed} negotiated={negotiated} exchanged={exchanged}",
        args.connections
    );
    Ok(())
}

/// The message of `idle --deflate 1`: 1 KiB of JSON and its masked, compressed frame.
struct DeflateMessage {
    json: Vec<u8>,
    frame: Vec<u8>,
}

fn deflate_message() -> DeflateMessage {
    let json = eventum_benches::json_message(1024).into_bytes();
    let mut frame = Vec::new();
    encode_client_frame(
        &mut frame,
        true,
        OpCode::Text,
        &eventum_benches::client_deflate(&json),
        KEY,
    );
    frame[0] |= 0x40; // RSV1: a compressed message
    DeflateMessage { json, frame }
}

/// Sends the compressed message and checks the echo: one compressed frame that inflates
/// to the message.
fn exchange_compressed(stream: &mut TcpStream, mut buf: Vec<u8>, message: &DeflateMessage) -> io::Result<()> {
    stream.write_all(&message.frame)?;
    let mut chunk = [0u8; 4096];
    let payload = loop {
        if let Some((_, payload, _)) = parse_frame(&buf)? {
            break payload;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the echo"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if buf[0] & 0x40 == 0 {
        return Err(io::Error::other(
            "the echo of a compressed message came back uncompressed",
        ));
    }
    match eventum_benches::inflate_message(&buf[payload]) {
        Some(inflated) if inflated == message.json => Ok(()),
        _ => Err(io::Error::other("the compressed echo does not inflate to the message")),
    }
}

fn main() {
    let args = parse_args();
    let result = match args.mode.as_str() {
        "echo" | "broadcast" => echo(&args),
        "handshake" => handshake(&args),
        _ => idle(&args),
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
