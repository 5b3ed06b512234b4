//! The registry adapters use to deliver [`Action`]s: which connections exist, which rooms
//! they are in, and how to reach each one (its mailbox).
//!
//! It is a plain thread-safe data structure, written once for every adapter. Connections
//! and rooms are spread over shards, each behind its own read–write lock, so the
//! per-message path (a broadcast, a send by id) takes one shared shard lock, never a
//! global one, and never holds it while a mailbox delivers.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::outbound::SharedFrame;

use super::{Action, Command, CommandQueue, ConnectionHandle, ConnectionId};

const SHARDS: usize = 16;

/// How the hub reaches one connection's driver. Delivery must not block: queue the frame
/// (or note that the connection is overwhelmed) and return.
pub trait Mailbox: Clone + Send + Sync {
    /// Hands a frame to the connection.
    fn deliver(&self, frame: &SharedFrame);
}

/// Connections and rooms of one server.
///
/// ```
/// use eventum_core::app::{Action, ConnectionId, Hub, Mailbox};
/// use eventum_core::SharedFrame;
/// use std::sync::{Arc, Mutex};
///
/// #[derive(Clone, Default)]
/// struct Inbox(Arc<Mutex<Vec<SharedFrame>>>);
/// impl Mailbox for Inbox {
///     fn deliver(&self, frame: &SharedFrame) { self.0.lock().unwrap().push(frame.clone()) }
/// }
///
/// let hub = Hub::new();
/// let (a, b) = (Inbox::default(), Inbox::default());
/// hub.register(ConnectionId(1), a.clone());
/// hub.register(ConnectionId(2), b.clone());
/// hub.apply(ConnectionId(2), Action::Join { room: "lobby".into() });
/// hub.apply(ConnectionId(1), Action::Broadcast { room: "lobby".into(), frame: SharedFrame::text("hi"), except: None });
/// assert_eq!(a.0.lock().unwrap().len(), 0);
/// assert_eq!(b.0.lock().unwrap().len(), 1);
/// ```
pub struct Hub<M> {
    connections: Vec<RwLock<HashMap<ConnectionId, M>>>,
    rooms: Vec<RwLock<HashMap<String, HashMap<ConnectionId, M>>>>,
}

