//! Running out of file descriptors on accept (EMFILE), on both adapters: a connection
//! that waits in the listen backlog while the process has no descriptor left is not
//! served, the server keeps running, and once descriptors are free again that very
//! connection is accepted and upgraded.
//!
//! Its own test binary: it lowers the process's soft file limit, which would starve any
//! other test running beside it. Both adapters run one after the other in one test.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::time::Duration;

use eventum_core::app::{App, Route};
use eventum_e2e::{upgrade_request, Adapter, RawClient, WAIT};
use rustix::net::{AddressFamily, SocketType};
use rustix::process::{getrlimit, setrlimit, Resource};

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() as u64
}

fn is_emfile(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error())
}

/// A TCP socket made while descriptors are free, to connect once none are.
fn unconnected_socket() -> OwnedFd {
    rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("a socket")
}

/// Connects `socket` to the server and sends an upgrade request: the stream, and whether
/// any answer came within `wait`.
fn upgrade_over(socket: OwnedFd, server: &eventum_e2e::TestServer, wait: Duration) -> (TcpStream, bool) {
    rustix::net::connect(&socket, &server.addr()).expect("the kernel accepts into the backlog");
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(wait)).expect("timeout");
    stream
        .write_all(&upgrade_request("/echo"))
        .expect("send the upgrade request");
    let mut head = [0u8; 12];
    let answered = !matches!(
        stream.read(&mut head),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    );
    (stream, answered)
}

/// A client waiting in the backlog while the server has no descriptor to accept it with,
/// and everything that holds the descriptor table full.
struct Starved {
    client: TcpStream,
    held: Vec<OwnedFd>,
}

/// Fills the descriptor table with two client sockets made beforehand, so no descriptor
/// is ever free while the server tries to accept, then connects them one after the other.
/// A thread blocked in accept(2) reserved a descriptor before the table filled and serves
/// the first client with it (eventum-std); its next accept finds none, and neither does a
/// non-blocking accept (eventum-smol), so the first client not answered within a second is
/// starved. `None` when the attempt proves nothing: the second client was answered too, or
/// the table was no longer full afterwards (something freed a descriptor meanwhile).
fn starve(server: &eventum_e2e::TestServer) -> Option<Starved> {
    let sockets = [unconnected_socket(), unconnected_socket()];
    let mut held: Vec<OwnedFd> = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => held.push(file.into()),
            Err(e) if is_emfile(&e) => break,
            Err(e) => panic!("unexpected error while filling the descriptor table: {e}"),
        }
        assert!(held.len() < 64, "the lowered limit did not hold");
    }
    let mut starved = None;
    for socket in sockets {
        if starved.is_some() {
            held.push(socket);
            continue;
        }
        match upgrade_over(socket, server, Duration::from_secs(1)) {
            (client, false) => starved = Some(client),
            (answered, true) => held.push(answered.into()),
        }
    }
    // Still full: nothing freed a descriptor the server could have accepted with.
    match File::open("/dev/null") {
        Err(e) if is_emfile(&e) => {}
        _ => return None,
    }
    Some(Starved { client: starved?, held })
}

fn served_after_emfile(adapter: Adapter) {
    let app = App::builder()
        .route(Route::new("/echo"))
        .on_text(|ctx, text| {
            let _ = ctx.send_text(text);
        })
        .build();
    // Started first: the std adapter raises the soft limit when it listens.
    let server = adapter.start(app);
    // One full exchange first, so the server's threads have started and are waiting in
    // their accept loop rather than starting up while the table fills.
    let mut warm = RawClient::connect(server.addr(), "/echo");
    warm.send_frame(0x1, b"warm");
    assert!(
        warm.read_frame(WAIT).expect("a frame").is_some(),
        "{adapter:?}: warm-up echo"
    );
    drop(warm);
    assert!(server.wait_connections(0), "{adapter:?}: the warm-up connection ended");
    let original = getrlimit(Resource::Nofile);
    let mut limited = original;
    limited.current = Some(open_descriptors() + 16);
    setrlimit(Resource::Nofile, limited).expect("lower the soft file limit");

    // Every descriptor taken, some by clients: the server has none left to accept the
    // last one with. An attempt that proves nothing (see `starve`) is made again.
    let Starved {
        client: mut stream,
        held,
    } = (1..=10).find_map(|_| starve(&server)).unwrap_or_else(|| {
        panic!("{adapter:?}: in 10 attempts the server never went without a descriptor to accept with")
    });

    // Descriptors back: the server accepts the waiting connection and answers it.
    drop(held);
    let mut head = [0u8; 12];
    setrlimit(Resource::Nofile, original).expect("restore the file limit");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.read_exact(&mut head).expect("the 101 once descriptors are free");
    assert_eq!(&head, b"HTTP/1.1 101", "{adapter:?}");
    // And it serves new clients as before.
    let mut client = RawClient::connect(server.addr(), "/echo");
    client.send_frame(0x1, b"after EMFILE");
    let echo = client.read_frame(WAIT).expect("a frame").expect("not EOF");
    assert_eq!(echo.payload, b"after EMFILE", "{adapter:?}");
    drop((stream, client));
    server.shutdown();
}

#[test]
fn both_adapters_serve_again_after_running_out_of_descriptors() {
    for adapter in Adapter::ALL {
        served_after_emfile(adapter);
    }
}
