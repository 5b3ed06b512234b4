//! Scale-out: the seam where several eventum nodes share rooms, broadcasts and sends by
//! id through a message bus (Redis in `eventum-redis`), without the core doing any I/O.
//!
//! An [`Endpoint`](crate::driver::Endpoint) made
//! [`with_backplane`](crate::driver::Endpoint::with_backplane) hands its
//! [`Backplane`] every room broadcast, every broadcast to all, and every send to a
//! connection id that lives on another node, as a [`Publication`]: bytes encoded once, by
//! the sending node, that every receiving node decodes and delivers to its own members
//! through its [`Inbox`]. It also tells the backplane when it gets its first member of a
//! room ([`Backplane::subscribe`]) and when its last one leaves
//! ([`Backplane::unsubscribe`]), so a broadcast reaches only the nodes that need it.
//! Connection ids carry their node ([`node_of`]), so they are unique across nodes and a
//! send by id goes to its owner only. Without a backplane nothing of this runs.
//!
//! Delivery across nodes is **at most once**: a publication the bus loses (it went away,
//! or a queue was full) is not retried. Each node sees the publications of one sender in
//! the order they were sent, as long as the bus keeps order (Redis pub/sub does).
//!
//! # Wire format, version 1
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version, `1` |
//! | 1 | kind: `0` a room, `1` everyone, `2` one connection |
//! | 2..6 | the sending node (u32, big-endian) |
//! | 6..14 | a connection id (u64, big-endian): the one to skip for kinds 0 and 1 (`0`: none), the recipient for kind 2 |
//! | kind 0 only | the room's length (u32, big-endian), then the room (UTF-8) |
//! | the rest | one WebSocket frame exactly as a server sends it: FIN set, RSV bits clear, unmasked, text or binary, its payload filling the rest; text is valid UTF-8 |
//!
//! A receiver refuses anything else ([`PublicationError`]) and delivers nothing of it.
//!
//! ```
//! use eventum_core::backplane::{Publication, Target};
//! use eventum_core::SharedFrame;
//!
//! let publication = Publication::room(7, "lobby", None, &SharedFrame::text("hi"));
//! assert_eq!(publication.target(), Target::Room("lobby"));
//! assert_eq!(&publication.as_bytes()[..2], &[1, 0]); // version 1, a room
//! let decoded = Publication::decode(publication.as_bytes()).unwrap();
//! assert_eq!(decoded.origin(), 7);
//! assert_eq!(decoded.frame().as_bytes(), SharedFrame::text("hi").as_bytes());
//! ```

use std::fmt;
use std::sync::{Arc, Weak};

use crate::app::ConnectionId;
use crate::frame::{decode_header, DecodeRules, OpCode};
use crate::outbound::SharedFrame;

/// The wire format's version.
pub const VERSION: u8 = 1;
/// The largest node number: ids keep 40 bits for the connection counter.
pub const MAX_NODE: u32 = (1 << 24) - 1;
/// Bits of a connection id below its node number.
const NODE_SHIFT: u32 = 40;

const KIND_ROOM: u8 = 0;
const KIND_ALL: u8 = 1;
const KIND_CONNECTION: u8 = 2;
/// Version, kind, origin, connection id.
const FIXED: usize = 14;
/// The room's length field.
const ROOM_LEN: usize = 4;

/// The node a connection id belongs to (`0`: an endpoint without a backplane).
///
/// ```
/// use eventum_core::app::ConnectionId;
/// assert_eq!(eventum_core::backplane::node_of(ConnectionId((5 << 40) | 17)), 5);
/// ```
pub fn node_of(id: ConnectionId) -> u32 {
    (id.0 >> NODE_SHIFT) as u32
}

/// The first connection id of `node`'s range, for numbering its connections.
pub(crate) fn id_base(node: u32) -> u64 {
    u64::from(node) << NODE_SHIFT
}

/// The mask of the connection counter inside an id.
pub(crate) const COUNTER_MASK: u64 = (1 << NODE_SHIFT) - 1;

