//! A connection's queue of encoded frames: the room task pushes, the connection's writer takes.
//!
//! It does what an unbounded channel would, but gives its memory back. tokio's unbounded
//! channel allocates a block of 32 slots up front and keeps the blocks a burst made it grow to,
//! which cost an idle connection 1 KiB always and up to 10 KiB after a crowd had joined (every
//! join is announced to everyone). Here the frames sit in a `VecDeque` behind a mutex that the
//! room and the writer each take for a moment (never across an await); a drained queue keeps
//! at most [`KEEP`] slots. What the frames hold is bounded elsewhere: the room counts the bytes
//! queued and drops a connection past `--max-queue`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// Slots a drained queue may keep for the next frames; beyond this, its memory is freed.
const KEEP: usize = 4;

/// A new queue: the room's end and the writer's end.
pub fn queue() -> (FrameSender, FrameReceiver) {
    let shared = Arc::new(Mutex::new(State {
        frames: VecDeque::new(),
        waker: None,
        sender_gone: false,
        receiver_gone: false,
    }));
    (FrameSender(shared.clone()), FrameReceiver(shared))
}

struct State {
    frames: VecDeque<Bytes>,
    /// The writer, waiting for a frame.
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    // Nothing panics while holding the lock; should anything ever, the queue is still whole.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The room's end. Dropping it ends the queue: the writer takes what is left, then sees the end.
pub struct FrameSender(Arc<Mutex<State>>);

impl FrameSender {
    /// Queues `frame` and wakes the writer; gives the frame back if the writer has gone.
    pub fn send(&self, frame: Bytes) -> Result<(), Bytes> {
        let waker = {
            let mut state = lock(&self.0);
            if state.receiver_gone {
                return Err(frame);
            }
            state.frames.push_back(frame);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Drop for FrameSender {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.0);
            state.sender_gone = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSender").finish_non_exhaustive()
    }
}

/// The writer's end. Dropping it makes further sends fail and frees what is queued.
pub struct FrameReceiver(Arc<Mutex<State>>);

impl FrameReceiver {
    /// The next frame, waiting for one; `None` once the sender is gone and the queue empty.
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut state = lock(&self.0);
        if let Some(frame) = pop(&mut state) {
            return Poll::Ready(Some(frame));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        pop(&mut lock(&self.0))
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        lock(&self.0).frames.is_empty()
    }
}

fn pop(state: &mut State) -> Option<Bytes> {
    let frame = state.frames.pop_front()?;
    if state.frames.is_empty() && state.frames.capacity() > KEEP {
        state.frames = VecDeque::new();
    }
    Some(frame)
}

impl Drop for FrameReceiver {
    fn drop(&mut self) {
        let frames = {
            let mut state = lock(&self.0);
            state.receiver_gone = true;
            state.waker = None;
            std::mem::take(&mut state.frames)
        };
        drop(frames); // outside the lock
    }
}

impl fmt::Debug for FrameReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[tokio::test]
    async fn frames_come_out_in_order_then_the_end() {
        let (tx, mut rx) = queue();
        for text in ["a", "b", "c"] {
            tx.send(frame(text)).unwrap();
        }
        assert!(!rx.is_empty());
        assert_eq!(rx.recv().await, Some(frame("a")));
        assert_eq!(rx.try_recv(), Some(frame("b")));
        drop(tx);
        assert_eq!(
            rx.recv().await,
            Some(frame("c")),
            "what was queued still comes"
        );
        assert!(rx.is_empty());
        assert_eq!(rx.try_recv(), None);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_by_a_frame_and_by_the_end() {
        let (tx, mut rx) = queue();
        let writer = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.send(frame("hello")).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        let (first, second) = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
            .await
            .expect("the writer is woken")
            .unwrap();
        assert_eq!((first, second), (Some(frame("hello")), None));
    }

    #[test]
    fn sending_to_a_gone_writer_gives_the_frame_back() {
        let (tx, rx) = queue();
        tx.send(frame("queued")).unwrap();
        drop(rx);
        assert_eq!(tx.send(frame("late")), Err(frame("late")));
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let (tx, mut rx) = queue();
        for _ in 0..1000 {
            tx.send(frame("announcement")).unwrap();
        }
        assert!(lock(&rx.0).frames.capacity() >= 1000);
        while rx.try_recv().is_some() {}
        assert!(lock(&rx.0).frames.capacity() <= KEEP);
        // One frame at a time keeps its few slots rather than allocating each time.
        tx.send(frame("one")).unwrap();
        assert_eq!(rx.try_recv(), Some(frame("one")));
        assert!(lock(&rx.0).frames.capacity() > 0);
    }
}
