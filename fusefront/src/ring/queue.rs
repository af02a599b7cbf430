//! One FUSE-over-io_uring queue: a thread pinned to its CPU, its own
//! io_uring, and `depth` entries, each a header block and a payload buffer
//! the kernel writes a request into and reads the reply from. The kernel
//! puts a request on the queue of the CPU that made it, so a request is
//! served on the CPU that asked, with no cross-CPU wake.
//!
//! An entry's life: REGISTER hands its buffers to the kernel; a completion
//! brings a request; the filesystem answers in the buffers (on this thread,
//! or later on a completion thread after a fetch); COMMIT_AND_FETCH gives
//! the answer back and waits for the next request. Answers made off this
//! thread come back through `commits` and wake it through an eventfd.
//!
//! It never blocks on the node (answers that wait for a fetch are made on
//! a completion thread) and ends once every entry has been ended by the
//! kernel (unmount), having answered each request it took.

use super::abi::*;
use super::dispatch::{dispatch, Request};
use super::entries::{Entries, QueueShared, SERVING};
use super::reply::RingReply;
use crate::fs::Shared;
use io_uring::{opcode, squeue::Entry128, types, IoUring};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use zerocopy::FromBytes;

/// The eventfd read's `user_data` (entries are 0..depth).
const WAKE: u64 = u64::MAX;

/// A queue set up but not yet registered: made before the kernel is told
/// the daemon speaks io_uring, so a machine that cannot make one never
/// says it does.
pub(super) struct Queue {
    ring: IoUring<Entry128>,
    shared: Arc<QueueShared>,
    commits: crossbeam_channel::Receiver<u32>,
}

impl Queue {
    pub(super) fn new(qid: u16, depth: usize, payload_bytes: usize) -> std::io::Result<Self> {
        let ring = IoUring::<Entry128>::builder().build(((depth + 2) as u32).next_power_of_two())?;
        let wake = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(QueueShared::new(qid, Entries::new(depth, payload_bytes)?, tx, wake));
        Ok(Self { ring, shared, commits: rx })
    }

    /// Registers every entry on the connection `fuse` and serves requests
    /// until the kernel ends them all. `registered` gets the outcome of the
    /// registration (an error: the kernel went back to /dev/fuse).
    pub(super) fn serve(
        mut self,
        fuse: OwnedFd,
        fs: Arc<Shared>,
        registered: crossbeam_channel::Sender<Result<(), String>>,
    ) {
        let qid = self.shared.qid;
        SERVING.with(|s| s.set(Some(qid)));
        let mut cpu = rustix::thread::CpuSet::new();
        cpu.set(usize::from(qid));
        if let Err(e) = rustix::thread::sched_setaffinity(None, &cpu) {
            tracing::debug!("pinning FUSE queue {qid} to its CPU: {e}");
        }
        let depth = self.shared.entries.depth;
        let fd = fuse.as_raw_fd();
        // Each entry's two buffers, as the iovecs REGISTER reads.
        let iovecs: Vec<[u64; 4]> = (0..depth as u32)
            .map(|i| {
                let e = &self.shared.entries;
                [e.header_ptr(i) as u64, HEADER_BYTES as u64, e.payload_ptr(i) as u64, e.payload_bytes as u64]
            })
            .collect();
        let mut wake_buf = Box::new([0u8; 8]);
        let mut commit_ids = vec![0u64; depth];
        let mut registering = vec![true; depth];
        let mut live = depth;
        for (i, iov) in iovecs.iter().enumerate() {
            self.push(register(fd, qid, i as u32, iov));
        }
        self.push(wake_read(&self.shared.wake, &mut wake_buf));
        let mut wake_armed = true;
        // A REGISTER the kernel refuses fails at submission: its
        // completion is there once submit returns.
        let mut outcome = self.ring.submit().map(|_| ()).map_err(|e| format!("submitting: {e}"));
        let mut first = true;
        loop {
            let mut resubmit = Vec::new();
            for cqe in self.ring.completion() {
                let (tag, res) = (cqe.user_data(), cqe.result());
                if tag == WAKE {
                    wake_armed = false;
                    continue;
                }
                let ent = tag as usize;
                if res < 0 {
                    let errno = -res;
                    if errno == rustix::io::Errno::AGAIN.raw_os_error()
                        || errno == rustix::io::Errno::INTR.raw_os_error()
                    {
                        resubmit.push(ent);
                        continue;
                    }
                    live -= 1;
                    let gone = [rustix::io::Errno::NOTCONN, rustix::io::Errno::CONNABORTED, rustix::io::Errno::NODEV];
                    if registering[ent] && outcome.is_ok() && first {
                        outcome = Err(format!("the kernel refused to register a ring entry (errno {errno})"));
                    } else if !gone.iter().any(|g| g.raw_os_error() == errno) {
                        tracing::warn!("FUSE queue {qid}: an entry ended with errno {errno}");
                    }
                    continue;
                }
                registering[ent] = false;
                // SAFETY: the kernel handed the entry back with a request:
                // this thread owns its buffers until a reply commits it.
                let (header, payload) =
                    unsafe { (self.shared.entries.header(ent as u32), self.shared.entries.payload(ent as u32)) };
                let Ok((h, _)) = InHeader::read_from_prefix(&header[IN_OUT_AT..]) else { continue };
                let Ok((e, _)) = EntInOut::read_from_prefix(&header[ENT_IN_OUT_AT..]) else { continue };
                commit_ids[ent] = e.commit_id;
                let len = (e.payload_sz as usize).min(payload.len());
                // Decoded into owned data first: from here on the entry's
                // buffers are the reply's to write.
                let request = Request::decode(&h, &header[OP_IN_AT..ENT_IN_OUT_AT], &payload[..len]);
                dispatch(&fs, request, RingReply::new(self.shared.clone(), ent as u32, h.unique));
            }
            if first {
                first = false;
                let _ = registered.send(outcome.clone());
            }
            // One read of the eventfd is always pending: whatever woke
            // this thread, the commits queued are taken below.
            if !wake_armed {
                self.push(wake_read(&self.shared.wake, &mut wake_buf));
                wake_armed = true;
            }
            for ent in resubmit {
                if registering[ent] {
                    self.push(register(fd, qid, ent as u32, &iovecs[ent]));
                } else {
                    self.push(commit(fd, qid, ent as u32, commit_ids[ent]));
                }
            }
            while let Ok(ent) = self.commits.try_recv() {
                self.push(commit(fd, qid, ent, commit_ids[ent as usize]));
            }
            if live == 0 {
                break;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                if e.raw_os_error() != Some(rustix::io::Errno::INTR.raw_os_error()) {
                    tracing::warn!("FUSE queue {qid}: {e}");
                    break;
                }
            }
        }
        // The ring goes before the buffers (replies still held elsewhere
        // keep `shared`, and with it the buffers, alive).
        drop(self.ring);
        drop(fuse);
    }