/// A message bus between eventum nodes, as an endpoint uses it. Every method is called
/// from handler threads, sometimes under the hub's locks: queue the work and return.
pub trait Backplane: Send + Sync + 'static {
    /// This node's number, `1..=`[`MAX_NODE`], unique among the nodes on the bus.
    fn node(&self) -> u32;
    /// Receives the endpoint's inbox, once, when the endpoint is made: deliver every
    /// publication of the other nodes to it.
    fn attach(&self, inbox: Inbox);
    /// Sends `publication` to the nodes its [`target`](Publication::target) concerns.
    fn publish(&self, publication: Publication);
    /// The node got its first member of `room`: receive the room's publications.
    fn subscribe(&self, room: &str);
    /// The node's last member of `room` left.
    fn unsubscribe(&self, room: &str);
}

/// Where a publication goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The nodes with members in this room.
    Room(&'a str),
    /// Every node.
    All,
    /// The node with this number (the owner of the recipient).
    Node(u32),
}

/// One broadcast or send for other nodes, encoded once (see the module's wire format).
#[derive(Clone, PartialEq, Eq)]
pub struct Publication {
    bytes: Arc<[u8]>,
}

impl Publication {
    /// `frame` for every member of `room` on other nodes but `except`.
    pub fn room(origin: u32, room: &str, except: Option<ConnectionId>, frame: &SharedFrame) -> Self {
        // Rooms are far shorter than 4 GiB; the cut only keeps the length field honest.
        let room_len = u32::try_from(room.len()).unwrap_or(u32::MAX);
        let room = &room.as_bytes()[..room_len as usize];
        let mut bytes = Self::head(
            KIND_ROOM,
            origin,
            except.map_or(0, |id| id.0),
            ROOM_LEN + room.len(),
            frame,
        );
        bytes.extend_from_slice(&room_len.to_be_bytes());
        bytes.extend_from_slice(room);
        Self::finish(bytes, frame)
    }

    /// `frame` for every connection on other nodes but `except`.
    pub fn all(origin: u32, except: Option<ConnectionId>, frame: &SharedFrame) -> Self {
        let bytes = Self::head(KIND_ALL, origin, except.map_or(0, |id| id.0), 0, frame);
        Self::finish(bytes, frame)
    }

    /// `frame` for the connection `to`, which lives on node [`node_of`]`(to)`.
    pub fn connection(origin: u32, to: ConnectionId, frame: &SharedFrame) -> Self {
        let bytes = Self::head(KIND_CONNECTION, origin, to.0, 0, frame);
        Self::finish(bytes, frame)
    }

    fn head(kind: u8, origin: u32, id: u64, extra: usize, frame: &SharedFrame) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(FIXED + extra + frame.len());
        bytes.extend_from_slice(&[VERSION, kind]);
        bytes.extend_from_slice(&origin.to_be_bytes());
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes
    }

    fn finish(mut bytes: Vec<u8>, frame: &SharedFrame) -> Self {
        bytes.extend_from_slice(frame.as_bytes());
        Publication { bytes: bytes.into() }
    }

    /// The encoded publication, to put on the bus.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where it goes.
    pub fn target(&self) -> Target<'_> {
        // Made by the constructors above: the layout is known to be valid.
        match self.bytes[1] {
            KIND_ROOM => {
                let len = read_len(&self.bytes[FIXED..FIXED + ROOM_LEN]);
                let room = &self.bytes[FIXED + ROOM_LEN..FIXED + ROOM_LEN + len];
                Target::Room(std::str::from_utf8(room).unwrap_or_default())
            }
            KIND_ALL => Target::All,
            _ => Target::Node(node_of(ConnectionId(read_u64(&self.bytes[6..FIXED])))),
        }
    }

    /// Reads a publication from the bus, checking every field.
    pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, PublicationError> {
        if bytes.len() < FIXED {
            return Err(PublicationError::Truncated);
        }
        if bytes[0] != VERSION {
            return Err(PublicationError::Version(bytes[0]));
        }
        let origin = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let id = read_u64(&bytes[6..FIXED]);
        let (scope, rest) = match bytes[1] {
            KIND_ROOM => {
                let len = read_len(bytes.get(FIXED..FIXED + ROOM_LEN).ok_or(PublicationError::Truncated)?);
                let end = (FIXED + ROOM_LEN).saturating_add(len);
                let room = bytes.get(FIXED + ROOM_LEN..end).ok_or(PublicationError::Truncated)?;
                let room = std::str::from_utf8(room).map_err(|_| PublicationError::RoomNotUtf8)?;
                (Scope::Room(room), &bytes[end..])
            }
            KIND_ALL => (Scope::All, &bytes[FIXED..]),
            KIND_CONNECTION => (Scope::Connection, &bytes[FIXED..]),
            kind => return Err(PublicationError::Kind(kind)),
        };
        let rules = DecodeRules {
            require_mask: false,
            allow_rsv1: false,
        };
        let (header, header_len) = match decode_header(rest, rules) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return Err(PublicationError::Truncated),
            Err(_) => return Err(PublicationError::Frame),
        };
        let whole = rest.len() as u64 == header_len as u64 + header.payload_len;
        let data = matches!(header.opcode, OpCode::Text | OpCode::Binary);
        if !header.fin || header.mask.is_some() || !data || !whole {
            return Err(PublicationError::Frame);
        }
        let payload = &rest[header_len..];
        let frame = match header.opcode {
            OpCode::Text => SharedFrame::text(std::str::from_utf8(payload).map_err(|_| PublicationError::Frame)?),
            _ => SharedFrame::binary(payload),
        };
        Ok(Decoded {
            origin,
            id,
            scope,
            frame,
        })
    }
}

