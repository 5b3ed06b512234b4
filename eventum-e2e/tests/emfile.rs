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
use std::time::Duration;

use eventum_core::app::{App, Route};
use eventum_e2e::{upgrade_request, Adapter, RawClient, WAIT};
use rustix::process::{getrlimit, setrlimit, Resource};

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() as u64
}

/// The process's descriptor table: each descriptor and what it refers to. Reading it
/// needs no new descriptor beyond the directory's own, which is closed again.
fn descriptor_table() -> Vec<(String, String)> {
    let mut table: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| {
                    let target = std::fs::read_link(entry.path()).unwrap_or_default();
                    (
                        entry.file_name().to_string_lossy().into_owned(),
                        target.to_string_lossy().into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    table.sort();
    table
}

/// Fills the descriptor table, connects with the last descriptor and sends an upgrade
/// request. `None` when the attempt proves nothing: the table changed meanwhile (another
/// thread freed a descriptor the server may have used, or took the one freed for the
/// client), or the server answered, which it can once: a thread blocked in accept(2)
/// reserved its descriptor before the table filled, so only its next accept finds none. Otherwise (no answer while the table
/// stayed full) the client and the files holding the table full.
fn starve(server: &eventum_e2e::TestServer) -> Option<(TcpStream, Vec<File>)> {
    let mut filler = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => filler.push(file),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => break,
            Err(e) => panic!("unexpected error while filling the descriptor table: {e}"),
        }
        assert!(filler.len() < 64, "the lowered limit did not hold");
    }
    drop(filler.pop());
    // A server thread can take the freed descriptor first: a non-blocking accept(2)
    // reserves one for as long as the call runs, even when it finds no connection.
    let mut stream = match TcpStream::connect(server.addr()) {
        Ok(stream) => stream,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => return None,
        Err(e) => panic!("the kernel accepts into the backlog: {e}"),
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    stream
        .write_all(&upgrade_request("/echo"))
        .expect("send the upgrade request");
    // Reading the table takes a descriptor for the directory: free one for it first.
    drop(filler.pop());
    let table = descriptor_table();
    filler.push(File::open("/dev/null").ok()?);
    let mut head = [0u8; 12];
    let answered = stream.read(&mut head);
    drop(filler.pop());
    if descriptor_table() != table {
        return None;
    }
    filler.push(File::open("/dev/null").ok()?);
    match answered {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Some((stream, filler)),
        _ => None,
    }
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

    // Every descriptor taken, the last one by a client socket: the server has none left
    // to accept it with. An attempt that proves nothing (see `starve`) is made again.
    let (mut stream, filler) = (1..=10).find_map(|_| starve(&server)).unwrap_or_else(|| {
        panic!("{adapter:?}: in 10 attempts the server never went without a descriptor to accept with")
    });

    // Descriptors back: the server accepts the waiting connection and answers it.
    drop(filler);
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
