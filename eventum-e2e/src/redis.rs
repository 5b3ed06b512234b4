//! A real `redis-server` for the scale-out tests: started on a free loopback port with
//! persistence off, in a temporary directory, stopped (or killed mid-test) by its PID.
//!
//! Without `redis-server` the tests print a loud skip message and pass, unless
//! `EVENTUM_REDIS=required` (as `scripts/test.sh` sets it after installing Debian's
//! redis-server package), where they fail.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server process of this test.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Whether the scale-out tests must run.
pub fn required() -> bool {
    std::env::var("EVENTUM_REDIS").is_ok_and(|v| v == "required")
}

/// Starts a redis-server, or returns `None` after a loud skip message when there is none
/// and it is not required.
pub fn redis_or_skip(test: &str) -> Option<RedisServer> {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !required(),
            "{test}: redis-server is required (EVENTUM_REDIS=required) but not installed"
        );
        eprintln!("SKIPPED {test}: no redis-server (scripts/test.sh installs Debian's redis-server package)");
        return None;
    }
    Some(RedisServer::start())
}

impl RedisServer {
    /// Starts one on a free loopback port.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("eventum-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for redis");
        let mut server = RedisServer { port, dir, child: None };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL: no goodbye to its clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port (after [`kill`](Self::kill)) and waits
    /// until it answers `PING`.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--dir",
                &self.dir.to_string_lossy(),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut sock) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        sock.write_all(b"PING\r\n").is_ok() && sock.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