impl fmt::Debug for Publication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publication")
            .field("target", &self.target())
            .field("len", &self.bytes.len())
            .finish()
    }
}

fn read_len(bytes: &[u8]) -> usize {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    be.copy_from_slice(bytes);
    u64::from_be_bytes(be)
}

/// What a decoded publication is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    Room(&'a str),
    All,
    Connection,
}

/// A publication read from the bus.
#[derive(Debug)]
pub struct Decoded<'a> {
    origin: u32,
    id: u64,
    scope: Scope<'a>,
    frame: SharedFrame,
}

impl Decoded<'_> {
    /// The node that sent it.
    pub fn origin(&self) -> u32 {
        self.origin
    }

    /// The frame to deliver (one copy, shared by every local recipient).
    pub fn frame(&self) -> &SharedFrame {
        &self.frame
    }
}

/// Why a publication was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicationError {
    /// Shorter than its fields say.
    Truncated,
    /// A version this node does not read.
    Version(u8),
    /// An unknown kind.
    Kind(u8),
    /// The room is not UTF-8.
    RoomNotUtf8,
    /// Not one whole, unmasked, final text or binary frame without RSV bits (or text
    /// that is not UTF-8).
    Frame,
}

impl fmt::Display for PublicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicationError::Truncated => f.write_str("publication truncated"),
            PublicationError::Version(v) => write!(f, "publication version {v} is not {VERSION}"),
            PublicationError::Kind(k) => write!(f, "unknown publication kind {k}"),
            PublicationError::RoomNotUtf8 => f.write_str("publication room is not UTF-8"),
            PublicationError::Frame => f.write_str("publication frame is not one valid server data frame"),
        }
    }
}

impl std::error::Error for PublicationError {}

/// Where a backplane delivers the other nodes' publications: a weak reference to one
/// endpoint's hub (it does not keep the endpoint alive).
#[derive(Clone)]
pub struct Inbox {
    endpoint: Weak<crate::driver::endpoint::Shared>,
}

impl Inbox {
    pub(crate) fn new(endpoint: Weak<crate::driver::endpoint::Shared>) -> Self {
        Inbox { endpoint }
    }

    /// Delivers a publication from the bus to this node's recipients: a room's members,
    /// everyone, or one connection. The node's own publications (already delivered here
    /// when they were sent) are skipped.
    pub fn receive(&self, bytes: &[u8]) -> Result<(), PublicationError> {
        let decoded = Publication::decode(bytes)?;
        if let Some(endpoint) = self.endpoint.upgrade() {
            if decoded.origin != endpoint.hub.node() {
                let except = (decoded.id != 0).then_some(ConnectionId(decoded.id));
                match decoded.scope {
                    Scope::Room(room) => endpoint.hub.deliver_room(room, &decoded.frame, except),
                    Scope::All => endpoint.hub.deliver_all(&decoded.frame, except),
                    Scope::Connection => endpoint.hub.deliver_to(ConnectionId(decoded.id), &decoded.frame),
                }
            }
        }
        Ok(())
    }

