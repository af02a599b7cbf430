//! A mount's writable overlay: what was changed over its base tree, kept
//! across crashes and remounts (part 2 of the lazy mount). The FUSE write
//! path on top of it is `trove_fusefront::fs`.
//!
//! What it owns, per mount, under the mount's overlay directory:
//! - the namespace of changes (`namespace.rs`, one redb file): entries
//!   added or replaced, whiteouts of base entries removed, and the inodes
//!   the overlay made, with numbers that never change while the data dir
//!   lives (from OVERLAY_INO_BASE up; a base entry keeps its base number,
//!   also when it is moved or copied up);
//! - written contents as plain objects, one per inode (`contents.rs`; so
//!   a file can be a passthrough backing file), which the caller writes;
//! - the order those reach the disk in, and the base it is over
//!   (`layer.rs`).
//!
//! It never fetches a blob, never touches FUSE, and never evicts or
//! deletes a written file on its own: it is the user's data.
//!
//! Why redb for the namespace: ACID transactions with checksummed commit
//! slots (a crash leaves the last commit, never a torn one), reads of
//! only what is asked for when a mount starts again (no full rescan),
//! and pure Rust (no C toolchain joins the build, as SQLite would).
//! Changes are appended to a small change log as they are made (one
//! write, no fsync: a killed daemon loses none), an fsync is one
//! fdatasync of that log, and every 1024 changes they go to redb in one
//! transaction and the log starts over: never one redb transaction per
//! change or per `write()` (one per change measured 35 us without an
//! fsync, twice ext4's whole create-and-write of a small file), and the
//! log never grows past 1024 changes.

mod changelog;
mod contents;
pub mod error;
mod layer;
mod namespace;

pub use contents::{Contents, Made};
pub use error::OverlayError;
pub use layer::{dir_for, path_id, Overlay};
pub use namespace::{Change, Inode, Kind, Namespace, OVERLAY_INO_BASE};
