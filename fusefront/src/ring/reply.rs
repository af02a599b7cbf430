//! A reply made in a ring entry's own buffers: the out header and the
//! reply's bytes are written where the kernel reads them, and the entry is
//! handed back to its queue thread to commit. Implements every reply
//! trait of `crate::answer`, so the filesystem's operations answer the
//! ring as they answer fuser.
//!
//! A reply that is dropped unanswered (a bug, a panic on the way) answers
//! EIO: an entry never answered would leave its request, and the entry,
//! waiting forever.

use super::abi::*;
use super::entries::QueueShared;
use crate::answer::*;
use fuser::{BackingId, Errno, FileAttr, FileType, FopenFlags};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use zerocopy::IntoBytes;

pub(super) struct RingReply {
    queue: Arc<QueueShared>,
    ent: u32,
    unique: u64,
    answered: bool,
}

impl RingReply {
    pub(super) fn new(queue: Arc<QueueShared>, ent: u32, unique: u64) -> Self {
        Self { queue, ent, unique, answered: false }
    }

    /// The entry's payload buffer, where the reply's bytes go.
    fn payload(&mut self) -> &mut [u8] {
        // SAFETY: the entry's buffers belong to this reply from the
        // request's arrival until `finish` hands them back (the kernel
        // writes them only while the entry is in its hands).
        unsafe { self.queue.entries.payload(self.ent) }
    }

    fn finish(mut self, error: i32, len: usize) {
        self.complete(error, len);
    }

    /// Writes the out header and the payload's length, and hands the entry
    /// back to its queue thread; once.
    fn complete(&mut self, error: i32, len: usize) {
        self.answered = true;
        // SAFETY: as in `payload`.
        let header = unsafe { self.queue.entries.header(self.ent) };
        let out = OutHeader { len: (size_of::<OutHeader>() + len) as u32, error, unique: self.unique };
        header[IN_OUT_AT..IN_OUT_AT + size_of::<OutHeader>()].copy_from_slice(out.as_bytes());
        let at = ENT_IN_OUT_AT + std::mem::offset_of!(EntInOut, payload_sz);
        header[at..at + 4].copy_from_slice(&(len as u32).to_ne_bytes());
        self.queue.commit(self.ent);
    }

    /// Writes `value` at the start of the payload and answers with it.
    fn answer<T: IntoBytes + zerocopy::Immutable>(mut self, value: &T) {
        let bytes = value.as_bytes();
        self.payload()[..bytes.len()].copy_from_slice(bytes);
        self.finish(0, bytes.len());
    }
}

impl Drop for RingReply {
    fn drop(&mut self) {
        if !self.answered {
            tracing::warn!(unique = self.unique, "a ring request was dropped unanswered; it gets EIO");
            self.complete(-Errno::EIO.code(), 0);
        }
    }
}

fn split(t: std::time::SystemTime) -> (u64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_nanos()),
        // Before 1970: seconds as the kernel's signed count.
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                ((-s) as u64, 0)
            } else {
                ((-s - 1) as u64, 1_000_000_000 - n)
            }
        }
    }
}

fn mode(attr: &FileAttr) -> u32 {
    let kind = match attr.kind {
        FileType::NamedPipe => 0o010000,
        FileType::CharDevice => 0o020000,
        FileType::Directory => 0o040000,
        FileType::BlockDevice => 0o060000,
        FileType::RegularFile => 0o100000,
        FileType::Symlink => 0o120000,
        FileType::Socket => 0o140000,
    };
    kind | u32::from(attr.perm)
}

fn fuse_attr(a: &FileAttr) -> Attr {
    let (atime, atimensec) = split(a.atime);
    let (mtime, mtimensec) = split(a.mtime);
    let (ctime, ctimensec) = split(a.ctime);
    Attr {
        ino: a.ino.0,
        size: a.size,
        blocks: a.blocks,
        atime,
        mtime,
        ctime,
        atimensec,
        mtimensec,
        ctimensec,
        mode: mode(a),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: a.flags,
    }
}

fn entry_out(ttl: &Duration, attr: &FileAttr) -> EntryOut {
    EntryOut {
        nodeid: attr.ino.0,
        generation: 0,
        entry_valid: crate::limits::BASE_TREE_TTL.as_secs(),
        attr_valid: ttl.as_secs(),
        entry_valid_nsec: 0,
        attr_valid_nsec: ttl.subsec_nanos(),
        attr: fuse_attr(attr),
    }
}

impl Fail for RingReply {
    fn error(self, errno: Errno) {
        self.finish(-errno.code(), 0);
    }
}

