//! One request from a ring entry: decoded into a [`Request`] that owns
//! what it needs (the entry's buffers are the reply's from then on), then
//! handed to the filesystem's operation (`crate::fs`) with a `RingReply`.
//! Every opcode the kernel may send over the ring is answered: writes go
//! to the same operations as over `/dev/fuse` (`crate::fs`); what it does
//! not serve gets ENOSYS, which the kernel remembers (getxattr, flush,
//! lseek: it stops sending them), or EOPNOTSUPP (xattrs set, fallocate).
//!
//! Every byte here comes from the kernel; lengths are checked against the
//! buffers before any slice is taken.

use super::abi::*;
use super::reply::{RingDir, RingReply};
use crate::answer::{done, EmptyAnswer, Fail};
use crate::fs::{Caller, NewAttrs, Shared};
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
    /// create, mknod, mkdir, symlink (`target`) of `name` in `parent`.
    Make {
        opcode: u32,
        parent: u64,
        name: Vec<u8>,
        target: Vec<u8>,
        mode: u32,
        caller: Caller,
    },
    Link {
        ino: u64,
        parent: u64,
        name: Vec<u8>,
    },
    Remove {
        parent: u64,
        name: Vec<u8>,
        dir: bool,
    },
    Rename {
        parent: u64,
        name: Vec<u8>,
        newparent: u64,
        newname: Vec<u8>,
        flags: u32,
    },
    Setattr {
        ino: u64,
        set: SetattrIn,
    },
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Fsync {
        ino: u64,
        datasync: bool,
        dir: bool,
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
            op::CREATE | op::MKNOD | op::MKDIR | op::SYMLINK => {
                let caller = Caller { uid: h.uid, gid: h.gid };
                let mode = match h.opcode {
                    op::CREATE => CreateIn::read_from_prefix(op_in).ok().map(|(c, _)| c.mode),
                    op::MKNOD => MknodIn::read_from_prefix(op_in).ok().map(|(m, _)| m.mode),
                    op::MKDIR => MkdirIn::read_from_prefix(op_in).ok().map(|(m, _)| m.mode),
                    _ => Some(0o777),
                };
                let Some(mode) = mode else { return malformed };
                let want = if h.opcode == op::SYMLINK { 2 } else { 1 };
                match names(payload, want) {
                    Ok(mut n) => {
                        let target = if want == 2 { n.pop().unwrap_or_default() } else { Vec::new() };
                        let name = n.pop().unwrap_or_default();
                        Request::Make { opcode: h.opcode, parent: ino, name, target, mode, caller }
                    }
                    Err(e) => Request::Refused(e),
                }
            }
            op::LINK => match (LinkIn::read_from_prefix(op_in), names(payload, 1)) {
                (Ok((l, _)), Ok(mut n)) => {
                    Request::Link { ino: l.oldnodeid, parent: ino, name: n.pop().unwrap_or_default() }
                }
                (Err(_), _) => malformed,
                (_, Err(e)) => Request::Refused(e),
            },
            op::UNLINK | op::RMDIR => match names(payload, 1) {
                Ok(mut n) => {
                    Request::Remove { parent: ino, name: n.pop().unwrap_or_default(), dir: h.opcode == op::RMDIR }
                }
                Err(e) => Request::Refused(e),
            },
            op::RENAME | op::RENAME2 => {
                let args = if h.opcode == op::RENAME2 {
                    Rename2In::read_from_prefix(op_in).map(|(r, _)| (r.newdir, r.flags)).ok()
                } else {
                    LinkIn::read_from_prefix(op_in).map(|(r, _)| (r.oldnodeid, 0)).ok()
                };
                let Some((newparent, flags)) = args else { return malformed };
                match names(payload, 2) {
                    Ok(mut n) => {
                        let newname = n.pop().unwrap_or_default();
                        let name = n.pop().unwrap_or_default();
                        Request::Rename { parent: ino, name, newparent, newname, flags }
                    }
                    Err(e) => Request::Refused(e),
                }
            }
            op::SETATTR => {
                SetattrIn::read_from_prefix(op_in).map_or(malformed, |(set, _)| Request::Setattr { ino, set })
            }
            op::WRITE => match WriteIn::read_from_prefix(op_in) {
                Ok((w, _)) if (w.size as usize) <= payload.len() => {
                    Request::Write { ino, offset: w.offset, data: payload[..w.size as usize].to_vec() }
                }
                _ => malformed,
            },
            op::FSYNC | op::FSYNCDIR => FsyncIn::read_from_prefix(op_in).map_or(malformed, |(f, _)| Request::Fsync {
                ino,
                datasync: f.fsync_flags & 1 != 0,
                dir: h.opcode == op::FSYNCDIR,
            }),
            // No extended attributes, no preallocation, no O_TMPFILE.
            op::SETXATTR | op::REMOVEXATTR | op::FALLOCATE | op::TMPFILE => Request::Refused(Errno::EOPNOTSUPP),
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
        Request::Make { opcode, parent, name, target, mode, caller } => match opcode {
            op::CREATE => fs.create(parent, &name, mode, caller, reply),
            op::MKNOD => fs.mknod(parent, &name, mode, caller, reply),
            op::MKDIR => fs.mkdir(parent, &name, mode, caller, reply),
            _ => fs.symlink(parent, &name, &target, caller, reply),
        },
        Request::Link { ino, parent, name } => fs.link(ino, parent, &name, reply),
        Request::Remove { parent, name, dir } => done(fs.remove(parent, &name, dir), reply),
        Request::Rename { parent, name, newparent, newname, flags } => {
            let flags = fuser::RenameFlags::from_bits_retain(flags);
            done(fs.rename((parent, &name), (newparent, &newname), flags), reply)
        }
        Request::Setattr { ino, set } => fs.setattr(ino, new_attrs(&set), reply),
        Request::Write { ino, offset, data } => fs.write(ino, offset, &data, reply),
        Request::Fsync { ino, datasync, dir } => done(if dir { fs.fsyncdir() } else { fs.fsync(ino, datasync) }, reply),
        Request::Ok => reply.ok(),
        Request::Refused(errno) => reply.error(errno),
    }
}

