//! What an operation answers, apart from how the answer reaches the
//! kernel: one trait per kind of reply, implemented by fuser's replies
//! (the `/dev/fuse` transport) and by a ring entry's (`ring`). The
//! filesystem's operations (`fs`) are written against these traits only,
//! so both transports run the same code.
//!
//! It owns no state and never encodes a reply itself.

use fuser::{BackingId, Errno, FileAttr, FileType, FopenFlags};
use std::time::Duration;
use trove_engine::hydrate::blobstore::LocalBlob;

/// Every reply may instead be an error.
pub trait Fail: Send + 'static {
    fn error(self, errno: Errno);
}

/// Bytes: a read, a symlink target.
pub trait DataAnswer: Fail + Sized {
    fn data(self, bytes: &[u8]);

    /// Answers with up to `size` bytes of `blob` at `offset` (short at
    /// its end, capped at READ_MAX_BYTES). A transport whose reply buffer
    /// is at hand reads straight into it.
    fn pread(self, blob: &LocalBlob, offset: u64, size: u32) {
        let mut buf = vec![0u8; size.min(crate::limits::READ_MAX_BYTES) as usize];
        match blob.read_at(&mut buf, offset) {
            Ok(got) => self.data(&buf[..got]),
            Err(_) => self.error(Errno::EIO),
        }
    }
}

/// A lookup's entry (inode 0: a negative entry the kernel may keep).
/// `ttl` is how long the attributes may be kept; the name itself is kept
/// for the base tree's TTL (names change only through this kernel, which
/// keeps its dentries right).
pub trait EntryAnswer: Fail {
    fn entry(self, ttl: &Duration, attr: &FileAttr);
}

pub trait AttrAnswer: Fail {
    fn attr(self, ttl: &Duration, attr: &FileAttr);
}

/// An open's handle, or a passthrough open on a backing file.
pub trait OpenAnswer: Fail {
    fn opened(self, fh: u64, flags: FopenFlags);
    /// Registers `file` with the kernel as a passthrough backing file. A
    /// transport that cannot says so with `Unsupported`.
    fn open_backing(&self, file: &std::fs::File) -> std::io::Result<BackingId>;
    fn opened_passthrough(self, fh: u64, flags: FopenFlags, backing: &BackingId);
}

pub trait EmptyAnswer: Fail {
    fn ok(self);
}

/// Answers an operation that returns nothing: ok, or its error.
pub fn done(r: Result<(), Errno>, reply: impl EmptyAnswer) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// A create's entry and open: no handle (reads and writes name the
/// inode), the attributes kept `ttl`.
pub trait CreateAnswer: Fail {
    fn created(self, ttl: &Duration, attr: &FileAttr);
}

/// How many bytes a write took.
pub trait WriteAnswer: Fail {
    fn written(self, size: u32);
}

/// `statfs`: the data dir's disk.
pub trait StatfsAnswer: Fail {
    fn statfs(self, v: &rustix::fs::StatVfs);
}

/// A listing, one entry at a time; `add` says true once the reply is full.
pub trait DirAnswer: Fail {
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &[u8]) -> bool;
    fn ok(self);
}

/// A listing with each entry's attributes (readdirplus).
pub trait DirPlusAnswer: Fail {
    fn add(&mut self, offset: u64, name: &[u8], ttl: &Duration, attr: &FileAttr) -> bool;
    fn ok(self);
}

mod dev_fuse {
    //! fuser's replies: the `/dev/fuse` transport.

    use super::*;
    use fuser::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    macro_rules! fail {
        ($($t:ty),*) => {$(
            impl Fail for $t {
                fn error(self, errno: Errno) {
                    <$t>::error(self, errno)
                }
            }
        )*};
    }
    fail!(
        ReplyData,
        ReplyEntry,
        ReplyAttr,
        ReplyOpen,
        ReplyEmpty,
        ReplyStatfs,
        ReplyDirectory,
        ReplyDirectoryPlus,
        ReplyWrite,
        ReplyCreate
    );

    impl DataAnswer for ReplyData {
        fn data(self, bytes: &[u8]) {
            ReplyData::data(self, bytes)
        }
    }

    impl EntryAnswer for ReplyEntry {
        fn entry(self, ttl: &Duration, attr: &FileAttr) {
            ReplyEntry::entry_with_ttls(self, ttl, &crate::limits::BASE_TREE_TTL, attr, Generation(0))
        }
    }

    impl AttrAnswer for ReplyAttr {
        fn attr(self, ttl: &Duration, attr: &FileAttr) {
            ReplyAttr::attr(self, ttl, attr)
        }
    }

    impl OpenAnswer for ReplyOpen {
        fn opened(self, fh: u64, flags: FopenFlags) {
            ReplyOpen::opened(self, FileHandle(fh), flags)
        }
        fn open_backing(&self, file: &std::fs::File) -> std::io::Result<BackingId> {
            ReplyOpen::open_backing(self, file)
        }
        fn opened_passthrough(self, fh: u64, flags: FopenFlags, backing: &BackingId) {
            ReplyOpen::opened_passthrough(self, FileHandle(fh), flags, backing)
        }
    }

    impl EmptyAnswer for ReplyEmpty {
        fn ok(self) {
            ReplyEmpty::ok(self)
        }
    }

    impl CreateAnswer for ReplyCreate {
        fn created(self, ttl: &Duration, attr: &FileAttr) {
            ReplyCreate::created(self, ttl, attr, Generation(0), FileHandle(0), FopenFlags::empty())
        }
    }

    impl WriteAnswer for ReplyWrite {
        fn written(self, size: u32) {
            ReplyWrite::written(self, size)
        }
    }

    impl StatfsAnswer for ReplyStatfs {
        fn statfs(self, v: &rustix::fs::StatVfs) {
            ReplyStatfs::statfs(
                self,
                v.f_blocks,
                v.f_bfree,
                v.f_bavail,
                v.f_files,
                v.f_ffree,
                v.f_bsize as u32,
                255,
                v.f_frsize as u32,
            )
        }
    }

    impl DirAnswer for ReplyDirectory {
        fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &[u8]) -> bool {
            ReplyDirectory::add(self, INodeNo(ino), offset, kind, OsStr::from_bytes(name))
        }
        fn ok(self) {
            ReplyDirectory::ok(self)
        }
    }

    impl DirPlusAnswer for ReplyDirectoryPlus {
        fn add(&mut self, offset: u64, name: &[u8], ttl: &Duration, attr: &FileAttr) -> bool {
            ReplyDirectoryPlus::add(self, attr.ino, offset, OsStr::from_bytes(name), ttl, attr, Generation(0))
        }
        fn ok(self) {
            ReplyDirectoryPlus::ok(self)
        }
    }
}