impl DataAnswer for RingReply {
    fn data(mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.payload().len());
        self.payload()[..n].copy_from_slice(&bytes[..n]);
        self.finish(0, n);
    }

    /// Straight into the entry's payload: no buffer, no copy.
    fn pread(mut self, blob: &trove_engine::hydrate::blobstore::LocalBlob, offset: u64, size: u32) {
        let payload = self.payload();
        let n = (size as usize).min(payload.len());
        match blob.read_at(&mut payload[..n], offset) {
            Ok(got) => self.finish(0, got),
            Err(_) => self.error(Errno::EIO),
        }
    }
}

impl EntryAnswer for RingReply {
    fn entry(self, ttl: &Duration, attr: &FileAttr) {
        self.answer(&entry_out(ttl, attr));
    }
}

impl AttrAnswer for RingReply {
    fn attr(self, ttl: &Duration, attr: &FileAttr) {
        let out =
            AttrOut { attr_valid: ttl.as_secs(), attr_valid_nsec: ttl.subsec_nanos(), dummy: 0, attr: fuse_attr(attr) };
        self.answer(&out);
    }
}

impl OpenAnswer for RingReply {
    fn opened(self, fh: u64, flags: FopenFlags) {
        self.answer(&OpenOut { fh, open_flags: flags.bits(), backing_id: 0 });
    }
    fn open_backing(&self, _file: &std::fs::File) -> std::io::Result<BackingId> {
        // Passthrough keeps the /dev/fuse transport (`Transport::for_read_path`).
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "passthrough is not served over io_uring"))
    }
    fn opened_passthrough(self, _fh: u64, _flags: FopenFlags, _backing: &BackingId) {
        self.error(Errno::EIO);
    }
}

impl CreateAnswer for RingReply {
    fn created(self, ttl: &Duration, attr: &FileAttr) {
        let open = OpenOut { fh: 0, open_flags: 0, backing_id: 0 };
        self.answer(&CreateOut { entry: entry_out(ttl, attr), open });
    }
}

impl WriteAnswer for RingReply {
    fn written(self, size: u32) {
        self.answer(&WriteOut { size, padding: 0 });
    }
}

impl EmptyAnswer for RingReply {
    fn ok(self) {
        self.finish(0, 0);
    }
}

impl StatfsAnswer for RingReply {
    fn statfs(self, v: &rustix::fs::StatVfs) {
        self.answer(&StatfsOut {
            blocks: v.f_blocks,
            bfree: v.f_bfree,
            bavail: v.f_bavail,
            files: v.f_files,
            ffree: v.f_ffree,
            bsize: v.f_bsize as u32,
            namelen: 255,
            frsize: v.f_frsize as u32,
            padding: 0,
            spare: [0; 6],
        });
    }
}

/// A listing written entry by entry into the payload, up to the size the
/// kernel asked for.
pub(super) struct RingDir {
    reply: RingReply,
    used: usize,
    room: usize,
}

impl RingDir {
    pub(super) fn new(mut reply: RingReply, asked: u32) -> Self {
        let room = (asked as usize).min(reply.payload().len());
        Self { reply, used: 0, room }
    }

    /// Appends `parts` as one 8-byte aligned record; false if it does not fit.
    fn push(&mut self, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let padded = len.next_multiple_of(8);
        if self.used + padded > self.room {
            return false;
        }
        let buf = self.reply.payload();
        let mut at = self.used;
        for p in parts {
            buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        buf[at..self.used + padded].fill(0);
        self.used += padded;
        true
    }
}

fn dirent(ino: u64, offset: u64, kind: FileType, name: &[u8]) -> Dirent {
    let t = match kind {
        FileType::NamedPipe => 1,
        FileType::CharDevice => 2,
        FileType::Directory => 4,
        FileType::BlockDevice => 6,
        FileType::RegularFile => 8,
        FileType::Symlink => 10,
        FileType::Socket => 12,
    };
    Dirent { ino, off: offset, namelen: name.len() as u32, kind: t }
}

impl Fail for RingDir {
    fn error(self, errno: Errno) {
        self.reply.error(errno);
    }
}

impl DirAnswer for RingDir {
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &[u8]) -> bool {
        !self.push(&[dirent(ino, offset, kind, name).as_bytes(), name])
    }
    fn ok(self) {
        let used = self.used;
        self.reply.finish(0, used);
    }
}

impl DirPlusAnswer for RingDir {
    fn add(&mut self, offset: u64, name: &[u8], ttl: &Duration, attr: &FileAttr) -> bool {
        let entry = entry_out(ttl, attr);
        let d = dirent(attr.ino.0, offset, attr.kind, name);
        !self.push(&[entry.as_bytes(), d.as_bytes(), name])
    }
    fn ok(self) {
        let used = self.used;
        self.reply.finish(0, used);
    }
}