impl<M: Mailbox> Default for Hub<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Mailbox> Hub<M> {
    /// An empty hub.
    pub fn new() -> Self {
        Hub {
            connections: (0..SHARDS).map(|_| RwLock::default()).collect(),
            rooms: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    /// Adds a connection (when its session starts).
    pub fn register(&self, id: ConnectionId, mailbox: M) {
        write(&self.connections[shard_of(&id)]).insert(id, mailbox);
    }

    /// Removes a connection (when its driver ends) and its memberships of `rooms`: the
    /// rooms its session still lists (a session that ended normally has already left
    /// them through [`Action::Leave`], and lists none).
    pub fn unregister<'r>(&self, id: ConnectionId, rooms: impl IntoIterator<Item = &'r str>) {
        write(&self.connections[shard_of(&id)]).remove(&id);
        for room in rooms {
            self.apply(id, Action::Leave { room: room.to_owned() });
        }
    }

    /// The mailbox of a connection, to send to it from anywhere.
    pub fn mailbox(&self, id: ConnectionId) -> Option<M> {
        read(&self.connections[shard_of(&id)]).get(&id).cloned()
    }

    /// How many connections are registered.
    pub fn len(&self) -> usize {
        self.connections.iter().map(|s| read(s).len()).sum()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members of a room.
    pub fn members(&self, room: &str) -> Vec<ConnectionId> {
        read(&self.rooms[shard_of(room)])
            .get(room)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every registered connection's mailbox (e.g. to close them all at shutdown).
    pub fn mailboxes(&self) -> Vec<M> {
        self.connections
            .iter()
            .flat_map(|s| read(s).values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Carries out what connection `from` asked for.
    pub fn apply(&self, from: ConnectionId, action: Action) {
        match action {
            Action::Join { room } => {
                if let Some(mailbox) = self.mailbox(from) {
                    write(&self.rooms[shard_of(room.as_str())])
                        .entry(room)
                        .or_default()
                        .insert(from, mailbox);
                }
            }
            Action::Leave { room } => {
                let mut rooms = write(&self.rooms[shard_of(room.as_str())]);
                if let Some(members) = rooms.get_mut(&room) {
                    members.remove(&from);
                    if members.is_empty() {
                        rooms.remove(&room);
                    }
                }
            }
            Action::Broadcast { room, frame, except } => {
                let recipients: Vec<M> = read(&self.rooms[shard_of(room.as_str())])
                    .get(&room)
                    .map(|m| {
                        m.iter()
                            .filter(|(id, _)| Some(**id) != except)
                            .map(|(_, m)| m.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for mailbox in recipients {
                    mailbox.deliver(&frame);
                }
            }
            Action::BroadcastAll { frame, except } => {
                for shard in &self.connections {
                    let recipients: Vec<M> = read(shard)
                        .iter()
                        .filter(|(id, _)| Some(**id) != except)
                        .map(|(_, m)| m.clone())
                        .collect();
                    for mailbox in recipients {
                        mailbox.deliver(&frame);
                    }
                }
            }
            Action::SendTo { to, frame } => {
                if let Some(mailbox) = self.mailbox(to) {
                    mailbox.deliver(&frame);
                }
            }
        }
    }
}

impl<Q: CommandQueue> Hub<ConnectionHandle<Q>> {
    /// Hands `command` to every registered connection past its queue's bound (a server
    /// shutting down tells everyone, even connections that are not keeping up).
    pub fn command_all(&self, command: &Command) {
        for handle in self.mailboxes() {
            handle.queue().push_urgent(command.clone());
        }
    }
}

impl<M> std::fmt::Debug for Hub<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn shard_of<K: Hash + ?Sized>(key: &K) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}

/// Locks are only poisoned by a panic inside this file's short critical sections, which
/// do not panic; recover the data rather than spread a panic to every connection.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Inbox(Arc<Mutex<Vec<Vec<u8>>>>);
    impl Mailbox for Inbox {
        fn deliver(&self, frame: &SharedFrame) {
            self.0.lock().unwrap().push(frame.as_bytes().to_vec());
        }
    }
    impl Inbox {
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    fn setup(n: u64) -> (Hub<Inbox>, Vec<Inbox>) {
        let hub = Hub::new();
        let boxes: Vec<Inbox> = (0..n).map(|_| Inbox::default()).collect();
        for (i, b) in boxes.iter().enumerate() {
            hub.register(ConnectionId(i as u64), b.clone());
        }
        (hub, boxes)
    }

    #[test]
    fn broadcast_reaches_exactly_the_rooms_members() {
        let (hub, boxes) = setup(4);
        for id in [0, 2, 3] {
            hub.apply(ConnectionId(id), Action::Join { room: "r".into() });
        }
        hub.apply(ConnectionId(3), Action::Leave { room: "r".into() });
        let frame = SharedFrame::text("x");
        hub.apply(
            ConnectionId(0),
            Action::Broadcast {
                room: "r".into(),
                frame: frame.clone(),
                except: Some(ConnectionId(0)),
            },
        );
        assert_eq!(boxes.iter().map(Inbox::count).collect::<Vec<_>>(), [0, 0, 1, 0]);
        hub.apply(
            ConnectionId(1),
            Action::BroadcastAll {
                frame: frame.clone(),
                except: None,
            },
        );
        assert_eq!(boxes.iter().map(Inbox::count).collect::<Vec<_>>(), [1, 1, 2, 1]);
        hub.apply(
            ConnectionId(1),
            Action::SendTo {
                to: ConnectionId(3),
                frame,
            },
        );
        assert_eq!(boxes[3].count(), 2);
        assert_eq!(hub.members("r").len(), 2);
    }

    #[test]
    fn unregister_removes_memberships() {
        let (hub, boxes) = setup(2);
        hub.apply(ConnectionId(1), Action::Join { room: "r".into() });
        hub.unregister(ConnectionId(1), ["r"]);
        hub.apply(
            ConnectionId(0),
            Action::Broadcast {
                room: "r".into(),
                frame: SharedFrame::text("x"),
                except: None,
            },
        );
        assert_eq!(boxes[1].count(), 0);
        assert!(hub.members("r").is_empty());
        assert_eq!(hub.len(), 1);
        assert!(hub.mailbox(ConnectionId(1)).is_none());
    }
}
