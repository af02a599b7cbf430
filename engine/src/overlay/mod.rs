//! A mount's writable overlay: what was changed over its base tree, kept
//! across crashes and remounts (part 2 of the lazy mount). This stop lands
//! its namespace; the FUSE write path on top of it is still to come.
//!
//! What it owns, per mount, under the mount's overlay directory:
//! - the namespace of changes (`namespace.rs`, one redb file): entries
//!   added or replaced, whiteouts of base entries removed, and the inodes
//!   the overlay made, with numbers that never change while the data dir
//!   lives (from OVERLAY_INO_BASE up; a base entry keeps its base number,
//!   also when it is moved or copied up);
//! - written contents as plain files, one per inode (so they can be
//!   passthrough backing files), which the caller writes and syncs.
//!
//! It never fetches a blob, never touches FUSE, and never evicts or
//! deletes a written file on its own: it is the user's data.
//!
//! Why redb for the namespace: ACID transactions with checksummed commit
//! slots (a crash leaves the last commit, never a torn one), reads of
//! only what is asked for when a mount starts again (no log to replay,
//! no rescan), and pure Rust (no C toolchain joins the build, as SQLite
//! would). Changes wait in memory and go to redb together, one durable
//! transaction per fsync (or per 1024 changes), never one per change or
//! per `write()`: one transaction per change measured 35 us without an
//! fsync, twice ext4's whole create-and-write of a small file.

pub mod error;
mod namespace;

pub use error::OverlayError;
pub use namespace::{Change, Inode, Kind, Namespace, OVERLAY_INO_BASE};