    /// Whether the endpoint is gone (its server stopped): the backplane can stop too.
    pub fn is_closed(&self) -> bool {
        self.endpoint.strong_count() == 0
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").field("closed", &self.is_closed()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_round_trips() {
        let frame = SharedFrame::binary(&[0, 1, 2, 255]);
        let room = Publication::room(3, "r", Some(ConnectionId(9)), &frame);
        let decoded = Publication::decode(room.as_bytes()).unwrap();
        assert_eq!((decoded.origin, decoded.id, decoded.scope), (3, 9, Scope::Room("r")));
        assert_eq!(decoded.frame.as_bytes(), frame.as_bytes());
        let all = Publication::all(4, None, &frame);
        assert_eq!(all.target(), Target::All);
        assert_eq!(Publication::decode(all.as_bytes()).unwrap().scope, Scope::All);
        let to = ConnectionId((12 << 40) | 5);
        let one = Publication::connection(4, to, &frame);
        assert_eq!(one.target(), Target::Node(12));
        let decoded = Publication::decode(one.as_bytes()).unwrap();
        assert_eq!((decoded.scope, decoded.id), (Scope::Connection, to.0));
    }

    #[test]
    fn anything_malformed_is_refused_and_no_prefix_panics() {
        let good = Publication::room(1, "room", None, &SharedFrame::text("hello"))
            .as_bytes()
            .to_vec();
        for cut in 0..good.len() {
            assert!(Publication::decode(&good[..cut]).is_err(), "a prefix of {cut} bytes");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(Publication::decode(&longer).unwrap_err(), PublicationError::Frame);
        let mut version = good.clone();
        version[0] = 2;
        assert_eq!(Publication::decode(&version).unwrap_err(), PublicationError::Version(2));
        let mut kind = good.clone();
        kind[1] = 7;
        assert_eq!(Publication::decode(&kind).unwrap_err(), PublicationError::Kind(7));
        let frame_at = FIXED + ROOM_LEN + 4;
        for (byte, value) in [(0, 0x01), (0, 0xc1), (0, 0x89), (1, 0x85)] {
            let mut bad = good.clone();
            bad[frame_at + byte] = value; // not FIN, RSV1, a ping, masked
            assert!(Publication::decode(&bad).is_err(), "frame byte {byte} = {value:#x}");
        }
        let mut not_utf8 = good.clone();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        assert_eq!(Publication::decode(&not_utf8).unwrap_err(), PublicationError::Frame);
    }

    proptest! {
        /// Any bytes from the bus (mostly with a valid version byte, so the later checks
        /// are reached) decode to a publication or an error, never a panic; whatever
        /// decodes means the same once encoded again.
        #[test]
        fn decoding_any_bytes_is_total(
            kind in 0u8..4,
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let bytes = [&[VERSION, kind][..], &rest].concat();
            if let Ok(decoded) = Publication::decode(&bytes) {
                let except = (decoded.id != 0).then_some(ConnectionId(decoded.id));
                let again = match decoded.scope {
                    Scope::Room(room) => Publication::room(decoded.origin, room, except, &decoded.frame),
                    Scope::All => Publication::all(decoded.origin, except, &decoded.frame),
                    Scope::Connection => Publication::connection(decoded.origin, ConnectionId(decoded.id), &decoded.frame),
                };
                let redecoded = Publication::decode(again.as_bytes()).unwrap();
                prop_assert_eq!((redecoded.origin, redecoded.id, redecoded.scope), (decoded.origin, decoded.id, decoded.scope));
                prop_assert_eq!(redecoded.frame.as_bytes(), decoded.frame.as_bytes());
            }
        }

        /// Every publication the constructors make decodes to what was put in.
        #[test]
        fn publications_round_trip(
            origin in any::<u32>(),
            room in ".{0,40}",
            except in any::<u64>(),
            text in ".{0,200}",
            binary in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let except = (except != 0).then_some(ConnectionId(except));
            for frame in [SharedFrame::text(&text), SharedFrame::binary(&binary)] {
                let decoded = Publication::room(origin, &room, except, &frame);
                let decoded = Publication::decode(decoded.as_bytes()).unwrap();
                prop_assert_eq!(decoded.origin, origin);
                prop_assert_eq!(decoded.scope, Scope::Room(&room));
                prop_assert_eq!(decoded.id, except.map_or(0, |id| id.0));
                prop_assert_eq!(decoded.frame.as_bytes(), frame.as_bytes());
            }
        }
    }

    #[test]
    fn long_rooms_round_trip() {
        let long = "r".repeat(70_000);
        let publication = Publication::room(1, &long, None, &SharedFrame::text("x"));
        assert_eq!(publication.target(), Target::Room(&long));
        assert_eq!(
            Publication::decode(publication.as_bytes()).unwrap().scope,
            Scope::Room(&long)
        );
    }
}
