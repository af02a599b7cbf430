//! One request from a ring entry, decoded and handed to the filesystem's
//! operation (`crate::fs`) with a `RingReply`. Every opcode the kernel may
//! send over the ring is answered: the read-only mount refuses writes with
//! EROFS; what it does not serve gets ENOSYS, which the kernel remembers
//! (getxattr, flush, fsync, lseek: it stops sending them).
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

pub(super) fn dispatch(fs: &Arc<Shared>, h: &InHeader, op_in: &[u8], payload: &[u8], reply: RingReply) {
    match h.opcode {
        op::LOOKUP => {
            // The name is copied out: the reply is written over the payload.
            let name = payload.split(|&b| b == 0).next().unwrap_or_default();
            if name.is_empty() || name.len() >= NAME_MAX {
                return reply.error(Errno::ENAMETOOLONG);
            }
            let mut copy = [0u8; NAME_MAX];
            copy[..name.len()].copy_from_slice(name);
            fs.lookup(h.nodeid, &copy[..name.len()], reply)
        }
        op::GETATTR => fs.getattr(h.nodeid, reply),
        op::READLINK => fs.readlink(h.nodeid, reply),
        op::OPEN => match OpenIn::read_from_prefix(op_in) {
            Ok((o, _)) => fs.open(h.nodeid, o.flags as i32, reply),
            Err(_) => reply.error(Errno::EINVAL),
        },
        op::OPENDIR => fs.opendir(h.nodeid, reply),
        op::READ => match ReadIn::read_from_prefix(op_in) {
            Ok((r, _)) => fs.read(h.nodeid, r.fh, r.offset, r.size, reply),
            Err(_) => reply.error(Errno::EINVAL),
        },
        op::READDIR | op::READDIRPLUS => match ReadIn::read_from_prefix(op_in) {
            Ok((r, _)) if h.opcode == op::READDIR => fs.readdir(h.nodeid, r.offset, RingDir::new(reply, r.size)),
            Ok((r, _)) => fs.readdirplus(h.nodeid, r.offset, RingDir::new(reply, r.size)),
            Err(_) => reply.error(Errno::EINVAL),
        },
        op::RELEASE => match ReleaseIn::read_from_prefix(op_in) {
            Ok((r, _)) => fs.release(r.fh, reply),
            Err(_) => reply.error(Errno::EINVAL),
        },
        op::RELEASEDIR | op::DESTROY => reply.ok(),
        op::STATFS => fs.statfs(reply),
        op::ACCESS => match AccessIn::read_from_prefix(op_in) {
            Ok((a, _)) => fs.access(h.nodeid, a.mask as i32, reply),
            Err(_) => reply.error(Errno::EINVAL),
        },
        // A file here is no terminal (isatty asks) and has no ioctls.
        op::IOCTL => reply.error(Errno::ENOTTY),
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
        | op::TMPFILE => reply.error(Errno::EROFS),
        _ => reply.error(Errno::ENOSYS),
    }
}
