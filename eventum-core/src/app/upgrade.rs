//! What handshake middleware and route handlers see: the request, and the decisions they
//! can make about the 101 response and the connection's first flags.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::route::Params;
use crate::handshake::{DeflateConfig, DeflateParams, Request};

use super::extensions::Extensions;
use super::flags::Flags;
use super::route::UpgradeResult;
use super::ConnectionId;

/// Chooses the subprotocol from the client's offer (in the client's order); `None`
/// sends no `Sec-WebSocket-Protocol`.
pub type SubprotocolChooser = Arc<dyn Fn(&[String]) -> Option<String> + Send + Sync>;

pub(crate) type Middleware = Arc<dyn Fn(&mut Upgrade<'_>, Next<'_>) -> UpgradeResult + Send + Sync>;

/// An upgrade request on its way through middleware to its route.
///
/// ```
/// use eventum_core::app::{App, Route};
/// use eventum_core::handshake::HttpResponse;
///
/// let app = App::builder()
///     // Auth middleware: refuse without a token, remember the user in the flags.
///     .middleware(|upgrade, next| {
///         let Some(user) = upgrade.query_param("token").map(str::to_owned) else {
///             return Err(HttpResponse::text(401, "Unauthorized"));
///         };
///         upgrade.flags_mut().add("user", user);
///         next.run(upgrade)
///     })
///     .route(Route::new("/chat").on_upgrade(|upgrade| {
///         upgrade.add_header("X-Served-By", "eventum");
///         upgrade.choose_subprotocol(|offered| offered.iter().find(|p| *p == "chat.v2").cloned());
///         Ok(())
///     }))
///     .build();
/// # let _ = app;
/// ```
pub struct Upgrade<'a> {
    pub(crate) request: &'a Request,
    pub(crate) id: ConnectionId,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) params: Params,
    pub(crate) flags: Flags,
    pub(crate) extensions: Extensions,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) chooser: Option<SubprotocolChooser>,
    /// The permessage-deflate settings for this connection (the app's config unless set).
    pub(crate) compression: DeflateConfig,
}

impl<'a> Upgrade<'a> {
    pub(crate) fn new(
        request: &'a Request,
        id: ConnectionId,
        peer: Option<SocketAddr>,
        compression: DeflateConfig,
    ) -> Self {
        Upgrade {
            request,
            id,
            peer,
            params: Params::default(),
            flags: Flags::default(),
            extensions: Extensions::default(),
            headers: Vec::new(),
            chooser: None,
            compression,
        }
    }

    /// The whole request: method, path, query, headers, offered subprotocols and extensions.
    pub fn request(&self) -> &Request {
        self.request
    }

    /// The request path (without the query).
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// A header's first value; names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }

    /// The first value of a query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.request.query_param(name)
    }

    /// The route's path parameters (empty inside middleware, which runs before routing).
    pub fn params(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.params.iter().map(|(name, value)| (&**name, value.as_str()))
    }

    /// One path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|&(k, _)| k == name).map(|(_, v)| v)
    }

    /// The id the connection will have.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The peer's address, when the adapter knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The connection's flags, to fill before it opens (e.g. the authenticated user).
    pub fn flags_mut(&mut self) -> &mut Flags {
        &mut self.flags
    }

    /// The connection's flags.
    pub fn flags(&self) -> &Flags {
        &self.flags
    }

    /// The connection's typed values, to fill before it opens (e.g. the authenticated
    /// user); handlers read them with [`Context::extensions`](super::Context::extensions).
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Adds a header to the 101 response. Names and values are checked when the response
    /// is written; an invalid one refuses the upgrade with `500` (and is logged).
    pub fn add_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }

    /// Sets how the subprotocol is chosen from the client's offer; by default the first
    /// offered one is taken. Choosing one that was not offered refuses the upgrade with
    /// `500` (logged) rather than sending it.
    pub fn choose_subprotocol(&mut self, chooser: impl Fn(&[String]) -> Option<String> + Send + Sync + 'static) {
        self.chooser = Some(Arc::new(chooser));
    }

    /// Sets the permessage-deflate settings of this connection instead of the app's
    /// [`Config::compression`](crate::Config::compression): restrict it, or switch it off
    /// (e.g. for clients that send secrets alongside attacker-controlled text, the
    /// CRIME/BREACH concern).
    ///
    /// ```
    /// use eventum_core::app::{App, Route};
    /// use eventum_core::handshake::DeflateConfig;
    ///
    /// let app = App::builder()
    ///     .route(Route::new("/feed").on_upgrade(|upgrade| {
    ///         upgrade.set_compression(DeflateConfig::default().server_max_window_bits(10));
    ///         // What the client will be answered, given its offer:
    ///         let _agreed = upgrade.compression().map(|p| p.server_max_window_bits());
    ///         Ok(())
    ///     }))
    ///     .build();
    /// # let _ = app;
    /// ```
    pub fn set_compression(&mut self, config: DeflateConfig) {
        self.compression = config;
    }

    /// The permessage-deflate parameters the connection will run with, given the
    /// client's offer and the settings so far; `None`: uncompressed.
    pub fn compression(&self) -> Option<DeflateParams> {
        let negotiated = self.compression.negotiate_request(self.request)?;
        Some(*negotiated.params())
    }

    /// The subprotocol that will be sent, given the chooser set so far.
    pub(crate) fn chosen_subprotocol(&self) -> Option<String> {
        match &self.chooser {
            Some(chooser) => chooser(self.request.subprotocols()),
            // Read in place: most requests offer none, and the request keeps what it reads.
            None => self.request.subprotocol_offers().next().map(str::to_owned),
        }
    }
}

impl std::fmt::Debug for Upgrade<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("path", &self.request.path())
            .field("id", &self.id)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// The rest of the middleware chain, ending in routing. Call [`Next::run`] to pass the
/// upgrade on, or return without calling it to answer yourself.
pub struct Next<'a> {
    pub(crate) chain: &'a [Middleware],
    pub(crate) endpoint: &'a (dyn Fn(&mut Upgrade<'_>) -> UpgradeResult + Send + Sync),
}

impl Next<'_> {
    /// Runs the rest of the chain and the route.
    pub fn run(self, upgrade: &mut Upgrade<'_>) -> UpgradeResult {
        match self.chain.split_first() {
            Some((first, rest)) => first(
                upgrade,
                Next {
                    chain: rest,
                    endpoint: self.endpoint,
                },
            ),
            None => (self.endpoint)(upgrade),
        }
    }
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Next({} middleware left)", self.chain.len())
    }
}
