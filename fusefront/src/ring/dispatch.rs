//! One request from a ring entry: decoded into a [`Request`] that owns
//! what it needs (the entry's buffers are the reply's from then on), then
//! handed to the filesystem's operation (`crate::fs`) with a `RingReply`.
//! Every opcode the kernel may send over the ring is answered: the
//! read-only mount refuses writes with EROFS; what it does not serve gets
//! ENOSYS, which the kernel remembers (getxattr, flush, fsync, lseek: it
//! stops sending them).
//!
//! Every byte here comes from the kernel; lengths are checked against the
//! buffers before any slice is taken.

use super::abi::{op, AccessIn, InHeader, OpenIn, ReadIn, ReleaseIn};
use super::reply::{RingDir, RingReply};
use crate::answer::{EmptyAnswer, Fail};
use crate::fs::Shared;
use fuser::Errno;
use std::sync::Arc;
use zerocopy::FromBytes;

/// Longest name a lookup carries (NAME_MAX), with its NUL.
const NAME_MAX: usize = 256;

/// What one request asks, decoded from its entry and owning its bytes.
/// One lives on the stack per request and in no collection, so a lookup's
/// name is kept inline rather than allocated.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Request {
    Lookup {
        parent: u64,
        name: [u8; NAME_MAX],
        len: usize,
    },
    Getattr(u64),
    Readlink(u64),
    Open {
        ino: u64,
        flags: i32,
    },
    Opendir(u64),
    Read {
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    },
    Readdir {
        ino: u64,
        offset: u64,
        size: u32,
        plus: bool,
    },
    Release {
        fh: u64,
    },
    Statfs,
    Access {
        ino: u64,
        mask: i32,
    },
    /// Answered empty at once (RELEASEDIR, DESTROY).
    Ok,
    /// Answered with this error at once.
    Refused(Errno),
}

impl Request {
    /// Decodes the request of `h`, whose operation arguments are `op_in`
    /// and whose payload is `payload`.
    pub(super) fn decode(h: &InHeader, op_in: &[u8], payload: &[u8]) -> Request {
        let ino = h.nodeid;
        let malformed = Request::Refused(Errno::EINVAL);
        match h.opcode {
            op::LOOKUP => {
                let found = payload.split(|&b| b == 0).next().unwrap_or_default();
                if found.is_empty() || found.len() >= NAME_MAX {
                    return Request::Refused(Errno::ENAMETOOLONG);
                }
                let mut name = [0u8; NAME_MAX];
                name[..found.len()].copy_from_slice(found);
                Request::Lookup { parent: ino, name, len: found.len() }
            }
            op::GETATTR => Request::Getattr(ino),
            op::READLINK => Request::Readlink(ino),
            op::OPEN => {
                OpenIn::read_from_prefix(op_in).map_or(malformed, |(o, _)| Request::Open { ino, flags: o.flags as i32 })
            }
            op::OPENDIR => Request::Opendir(ino),
            op::READ => ReadIn::read_from_prefix(op_in).map_or(malformed, |(r, _)| Request::Read {
                ino,
                fh: r.fh,
                offset: r.offset,
                size: r.size,
            }),
            op::READDIR | op::READDIRPLUS => ReadIn::read_from_prefix(op_in).map_or(malformed, |(r, _)| {
                Request::Readdir { ino, offset: r.offset, size: r.size, plus: h.opcode == op::READDIRPLUS }
            }),
            op::RELEASE => ReleaseIn::read_from_prefix(op_in).map_or(malformed, |(r, _)| Request::Release { fh: r.fh }),
            op::RELEASEDIR | op::DESTROY => Request::Ok,
            op::STATFS => Request::Statfs,
            op::ACCESS => AccessIn::read_from_prefix(op_in)
                .map_or(malformed, |(a, _)| Request::Access { ino, mask: a.mask as i32 }),
            // A file here is no terminal (isatty asks) and has no ioctls.
            op::IOCTL => Request::Refused(Errno::ENOTTY),
            op::SETATTR
            | op::SYMLINK
            | op::MKNOD
            | op::MKDIR
            | op::UNLINK
            | op::RMDIR
            | op::RENAME
            | op::LINK
            | op::WRITE
            | op::SETXATTR
            | op::REMOVEXATTR
            | op::CREATE
            | op::FALLOCATE
            | op::RENAME2
            | op::COPY_FILE_RANGE
            | op::TMPFILE => Request::Refused(Errno::EROFS),
            _ => Request::Refused(Errno::ENOSYS),
        }
    }
}

pub(super) fn dispatch(fs: &Arc<Shared>, request: Request, reply: RingReply) {
    match request {
        Request::Lookup { parent, name, len } => fs.lookup(parent, &name[..len], reply),
        Request::Getattr(ino) => fs.getattr(ino, reply),
        Request::Readlink(ino) => fs.readlink(ino, reply),
        Request::Open { ino, flags } => fs.open(ino, flags, reply),
        Request::Opendir(ino) => fs.opendir(ino, reply),
        Request::Read { ino, fh, offset, size } => fs.read(ino, fh, offset, size, reply),
        Request::Readdir { ino, offset, size, plus: false } => fs.readdir(ino, offset, RingDir::new(reply, size)),
        Request::Readdir { ino, offset, size, plus: true } => fs.readdirplus(ino, offset, RingDir::new(reply, size)),
        Request::Release { fh } => fs.release(fh, reply),
        Request::Statfs => fs.statfs(reply),
        Request::Access { ino, mask } => fs.access(ino, mask, reply),
        Request::Ok => reply.ok(),
        Request::Refused(errno) => reply.error(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn header(opcode: u32) -> InHeader {
        InHeader { len: 0, opcode, unique: 7, nodeid: 3, uid: 0, gid: 0, pid: 0, total_extlen: 0, padding: 0 }
    }

    #[test]
    fn hostile_requests_decode_to_refusals() {
        let name = |p: &[u8]| Request::decode(&header(op::LOOKUP), &[], p);
        match name(b"abc\0junk") {
            Request::Lookup { parent: 3, name, len: 3 } => assert_eq!(&name[..3], b"abc"),
            other => panic!("{other:?}"),
        }
        assert_eq!(name(b"\0"), Request::Refused(Errno::ENAMETOOLONG), "an empty name");
        assert_eq!(name(&[b'a'; NAME_MAX]), Request::Refused(Errno::ENAMETOOLONG), "no NUL within NAME_MAX");
        assert_eq!(Request::decode(&header(op::READ), &[0u8; 8], &[]), Request::Refused(Errno::EINVAL), "short args");
        assert_eq!(Request::decode(&header(op::WRITE), &[], &[]), Request::Refused(Errno::EROFS));
        assert_eq!(Request::decode(&header(999), &[], &[]), Request::Refused(Errno::ENOSYS));
        let read = ReadIn { fh: 9, offset: 4096, size: 512, read_flags: 0, lock_owner: 0, flags: 0, padding: 0 };
        assert_eq!(
            Request::decode(&header(op::READ), read.as_bytes(), &[]),
            Request::Read { ino: 3, fh: 9, offset: 4096, size: 512 }
        );
    }
}