/// The `want` NUL-terminated names at the start of `payload`: each one not
/// empty and within NAME_MAX (a symlink's target, the second, within
/// PATH_MAX).
fn names(payload: &[u8], want: usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::with_capacity(want);
    let mut rest = payload;
    for i in 0..want {
        let end = rest.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
        let max = if i == 1 && want == 2 { crate::limits::SYMLINK_MAX_BYTES as usize } else { NAME_MAX - 1 };
        if end == 0 {
            return Err(Errno::EINVAL);
        }
        if end > max {
            return Err(Errno::ENAMETOOLONG);
        }
        out.push(rest[..end].to_vec());
        rest = &rest[end + 1..];
    }
    Ok(out)
}

/// What a setattr sets, from the kernel's FATTR_* bits.
fn new_attrs(s: &SetattrIn) -> NewAttrs {
    use fuser::TimeOrNow;
    let has = |bit: u32| s.valid & bit != 0;
    let time = |set: u32, now: u32, secs: u64, nsec: u32| {
        if has(now) {
            Some(TimeOrNow::Now)
        } else if has(set) {
            Some(TimeOrNow::SpecificTime(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nsec.min(999_999_999))))
        } else {
            None
        }
    };
    NewAttrs {
        mode: has(fattr::MODE).then_some(s.mode),
        uid: has(fattr::UID).then_some(s.uid),
        gid: has(fattr::GID).then_some(s.gid),
        size: has(fattr::SIZE).then_some(s.size),
        atime: time(fattr::ATIME, fattr::ATIME_NOW, s.atime, s.atimensec),
        mtime: time(fattr::MTIME, fattr::MTIME_NOW, s.mtime, s.mtimensec),
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
        assert_eq!(Request::decode(&header(op::WRITE), &[], &[]), Request::Refused(Errno::EINVAL), "no write_in");
        let write = WriteIn { fh: 0, offset: 8, size: 100, write_flags: 0, lock_owner: 0, flags: 0, padding: 0 };
        assert_eq!(
            Request::decode(&header(op::WRITE), write.as_bytes(), &[7u8; 10]),
            Request::Refused(Errno::EINVAL),
            "a size past the payload"
        );
        assert_eq!(
            Request::decode(&header(op::UNLINK), &[], b"no-nul"),
            Request::Refused(Errno::EINVAL),
            "a name without its NUL"
        );
        assert_eq!(Request::decode(&header(op::UNLINK), &[], &[b'a'; 300]), Request::Refused(Errno::EINVAL));
        let long = [&[b'a'; 300][..], b"\0"].concat();
        assert_eq!(Request::decode(&header(op::MKDIR), &[0u8; 8], &long), Request::Refused(Errno::ENAMETOOLONG));
        match Request::decode(&header(op::RENAME), &9u64.to_le_bytes(), b"old\0new\0") {
            Request::Rename { parent: 3, name, newparent: 9, newname, flags: 0 } => {
                assert_eq!((&name[..], &newname[..]), (&b"old"[..], &b"new"[..]))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Request::decode(&header(999), &[], &[]), Request::Refused(Errno::ENOSYS));
        let read = ReadIn { fh: 9, offset: 4096, size: 512, read_flags: 0, lock_owner: 0, flags: 0, padding: 0 };
        assert_eq!(
            Request::decode(&header(op::READ), read.as_bytes(), &[]),
            Request::Read { ino: 3, fh: 9, offset: 4096, size: 512 }
        );
    }
}
