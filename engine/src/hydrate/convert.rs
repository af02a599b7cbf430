//! A converted file of a mount (`ident`, `eol=crlf`): made from its blob,
//! already hydrated, and landed in the blob store under the git id of the
//! converted bytes, which the tree index names. The id is checked before
//! the bytes land, so a node that lied about a conversion, or a bug here,
//! shows as an error, never as wrong bytes.
//!
//! One conversion runs at a time per store (it holds the blob and what it
//! becomes in memory, up to `CHECKOUT_CONVERT_MAX_BYTES` and twice that),
//! and a file converted while the caller waited for the lock is not made
//! again. It never fetches: the caller hydrates the blob first.

use super::blobstore::BlobStore;
use super::error::HydrateError;
use super::want::{hex, Oid};
use crate::tree::checkout::{to_worktree, CONVERTED_MAX_BYTES};
use crate::tree::index::Checkout;
use std::sync::Mutex;

/// See the module doc.
#[derive(Default)]
pub struct Converter {
    one_at_a_time: Mutex<()>,
}

impl Converter {
    /// Lands file `oid` of `size` bytes, converted from `from.blob`, which
    /// must be local. Ok once `oid` is in the store.
    pub fn land(&self, store: &BlobStore, oid: &Oid, size: u64, from: &Checkout) -> Result<(), HydrateError> {
        let _one = self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
        if store.contains(oid) {
            return Ok(());
        }
        let corrupt = || HydrateError::Corrupt(format!("{} (converted from {})", hex(oid), hex(&from.blob)));
        if size > CONVERTED_MAX_BYTES {
            return Err(corrupt());
        }
        let source = store.open(&from.blob)?.ok_or_else(|| {
            HydrateError::Store(format!(
                "blob {} was evicted before it was converted; raise --cache-capacity",
                hex(&from.blob)
            ))
        })?;
        let mut blob = vec![0u8; from.blob_size as usize];
        match source.read_at(&mut blob, 0) {
            Ok(n) if n == blob.len() => {}
            Ok(_) => return Err(corrupt()),
            Err(e) => return Err(HydrateError::Store(format!("reading blob {}: {e}", hex(&from.blob)))),
        }
        let bytes = to_worktree(&blob, &from.blob, from.conv).ok_or_else(corrupt)?;
        drop(blob);
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &bytes)
            .map_err(|e| HydrateError::Store(format!("hashing a converted file: {e}")))?;
        if bytes.len() as u64 != size || id.as_bytes() != oid.as_slice() {
            return Err(corrupt());
        }
        store.land(&[(*oid, &bytes)])
    }
}
