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
//! Why redb for the namespace: every namespace change is one ACID
//! transaction (a rename is whole or absent, never half), commits that
//! need not be durable cost no fsync and become durable with the next
//! durable one (an fsync of a file or directory is one durable commit,
//! not one per `write()`), a crash leaves the last durable commit, and
//! reopening reads only what is asked for, with no replay of a log. It
//! is pure Rust, so no C toolchain joins the build (SQLite would).

pub mod error;
mod namespace;

pub use error::OverlayError;
pub use namespace::{Change, Inode, Kind, Namespace, OVERLAY_INO_BASE};