    fn push(&mut self, sqe: Entry128) {
        // SAFETY: every buffer an SQE names (entries, iovecs, the eventfd
        // buffer) outlives the ring, which is dropped first in `serve`.
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            let _ = self.ring.submit();
        }
    }
}

fn cmd(fd: RawFd, cmd_op: u32, qid: u16, commit_id: u64) -> opcode::UringCmd80 {
    let req = CmdReq { flags: 0, commit_id, qid, padding: [0; 6] };
    let mut area = [0u8; 80];
    area[..size_of::<CmdReq>()].copy_from_slice(zerocopy::IntoBytes::as_bytes(&req));
    opcode::UringCmd80::new(types::Fd(fd), cmd_op).cmd(area)
}

fn commit(fd: RawFd, qid: u16, ent: u32, commit_id: u64) -> Entry128 {
    cmd(fd, CMD_COMMIT_AND_FETCH, qid, commit_id).build().user_data(u64::from(ent))
}

/// REGISTER names the entry's buffers through the SQE's `addr` (an array
/// of two iovecs) and `len` (2), which io-uring's UringCmd80 does not set:
/// they are written into the SQE's bytes (`struct io_uring_sqe`: addr at
/// 16, len at 24).
fn register(fd: RawFd, qid: u16, ent: u32, iovecs: &[u64; 4]) -> Entry128 {
    const _: () = assert!(size_of::<Entry128>() == 128);
    let sqe = cmd(fd, CMD_REGISTER, qid, 0).build().user_data(u64::from(ent));
    // SAFETY: Entry128 is `repr(C)`, 128 bytes of the kernel's SQE128,
    // and any bytes are a valid value of it.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[16..24].copy_from_slice(&(iovecs.as_ptr() as u64).to_ne_bytes());
    raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
    unsafe { std::mem::transmute(raw) }
}

fn wake_read(wake: &OwnedFd, buf: &mut [u8; 8]) -> Entry128 {
    let e = opcode::Read::new(types::Fd(wake.as_fd().as_raw_fd()), buf.as_mut_ptr(), 8).build().user_data(WAKE);
    e.into()
}
