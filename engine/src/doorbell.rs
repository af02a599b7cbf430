//! A channel from a plain thread into a shard that wakes the shard at once.
//!
//! Why it exists: glommio delivers a wake from a thread outside its
//! executors (a futures channel sent to from a FUSE thread, or from the
//! thread reading blobs for `POST .../blobs`) by queueing the waker and
//! writing its eventfd only if the executor armed it before sleeping. With
//! futures channels on both hops, first opens of a mount stalled 100-850 ms
//! here while the owner shard sat in io_uring waits of exactly its 100 ms
//! timer tick; with this channel on both hops, the stalls over 30 ms left
//! were disk time (file create and rename). A byte on a socket the shard
//! reads through io_uring ends any wait, armed or not.
//!
//! [`Sender`] (any thread) queues on a crossbeam channel, bounded or not,
//! and rings the bell (one byte, nonblocking) unless it is already ringing;
//! [`Receiver`] (one shard task) clears the bell before it drains, so a
//! message sent while it drains rings again. Dropping or closing every
//! sender ends the receiver once the queue is empty.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Bell {
    ringing: AtomicBool,
    socket: UnixStream,
}

/// The sending end; clone it for more senders.
pub struct Sender<T> {
    /// Always Some until drop, which lets go of it before the last ring.
    queue: Option<crossbeam_channel::Sender<T>>,
    bell: Arc<Bell>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone(), bell: self.bell.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // The queue first, so a receiver woken by the ring below sees it
        // disconnected when this was the last sender.
        drop(self.queue.take());
        self.ring();
    }
}

/// The receiving end, before it is on its shard (it is Send until then).
pub struct Receiver<T> {
    queue: crossbeam_channel::Receiver<T>,
    bell: Arc<Bell>,
    socket: UnixStream,
}

/// The receiving end on its shard ([`Receiver::on_shard`]).
pub struct ShardReceiver<T> {
    queue: crossbeam_channel::Receiver<T>,
    bell: Arc<Bell>,
    socket: glommio::net::UnixStream,
    closed: bool,
}

/// A channel holding at most `bound` messages (None: unbounded); a send to
/// a full one blocks the sending thread.
pub fn channel<T>(bound: Option<usize>) -> std::io::Result<(Sender<T>, Receiver<T>)> {
    let (theirs, ours) = UnixStream::pair()?;
    theirs.set_nonblocking(true)?;
    ours.set_nonblocking(true)?;
    let (tx, rx) = match bound {
        Some(n) => crossbeam_channel::bounded(n),
        None => crossbeam_channel::unbounded(),
    };
    let bell = Arc::new(Bell { ringing: AtomicBool::new(false), socket: theirs });
    Ok((Sender { queue: Some(tx), bell: bell.clone() }, Receiver { queue: rx, bell, socket: ours }))
}

impl<T> Sender<T> {
    /// Queues `v` (waiting for room if bounded) and wakes the receiver.
    /// Err(v) when the receiver is gone.
    pub fn send(&self, v: T) -> Result<(), T> {
        self.queue.as_ref().expect("set until drop").send(v).map_err(|e| e.0)?;
        self.ring();
        Ok(())
    }

    fn ring(&self) {
        if !self.bell.ringing.swap(true, Ordering::AcqRel) {
            // A full socket buffer means it is ringing already.
            let _ = (&self.bell.socket).write(&[1]);
        }
    }

    /// Ends the channel for the receiver, also while senders live.
    pub fn close(&self) {
        let _ = self.bell.socket.shutdown(std::net::Shutdown::Write);
    }
}

impl<T> Receiver<T> {
    /// The receiver on the calling shard's executor.
    pub fn on_shard(self) -> ShardReceiver<T> {
        // SAFETY: the fd was just taken out of a std socket, so it is open
        // and owned by nothing else.
        let socket = unsafe {
            use std::os::fd::{FromRawFd, IntoRawFd};
            glommio::net::UnixStream::from_raw_fd(self.socket.into_raw_fd())
        };
        ShardReceiver { queue: self.queue, bell: self.bell, socket, closed: false }
    }
}

impl<T> ShardReceiver<T> {
    /// The next message, or None once every sender is gone (or closed) and
    /// the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Ok(v) = self.queue.try_recv() {
                return Some(v);
            }
            // Cleared before the last look: a send after it rings again.
            self.bell.ringing.store(false, Ordering::Release);
            match self.queue.try_recv() {
                Ok(v) => return Some(v),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) if self.closed => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            let mut buf = [0u8; 64];
            match futures_lite::AsyncReadExt::read(&mut self.socket, &mut buf).await {
                Ok(0) | Err(_) => self.closed = true,
                Ok(_) => {}
            }
        }
    }

    /// A message if one is queued now.
    pub fn try_recv(&self) -> Option<T> {
        self.queue.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Ping-pong from a plain thread into an executor that also runs a
    /// 100 ms ticker (as a shard's background jobs do): every message
    /// arrives in order, the worst hop stays far under the tick, and
    /// closing ends the receiver. (This small setting does not reproduce
    /// the late foreign wakes the module doc describes: a futures channel
    /// passes it too. The mount's first-read bench is where they showed.)
    #[test]
    fn a_plain_thread_wakes_a_shard_at_once_and_closing_ends_it() {
        let (tx, rx) = channel::<Instant>(Some(2)).expect("channel");
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<Duration>();
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("executor");
        let sender = std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            for _ in 0..50 {
                tx.send(Instant::now()).expect("send");
                worst = worst.max(ack_rx.recv().expect("ack"));
            }
            tx.close();
            worst
        });
        let got = ex.run(async move {
            let mut rx = rx.on_shard();
            let ticker = glommio::spawn_local(async {
                loop {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
            });
            let mut n = 0;
            while let Some(sent) = rx.recv().await {
                n += 1;
                let _ = ack_tx.send(sent.elapsed());
            }
            ticker.cancel().await;
            n
        });
        let worst = sender.join().expect("sender");
        assert_eq!(got, 50, "every message, then the end");
        assert!(worst < Duration::from_millis(40), "the worst hop waited for a tick: {worst:?}");
    }
}
