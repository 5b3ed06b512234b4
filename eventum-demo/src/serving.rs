//! What the chat examples add to serve for real: their command line (`--tls-cert`,
//! `--tls-key`, `--redis`) and the Prometheus metrics behind `GET /metrics`.

use std::io;
use std::sync::{Arc, OnceLock};

use eventum_core::backplane::Backplane;
use eventum_core::handshake::HttpResponse;
use eventum_tls::rustls::ServerConfig;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The chat examples' command line:
/// `chat [ADDRESS] [--tls-cert FILE --tls-key FILE] [--redis URL]`.
#[derive(Debug)]
pub struct ChatArgs {
    /// Where to listen.
    pub addr: String,
    /// Set with `--tls-cert` and `--tls-key`: serve `https://` and `wss://`.
    pub tls: Option<Arc<ServerConfig>>,
    /// Set with `--redis URL`: join the cluster of chat nodes on that Redis.
    pub redis: Option<String>,
}

impl ChatArgs {
    /// Reads the process's arguments; `default_addr` when no address is given.
    pub fn from_env(default_addr: &str) -> io::Result<Self> {
        Self::parse(std::env::args().skip(1), default_addr)
    }

    /// Reads `args` (without the program name).
    ///
    /// ```
    /// use eventum_demo::serving::ChatArgs;
    ///
    /// let args = ChatArgs::parse(["0.0.0.0:9000".to_owned()], "127.0.0.1:8080").unwrap();
    /// assert_eq!((args.addr.as_str(), args.tls.is_none()), ("0.0.0.0:9000", true));
    /// let half = ChatArgs::parse(["--tls-cert".to_owned(), "c.pem".to_owned()], "x:1");
    /// assert!(half.unwrap_err().to_string().contains("together"));
    /// ```
    pub fn parse(args: impl IntoIterator<Item = String>, default_addr: &str) -> io::Result<Self> {
        let usage = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let (mut addr, mut cert, mut key, mut redis) = (None, None, None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let slot = match arg.as_str() {
                "--tls-cert" => &mut cert,
                "--tls-key" => &mut key,
                "--redis" => &mut redis,
                flag if flag.starts_with("--") => return Err(usage(format!("unknown option {flag}"))),
                _ if addr.is_none() => {
                    addr = Some(arg);
                    continue;
                }
                _ => return Err(usage(format!("unexpected argument {arg}"))),
            };
            *slot = Some(args.next().ok_or_else(|| usage(format!("{arg} needs a value")))?);
        }
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(eventum_tls::server_config(cert, key)?),
            (None, None) => None,
            _ => return Err(usage("--tls-cert and --tls-key go together".into())),
        };
        let addr = addr.unwrap_or_else(|| default_addr.to_owned());
        Ok(ChatArgs { addr, tls, redis })
    }

    /// With `--redis URL`, the backplane that makes this server one node of the chat
    /// cluster (it fails when Redis cannot be reached).
    pub fn backplane(&self) -> io::Result<Option<Arc<dyn Backplane>>> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        let redis = eventum_redis::Redis::connect(url)?;
        println!("chat node {} of the cluster on {url}", redis.node());
        Ok(Some(redis))
    }

    /// The page's address, for the start-up line.
    pub fn url(&self, local_addr: std::net::SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{local_addr}/")
    }
}

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs a Prometheus recorder as the process's `metrics` recorder (once; later calls
/// return the same handle), so the chat app answers `GET /metrics`. Call it before
/// building the app. `None` when another recorder was installed first.
pub fn metrics() -> Option<&'static PrometheusHandle> {
    METRICS
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                eventum_core::observe::describe_metrics();
                Some(handle)
            }
            Err(e) => {
                log::warn!("no /metrics: {e}");
                None
            }
        })
        .as_ref()
}

/// The recorder [`metrics`] installed, if it was called.
pub(crate) fn installed_metrics() -> Option<&'static PrometheusHandle> {
    METRICS.get().and_then(Option::as_ref)
}

/// `GET /metrics`: every metric in Prometheus' text format (version 0.0.4).
pub(crate) fn metrics_response(handle: Option<&PrometheusHandle>) -> HttpResponse {
    let text = handle.map(PrometheusHandle::render).unwrap_or_default();
    HttpResponse::new(200)
        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
