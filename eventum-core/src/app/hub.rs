//! The registry that delivers [`Action`]s: which connections exist, which rooms each is
//! in, and the mailbox that reaches it.
//!
//! Connections and rooms are spread over shards, each behind its own read–write lock, so
//! the per-message path (a broadcast, a send by id) takes one shared shard lock, never a
//! global one, and never holds it while a mailbox wakes its driver. The hub records each
//! connection's rooms itself, so unregistering a connection always removes it from every
//! room, however its session ended.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::handle::{Command, Mailbox};
use super::{Action, ConnectionHandle, ConnectionId};
use crate::backplane::{node_of, Backplane, Publication};
use crate::outbound::SharedFrame;

const SHARDS: usize = 16;

/// One registered connection.
#[derive(Debug)]
struct Member {
    handle: ConnectionHandle,
    /// Boxed, allocated at the first join: every connection has an entry, and an inline
    /// `Vec` made each 16 bytes larger (about 25 per connection, with the table's slack).
    #[allow(
        clippy::box_collection,
        reason = "one pointer in the table; the Vec itself is 24 bytes"
    )]
    rooms: Option<Box<Vec<String>>>,
}

impl Member {
    fn rooms(&self) -> &[String] {
        self.rooms.as_deref().map_or(&[], Vec::as_slice)
    }
}

type RoomMembers = HashMap<ConnectionId, Arc<Mailbox>>;

