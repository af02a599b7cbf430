//! Object names: validation, the canonical hash, and the owner shard.
//!
//! An object is named by a namespace and a key. Both are validated here and
//! nowhere else; a name that passes can never address a file outside the
//! data directory, because files are named by the name's 128-bit hash, not
//! by the name itself. The full name is kept inside the file's trailer, so a
//! hash collision is detected on read and treated as a miss.

use crate::limits::{KEY_MAX_BYTES, NAMESPACE_MAX_BYTES};
use xxhash_rust::xxh3::xxh3_128;

/// Why a namespace or key was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the {what} is empty")]
    Empty { what: &'static str },
    #[error("the {what} is {len} bytes long; the limit is {max}")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error("the {what} may not be `.` or `..`")]
    DotSegment { what: &'static str },
    #[error("the {what} contains {found:?}, which is not allowed{hint}")]
    BadChar { what: &'static str, found: char, hint: &'static str },
    #[error("the {what} is not valid UTF-8 after percent-decoding")]
    NotUtf8 { what: &'static str },
}

/// Index of a shard (one pinned executor per core).
pub type ShardId = u16;

/// A validated object name and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    namespace: String,
    key: String,
    hash: u128,
}

impl ObjectKey {
    /// Validates a namespace and key (already percent-decoded).
    ///
    /// Namespaces are 1..=128 bytes of `[A-Za-z0-9._-]`; keys are 1..=1024
    /// bytes of UTF-8 with no `/`, `\`, NUL or other control character, and
    /// neither is `.` or `..`.
    pub fn new(namespace: &str, key: &str) -> Result<Self, KeyError> {
        check_namespace(namespace)?;
        check_key(key)?;
        let hash = name_hash(namespace, key);
        Ok(Self { namespace: namespace.to_owned(), key: key.to_owned(), hash })
    }

    /// Validates percent-encoded path segments, as they come from a URL.
    pub fn from_encoded(namespace: &str, key: &str) -> Result<Self, KeyError> {
        let namespace = decode("namespace", namespace)?;
        let key = decode("key", key)?;
        Self::new(&namespace, &key)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The 128-bit name hash that names the object's files, locally and in S3.
    pub fn hash(&self) -> u128 {
        self.hash
    }

    /// The shard that owns this object among `nr_shards`.
    pub fn owner(&self, nr_shards: usize) -> ShardId {
        owner(self.hash, nr_shards)
    }
}

/// The hash of a name: xxh3-128 over `namespace \0 key`.
pub fn name_hash(namespace: &str, key: &str) -> u128 {
    let mut buf = Vec::with_capacity(namespace.len() + 1 + key.len());
    buf.extend_from_slice(namespace.as_bytes());
    buf.push(0);
    buf.extend_from_slice(key.as_bytes());
    xxh3_128(&buf)
}

/// The owner of a hash among `nr_shards`: jump consistent hash, so growing
/// the shard count from n to n+1 moves only 1/(n+1) of the objects.
pub fn owner(hash: u128, nr_shards: usize) -> ShardId {
    debug_assert!(nr_shards > 0 && nr_shards <= usize::from(ShardId::MAX));
    let mut key = (hash as u64) ^ ((hash >> 64) as u64);
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < nr_shards as i64 {
        b = j;
        key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
        j = ((b.wrapping_add(1) as f64) * ((1u64 << 31) as f64 / ((key >> 33).wrapping_add(1) as f64))) as i64;
    }
    b as ShardId
}

/// The hash as 32 lowercase hex digits: the object's file name.
pub fn hash_hex(hash: u128) -> String {
    format!("{hash:032x}")
}

/// Parses 32 hex digits back into a hash (used by recovery).
pub fn parse_hash_hex(name: &str) -> Option<u128> {
    if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    u128::from_str_radix(name, 16).ok()
}

fn check_namespace(ns: &str) -> Result<(), KeyError> {
    const WHAT: &str = "namespace";
    check_common(WHAT, ns, NAMESPACE_MAX_BYTES)?;
    match ns.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(found) => Err(KeyError::BadChar { what: WHAT, found, hint: " (use A-Z a-z 0-9 . _ -)" }),
        None => Ok(()),
    }
}

fn check_key(key: &str) -> Result<(), KeyError> {
    const WHAT: &str = "key";
    check_common(WHAT, key, KEY_MAX_BYTES)?;
    match key.chars().find(|c| c.is_control() || matches!(c, '/' | '\\')) {
        Some(found) => Err(KeyError::BadChar { what: WHAT, found, hint: " (no slashes or control characters)" }),
        None => Ok(()),
    }
}

fn check_common(what: &'static str, s: &str, max: usize) -> Result<(), KeyError> {
    if s.is_empty() {
        return Err(KeyError::Empty { what });
    }
    if s.len() > max {
        return Err(KeyError::TooLong { what, len: s.len(), max });
    }
    if s == "." || s == ".." {
        return Err(KeyError::DotSegment { what });
    }
    Ok(())
}

fn decode(what: &'static str, s: &str) -> Result<String, KeyError> {
    // Bound the work before decoding: an encoded name is at most 3x its bytes.
    if s.len() > 3 * KEY_MAX_BYTES {
        return Err(KeyError::TooLong { what, len: s.len(), max: KEY_MAX_BYTES });
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| KeyError::NotUtf8 { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        let k = ObjectKey::new("ci-cache", "linux-x86_64.tar.zst").expect("valid");
        assert_eq!(k.namespace(), "ci-cache");
        assert_eq!(k.hash(), name_hash("ci-cache", "linux-x86_64.tar.zst"));
        assert_ne!(k.hash(), name_hash("ci-cach", "elinux-x86_64.tar.zst"));
    }

    #[test]
    fn refuses_every_bad_shape() {
        let long = "k".repeat(KEY_MAX_BYTES + 1);
        for (ns, key) in [
            ("", "k"),
            ("ns", ""),
            ("ns", ".."),
            ("..", "k"),
            ("ns", "a/b"),
            ("ns", "a\\b"),
            ("ns", "a\nb"),
            ("ns", "a\0b"),
            ("n s", "k"),
            ("ns", long.as_str()),
        ] {
            assert!(ObjectKey::new(ns, key).is_err(), "{ns:?}/{key:?} must be refused");
        }
        assert_eq!(ObjectKey::from_encoded("ns", "%ff%fe"), Err(KeyError::NotUtf8 { what: "key" }));
        assert!(matches!(ObjectKey::from_encoded("ns", "a%2Fb"), Err(KeyError::BadChar { found: '/', .. })));
        assert!(matches!(ObjectKey::from_encoded("ns", "%2e%2e"), Err(KeyError::DotSegment { .. })));
    }

    #[test]
    fn owner_is_stable_and_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            let h = name_hash("ns", &i.to_string());
            let o = owner(h, 4);
            assert_eq!(o, owner(h, 4));
            counts[usize::from(o)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "skewed: {counts:?}");
        // Growing 4 -> 5 shards moves only keys onto the new shard.
        for i in 0..1000u32 {
            let h = name_hash("ns", &i.to_string());
            let (a, b) = (owner(h, 4), owner(h, 5));
            assert!(a == b || b == 4);
        }
    }

    #[test]
    fn hex_round_trips() {
        let h = name_hash("a", "b");
        assert_eq!(parse_hash_hex(&hash_hex(h)), Some(h));
        assert_eq!(parse_hash_hex("xyz"), None);
    }
}
