//! Rooms over in-process channels: a [`SignalingConnector`] with no sockets, for tests.
//!
//! It behaves as a small room server: each session gets an id (`m1`, `m2`, ...) and
//! [`SignalingEvent::Joined`]; the others get [`SignalingEvent::PeerJoined`]; when a room
//! reaches its capacity every member gets [`SignalingEvent::Ready`]; signals are relayed to
//! their target (or to every other member) with `from` set; a dropped session is
//! [`SignalingEvent::PeerLeft`] for the rest. [`MemorySignaling::deliver`] injects any event,
//! e.g. an error, into a room.

use super::{Outgoing, SignalingConnector, SignalingError, SignalingEvent, SignalingSession};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// In-process rooms; clones share them.
#[derive(Debug, Clone)]
pub struct MemorySignaling {
    capacity: usize,
    hub: Arc<Mutex<Hub>>,
}

#[derive(Debug, Default)]
struct Hub {
    next_id: u64,
    rooms: HashMap<String, Vec<Member>>,
}

#[derive(Debug)]
struct Member {
    id: String,
    tx: mpsc::UnboundedSender<SignalingEvent>,
}

impl MemorySignaling {
    /// Rooms of `capacity` peers (`Ready` is sent when a room has that many).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hub: Arc::default(),
        }
    }

    /// Delivers `event` to every member of `room`; returns how many received it.
    pub fn deliver(&self, room: &str, event: SignalingEvent) -> usize {
        let Ok(hub) = self.hub.lock() else { return 0 };
        hub.rooms.get(room).map_or(0, |members| {
            members
                .iter()
                .filter(|m| m.tx.send(event.clone()).is_ok())
                .count()
        })
    }

    /// Ids of the members of `room`, in join order.
    pub fn members(&self, room: &str) -> Vec<String> {
        self.hub
            .lock()
            .ok()
            .and_then(|hub| {
                hub.rooms
                    .get(room)
                    .map(|m| m.iter().map(|m| m.id.clone()).collect())
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl SignalingConnector for MemorySignaling {
    async fn join(&self, room: &str) -> Result<Box<dyn SignalingSession>, SignalingError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut hub = self.hub.lock().map_err(|_| SignalingError::Closed)?;
        hub.next_id += 1;
        let id = format!("m{}", hub.next_id);
        let members = hub.rooms.entry(room.to_string()).or_default();
        if members.len() >= self.capacity {
            let _ = tx.send(SignalingEvent::Error(SignalingError::Refused {
                code: "room_full".into(),
                message: format!("room {room:?} is full ({} peers)", self.capacity),
            }));
            drop(hub);
            return Ok(Box::new(MemorySession {
                id,
                room: None,
                hub: self.hub.clone(),
                rx,
            }));
        }
        let _ = tx.send(SignalingEvent::Joined {
            peer_id: Some(id.clone()),
            peers: members.iter().map(|m| m.id.clone()).collect(),
        });
        for m in members.iter() {
            let _ = m.tx.send(SignalingEvent::PeerJoined {
                peer_id: id.clone(),
            });
        }
        members.push(Member { id: id.clone(), tx });
        if members.len() == self.capacity {
            let peers: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
            for m in members.iter() {
                let _ = m.tx.send(SignalingEvent::Ready {
                    peers: peers.clone(),
                });
            }
        }
        drop(hub);
        Ok(Box::new(MemorySession {
            id,
            room: Some(room.to_string()),
            hub: self.hub.clone(),
            rx,
        }))
    }
}

/// One member of an in-process room (or a refused one, `room: None`).
struct MemorySession {
    id: String,
    room: Option<String>,
    hub: Arc<Mutex<Hub>>,
    rx: mpsc::UnboundedReceiver<SignalingEvent>,
}

#[async_trait]
impl SignalingSession for MemorySession {
    fn send(&mut self, message: Outgoing) -> Result<(), SignalingError> {
        let hub = self.hub.lock().map_err(|_| SignalingError::Closed)?;
        let members = self.room.as_ref().and_then(|r| hub.rooms.get(r));
        let Some(members) = members else {
            return Err(SignalingError::Refused {
                code: "not_in_room".into(),
                message: "send before joining a room".into(),
            });
        };
        let event = SignalingEvent::Signal {
            from: Some(self.id.clone()),
            signal: message.signal,
        };
        let mut delivered = false;
        for m in members.iter().filter(|m| m.id != self.id) {
            if message.to.as_ref().is_none_or(|to| *to == m.id) {
                let _ = m.tx.send(event.clone());
                delivered = true;
            }
        }
        if let (Some(to), false) = (&message.to, delivered) {
            return Err(SignalingError::Refused {
                code: "unknown_peer".into(),
                message: format!("no peer {to:?} in the room"),
            });
        }
        Ok(())
    }

    async fn recv(&mut self) -> Option<SignalingEvent> {
        self.rx.recv().await
    }
}

impl Drop for MemorySession {
    fn drop(&mut self) {
        let Some(room) = &self.room else { return };
        let Ok(mut hub) = self.hub.lock() else { return };
        if let Some(members) = hub.rooms.get_mut(room) {
            members.retain(|m| m.id != self.id);
            for m in members.iter() {
                let _ = m.tx.send(SignalingEvent::PeerLeft {
                    peer_id: self.id.clone(),
                });
            }
            if members.is_empty() {
                hub.rooms.remove(room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Signal;
    use super::*;

    #[tokio::test]
    async fn a_room_of_two_is_ready_relays_and_reports_leaving() {
        let signaling = MemorySignaling::new(2);
        let mut a = signaling.join("r").await.unwrap();
        let mut b = signaling.join("r").await.unwrap();
        assert_eq!(
            a.recv().await,
            Some(SignalingEvent::Joined {
                peer_id: Some("m1".into()),
                peers: vec![]
            })
        );
        assert_eq!(
            a.recv().await,
            Some(SignalingEvent::PeerJoined {
                peer_id: "m2".into()
            })
        );
        let ready = SignalingEvent::Ready {
            peers: vec!["m1".into(), "m2".into()],
        };
        assert_eq!(a.recv().await, Some(ready.clone()));
        assert_eq!(
            b.recv().await,
            Some(SignalingEvent::Joined {
                peer_id: Some("m2".into()),
                peers: vec!["m1".into()]
            })
        );
        assert_eq!(b.recv().await, Some(ready));
        a.send(Outgoing::to_room(Signal::Offer { sdp: "v=0".into() }))
            .unwrap();
        assert_eq!(
            b.recv().await,
            Some(SignalingEvent::Signal {
                from: Some("m1".into()),
                signal: Signal::Offer { sdp: "v=0".into() }
            })
        );
        let to_nobody = b.send(Outgoing {
            to: Some("m9".into()),
            signal: Signal::EndOfCandidates,
        });
        assert!(matches!(to_nobody, Err(SignalingError::Refused { .. })));
        let mut c = signaling.join("r").await.unwrap();
        assert!(matches!(
            c.recv().await,
            Some(SignalingEvent::Error(SignalingError::Refused { .. }))
        ));
        drop(b);
        assert_eq!(
            a.recv().await,
            Some(SignalingEvent::PeerLeft {
                peer_id: "m2".into()
            })
        );
        assert_eq!(signaling.members("r"), vec!["m1".to_string()]);
    }
}