/// Connections and rooms of one server.
pub(crate) struct Hub {
    connections: Vec<RwLock<HashMap<ConnectionId, Member>>>,
    rooms: Vec<RwLock<HashMap<String, RoomMembers>>>,
    /// The other nodes, when the server is one of several.
    backplane: Option<Arc<dyn Backplane>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            connections: (0..SHARDS).map(|_| RwLock::default()).collect(),
            rooms: (0..SHARDS).map(|_| RwLock::default()).collect(),
            backplane: None,
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.node())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub that shares rooms, broadcasts and sends by id with other nodes.
    pub(crate) fn with_backplane(backplane: Arc<dyn Backplane>) -> Self {
        Hub {
            backplane: Some(backplane),
            ..Hub::default()
        }
    }

    /// This node's number (`0` without a backplane).
    pub(crate) fn node(&self) -> u32 {
        self.backplane.as_ref().map_or(0, |b| b.node())
    }

    /// Adds a connection (when its session starts).
    pub(crate) fn register(&self, handle: ConnectionHandle) {
        let member = Member {
            handle: handle.clone(),
            rooms: None,
        };
        write(&self.connections[shard_of(&handle.id())]).insert(handle.id(), member);
    }

    /// Removes a connection and every room membership it still has.
    pub(crate) fn unregister(&self, id: ConnectionId) {
        let member = write(&self.connections[shard_of(&id)]).remove(&id);
        for room in member.and_then(|m| m.rooms).map(|rooms| *rooms).unwrap_or_default() {
            self.leave_room(id, &room);
        }
    }

    /// The handle of a registered connection.
    pub(crate) fn handle(&self, id: ConnectionId) -> Option<ConnectionHandle> {
        read(&self.connections[shard_of(&id)])
            .get(&id)
            .map(|m| m.handle.clone())
    }

    /// The members of a room.
    pub(crate) fn members(&self, room: &str) -> Vec<ConnectionId> {
        read(&self.rooms[shard_of(room)])
            .get(room)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether the hub still holds anything of `id`: its registration or a membership of
    /// any room (for the fuzz target's no-trace invariant).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn has_trace_of(&self, id: ConnectionId) -> bool {
        self.handle(id).is_some()
            || self
                .rooms
                .iter()
                .any(|shard| read(shard).values().any(|m| m.contains_key(&id)))
    }

    /// The rooms a registered connection is in.
    #[cfg(test)]
    fn rooms_of(&self, id: ConnectionId) -> Vec<String> {
        read(&self.connections[shard_of(&id)])
            .get(&id)
            .map(|m| m.rooms().to_vec())
            .unwrap_or_default()
    }

    /// Hands `command` to every registered connection, past its mailbox's bound (a
    /// server shutting down tells everyone, even connections that are not keeping up).
    pub(crate) fn command_all(&self, command: &Command) {
        for mailbox in self.all_mailboxes(None) {
            mailbox.push_urgent(command.clone());
        }
    }

    /// Carries out what connection `from` asked for.
    pub(crate) fn apply(&self, from: ConnectionId, action: Action) {
        match action {
            Action::Join { room } => {
                let mailbox = {
                    let mut connections = write(&self.connections[shard_of(&from)]);
                    let Some(member) = connections.get_mut(&from) else {
                        return;
                    };
                    if member.rooms().contains(&room) {
                        return;
                    }
                    member.rooms.get_or_insert_default().push(room.clone());
                    Arc::clone(member.handle.mailbox())
                };
                let mut rooms = write(&self.rooms[shard_of(room.as_str())]);
                if let (Some(backplane), false) = (&self.backplane, rooms.contains_key(&room)) {
                    // The node's first member: under the shard lock, so a concurrent last
                    // leave cannot reorder its unsubscribe after this subscribe.
                    backplane.subscribe(&room);
                }
                rooms.entry(room).or_default().insert(from, mailbox);
            }
            Action::Leave { room } => {
                if let Some(member) = write(&self.connections[shard_of(&from)]).get_mut(&from) {
                    if let Some(rooms) = &mut member.rooms {
                        rooms.retain(|r| *r != room);
                    }
                }
                self.leave_room(from, &room);
            }
            Action::Broadcast { room, frame, except } => {
                if let Some(backplane) = &self.backplane {
                    backplane.publish(Publication::room(backplane.node(), &room, except, &frame));
                }
                self.deliver_room(&room, &frame, except);
            }
            Action::BroadcastAll { frame, except } => {
                if let Some(backplane) = &self.backplane {
                    backplane.publish(Publication::all(backplane.node(), except, &frame));
                }
                self.deliver_all(&frame, except);
            }
            Action::SendTo { to, frame } => match &self.backplane {
                Some(backplane) if node_of(to) != backplane.node() => {
                    backplane.publish(Publication::connection(backplane.node(), to, &frame));
                }
                _ => self.deliver_to(to, &frame),
            },
        }
    }

    /// Delivers `frame` to this node's members of `room` but `except`.
    pub(crate) fn deliver_room(&self, room: &str, frame: &SharedFrame, except: Option<ConnectionId>) {
        let recipients: Vec<Arc<Mailbox>> = read(&self.rooms[shard_of(room)])
            .get(room)
            .map(|members| {
                members
                    .iter()
                    .filter(|(id, _)| Some(**id) != except)
                    .map(|(_, mailbox)| Arc::clone(mailbox))
                    .collect()
            })
            .unwrap_or_default();
        deliver_each(recipients, &Command::Deliver(frame.clone()));
    }

    /// Delivers `frame` to every connection of this node but `except`.
    pub(crate) fn deliver_all(&self, frame: &SharedFrame, except: Option<ConnectionId>) {
        deliver_each(self.all_mailboxes(except), &Command::Deliver(frame.clone()));
    }

    /// Delivers `frame` to the connection `to`, if it is on this node.
    pub(crate) fn deliver_to(&self, to: ConnectionId, frame: &SharedFrame) {
        if let Some(handle) = self.handle(to) {
            // A full mailbox marks the recipient; the policy applies there.
            let _ = handle.deliver(frame.clone());
        }
    }

    fn leave_room(&self, id: ConnectionId, room: &str) {
        let mut rooms = write(&self.rooms[shard_of(room)]);
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(room);
                if let Some(backplane) = &self.backplane {
                    backplane.unsubscribe(room);
                }
            }
        }
    }

    fn all_mailboxes(&self, except: Option<ConnectionId>) -> Vec<Arc<Mailbox>> {
        self.connections
            .iter()
            .flat_map(|shard| {
                read(shard)
                    .iter()
                    .filter(|(id, _)| Some(**id) != except)
                    .map(|(_, m)| Arc::clone(m.handle.mailbox()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Queues `command` for every recipient, outside any hub lock.
fn deliver_each(recipients: Vec<Arc<Mailbox>>, command: &Command) {
    for mailbox in recipients {
        // A full mailbox marks the recipient; the policy applies there.
        let _ = mailbox.push(command.clone());
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
    use std::collections::VecDeque;

    fn setup(n: u64) -> (Hub, Vec<ConnectionHandle>) {
        let hub = Hub::default();
        let handles: Vec<ConnectionHandle> = (0..n)
            .map(|i| ConnectionHandle::new(ConnectionId(i), Arc::default()))
            .collect();
        for handle in &handles {
            hub.register(handle.clone());
        }
        (hub, handles)
    }

    fn count(handle: &ConnectionHandle) -> usize {
        let mut drained = VecDeque::new();
        handle.mailbox().drain_into(&mut drained);
        drained.len()
    }

    fn join(hub: &Hub, id: u64, room: &str) {
        hub.apply(ConnectionId(id), Action::Join { room: room.into() });
    }

    #[test]
    fn broadcast_reaches_exactly_the_rooms_members() {
        let (hub, handles) = setup(4);
        for id in [0, 2, 3] {
            join(&hub, id, "r");
        }
        hub.apply(ConnectionId(3), Action::Leave { room: "r".into() });
        let frame = SharedFrame::text("x");
        let broadcast = Action::Broadcast {
            room: "r".into(),
            frame: frame.clone(),
            except: Some(ConnectionId(0)),
        };
        hub.apply(ConnectionId(0), broadcast);
        assert_eq!(handles.iter().map(count).collect::<Vec<_>>(), [0, 0, 1, 0]);
        let everyone = Action::BroadcastAll {
            frame: frame.clone(),
            except: None,
        };
        hub.apply(ConnectionId(1), everyone);
        assert_eq!(handles.iter().map(count).collect::<Vec<_>>(), [1, 1, 1, 1]);
        hub.apply(
            ConnectionId(1),
            Action::SendTo {
                to: ConnectionId(3),
                frame,
            },
        );
        assert_eq!(count(&handles[3]), 1);
        assert_eq!(hub.members("r").len(), 2);
    }

    #[test]
    fn unregister_leaves_every_room_the_hub_recorded() {
        let (hub, handles) = setup(2);
        join(&hub, 1, "a");
        join(&hub, 1, "b");
        join(&hub, 1, "a");
        assert_eq!(hub.rooms_of(ConnectionId(1)), ["a", "b"]);
        hub.unregister(ConnectionId(1));
        for room in ["a", "b"] {
            let broadcast = Action::Broadcast {
                room: room.into(),
                frame: SharedFrame::text("x"),
                except: None,
            };
            hub.apply(ConnectionId(0), broadcast);
            assert!(hub.members(room).is_empty());
        }
        assert_eq!(count(&handles[1]), 0);
        assert!(hub.handle(ConnectionId(1)).is_none());
        assert!(!hub.has_trace_of(ConnectionId(1)));
        assert!(hub.has_trace_of(ConnectionId(0)));
    }
}
