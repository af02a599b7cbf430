//! Trees and blobs of a mirror, read in-process with gix: what the lazy
//! mount (`trove mount`) needs of a node.
//!
//! `index.rs` is the tree index format (a commit's whole tree: path, kind,
//! oid and size of every entry), written by the node and read, as hostile
//! input, by the mount. `walk.rs` builds an index from a mirror without
//! inflating a blob (sizes come from object headers) except those whose
//! attributes (`attributes.rs`) ask checkout to convert them
//! (`checkout.rs`: `ident`, `eol=crlf`), whose converted size and id the
//! index carries. `blobs.rs` is the
//! framed blob stream of `POST .../blobs` and the checked read of one blob;
//! a blob too large to read whole streams from its pack (`bigblob.rs`) or,
//! stored as a delta or loose, from `git cat-file` (`gitblob.rs`, the one
//! place this module runs git). Making an index once and keeping it in the
//! tiers is the tree-indexes service's (`crate::indexes`). This module
//! keeps no state and never speaks HTTP.

pub mod attributes;
pub mod bigblob;
pub mod blob_cache;
pub mod blob_memory;
pub mod blobs;
pub mod checkout;
pub mod gitblob;
pub mod index;
pub mod walk;

/// Why a tree or blob could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TreeError {
    #[error("{0} is not a commit id (40 hex digits)")]
    BadCommit(String),
    #[error("commit {0} is not in the mirror")]
    UnknownCommit(String),
    #[error("the mirror could not be read: {0}")]
    Mirror(String),
    #[error("the tree index is invalid: {0}")]
    BadIndex(String),
    #[error("the tree has more than {0} entries; trove mounts trees up to that size")]
    TooManyEntries(usize),
    #[error("the tree's paths take more than {0} bytes; trove mounts trees up to that size")]
    PathBytes(u64),
    #[error("only SHA-1 repositories are served as trees")]
    Sha256,
}

/// The id of the empty blob (`git hash-object /dev/null`).
pub const EMPTY_BLOB: [u8; 20] = [
    0xe6, 0x9d, 0xe2, 0x9b, 0xb2, 0xd1, 0xd6, 0x43, 0x4b, 0x8b, 0x29, 0xae, 0x77, 0x5a, 0xd8, 0xc2, 0xe4, 0x8c, 0x53,
    0x91,
];

/// 40 hex digits to an object id, or None.
pub fn parse_oid(hex: &str) -> Option<[u8; 20]> {
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// An object id as 40 lowercase hex digits.
pub fn oid_hex(oid: &[u8; 20]) -> String {
    oid.iter().map(|b| format!("{b:02x}")).collect()
}
