//! A broadcast room whose members live on different proactor threads (a chat room across
//! cores): shared membership behind a mutex, one bounded outbound queue per member, and a wake-up
//! posted to the member's own thread when its queue goes from empty to non-empty.
//!
//! The lock is held only to copy a message into the members' queues, never across I/O; each
//! member's writer task drains its queue on its own thread. A member whose queue is full (a
//! client that stopped reading) is removed from the room and its receiver reports
//! [`Lagged`], so one slow client can neither stall the room nor make it buffer without limit.

use crate::runtime::{Handle, RemoteHandle};
use slab::Slab;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The member fell too far behind and was removed from the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

impl std::fmt::Display for Lagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the member's outbound queue overflowed; it was removed from the room")
    }
}

impl std::error::Error for Lagged {}

struct Outbox<M> {
    queue: VecDeque<M>,
    waker: Option<Waker>,
    /// Removed from the room (left, lagged, or the room is gone).
    closed: bool,
    lagged: bool,
}

struct Member<M> {
    remote: RemoteHandle,
    outbox: Arc<Mutex<Outbox<M>>>,
}

struct RoomInner<M> {
    members: Mutex<Slab<Member<M>>>,
    capacity: usize,
}

/// A broadcast room shared by connections on any thread. Cheap to clone.
pub struct Room<M> {
    inner: Arc<RoomInner<M>>,
}

impl<M> Clone for Room<M> {
    fn clone(&self) -> Self {
        Room { inner: self.inner.clone() }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<M: Clone + Send + 'static> Room<M> {
    /// An empty room; each member may have up to `capacity` messages waiting to be written.
    pub fn new(capacity: usize) -> Room<M> {
        Room {
            inner: Arc::new(RoomInner {
                members: Mutex::new(Slab::new()),
                capacity: capacity.max(1),
            }),
        }
    }

    /// Joins the room from the calling proactor thread, which is where this member's messages
    /// will be delivered.
    ///
    /// # Panics
    /// Outside a running proactor.
    pub fn join(&self) -> Membership<M> {
        let outbox = Arc::new(Mutex::new(Outbox {
            queue: VecDeque::new(),
            waker: None,
            closed: false,
            lagged: false,
        }));
        let remote = Handle::current().remote();
        let id = lock(&self.inner.members).insert(Member { remote, outbox: outbox.clone() });
        Membership { room: self.clone(), id, outbox }
    }

    /// Members now.
    pub fn len(&self) -> usize {
        lock(&self.inner.members).len()
    }

    /// True when nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `msg` for every member except `except` (usually the sender). Returns how many
    /// members it was queued for. Members whose queue is full are removed (they see [`Lagged`]).
    pub fn broadcast(&self, msg: &M, except: Option<usize>) -> usize {
        let mut wake: Vec<(RemoteHandle, Arc<Mutex<Outbox<M>>>)> = Vec::new();
        let mut lagging = Vec::new();
        let mut sent = 0;
        {
            let members = lock(&self.inner.members);
            for (id, m) in members.iter() {
                if Some(id) == except {
                    continue;
                }
                let mut out = lock(&m.outbox);
                if out.queue.len() >= self.inner.capacity {
                    lagging.push(id);
                    continue;
                }
                out.queue.push_back(msg.clone());
                sent += 1;
                // Only the first message after the writer emptied its queue needs a wake-up.
                if out.queue.len() == 1 && out.waker.is_some() {
                    wake.push((m.remote.clone(), m.outbox.clone()));
                }
            }
        }
        for id in lagging {
            if let Some(m) = self.remove(id) {
                let mut out = lock(&m.outbox);
                out.lagged = true;
                wake.push((m.remote.clone(), m.outbox.clone()));
            }
        }
        for (remote, outbox) in wake {
            // The waker runs on the member's own thread, in its loop's drain of posted work.
            let _ = remote.post(move || {
                let w = lock(&outbox).waker.take();
                if let Some(w) = w {
                    w.wake();
                }
            });
        }
        sent
    }

    fn remove(&self, id: usize) -> Option<Member<M>> {
        let m = lock(&self.inner.members).try_remove(id)?;
        lock(&m.outbox).closed = true;
        Some(m)
    }
}

/// One member's place in a [`Room`]; leaving (or dropping it) removes the member.
pub struct Membership<M: Clone + Send + 'static> {
    room: Room<M>,
    id: usize,
    outbox: Arc<Mutex<Outbox<M>>>,
}

impl<M: Clone + Send + 'static> Membership<M> {
    /// This member's id, to pass as `except` when it broadcasts.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The room.
    pub fn room(&self) -> &Room<M> {
        &self.room
    }

    /// Sends `msg` to every other member.
    pub fn broadcast(&self, msg: &M) -> usize {
        self.room.broadcast(msg, Some(self.id))
    }

    /// Leaves the room now: later broadcasts skip this member, and a pending or later
    /// [`Membership::recv`] returns what is still queued, then `Ok(empty)`.
    pub fn leave(&self) {
        self.room.remove(self.id);
        let w = lock(&self.outbox).waker.take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Waits for the next messages for this member and takes all of them (at least one).
    /// `Err(Lagged)` once the member was removed for falling behind; `Ok(empty)` once it left.
    pub fn recv(&self) -> Recv<'_, M> {
        Recv { outbox: &self.outbox }
    }
}

impl<M: Clone + Send + 'static> Drop for Membership<M> {
    fn drop(&mut self) {
        self.room.remove(self.id);
    }
}

/// The future of [`Membership::recv`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a, M> {
    outbox: &'a Arc<Mutex<Outbox<M>>>,
}

impl<M> Future for Recv<'_, M> {
    type Output = Result<Vec<M>, Lagged>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut out = lock(self.outbox);
        if out.lagged {
            return Poll::Ready(Err(Lagged));
        }
        if !out.queue.is_empty() || out.closed {
            return Poll::Ready(Ok(out.queue.drain(..).collect()));
        }
        out.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
