//! The namespace's change log: each change, as the new state of every key
//! it set, appended to one file with one write(2) and no fsync. A killed
//! daemon's changes are all there (the page cache keeps them); an fsync
//! (`sync`) makes them durable against a power cut too. Replayed into the
//! namespace at open, then emptied once redb holds them.
//!
//! Record: `len u32 | crc32c u32 | payload`, little-endian; a record that
//! is short or fails its checksum ends the log (a torn last write after a
//! power cut), so what is replayed is always a prefix of the changes.
//! Replaying is idempotent: every item is a key's whole new state.
//!
//! It never interprets the states it carries (the namespace does).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// An `entries` value: (inode, kind); inode 0 is a whiteout.
pub(super) type RawEntry = (u64, u8);
/// An `inodes` value, owned: (kind, mode, links, target).
pub(super) type RawInode = (u8, u32, u32, Vec<u8>);

/// One key's new state (None: removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    Entry { dir: u64, name: Vec<u8>, value: Option<RawEntry> },
    Inode { ino: u64, value: Option<RawInode> },
    NextIno(u64),
}

/// Largest record replayed: a change sets a handful of keys, each with a
/// name of at most 255 bytes or a target of at most 4095.
const RECORD_MAX_BYTES: usize = 64 << 10;

/// Most of the log read back at open: 1024 changes (a flush's worth, with
/// room for twice that) of the largest record.
const LOG_MAX_BYTES: u64 = 2048 * RECORD_MAX_BYTES as u64;

/// See the module doc.
pub(super) struct ChangeLog {
    file: File,
    /// Appended to since the last sync.
    dirty: bool,
}

impl ChangeLog {
    /// Opens (creating) the log at `path`, and the changes it holds, in
    /// order.
    pub fn open(path: &Path) -> io::Result<(ChangeLog, Vec<Vec<Item>>)> {
        let file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path)?;
        // The log starts over every 1024 changes: more than that many
        // records of the largest size is not a log this wrote.
        let mut bytes = Vec::new();
        (&file).take(LOG_MAX_BYTES).read_to_end(&mut bytes)?;
        let mut changes = Vec::new();
        let mut at = 0;
        while let Some(header) = bytes.get(at..at + 8) {
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
            let Some(payload) = bytes.get(at + 8..at + 8 + len).filter(|_| len <= RECORD_MAX_BYTES) else { break };
            if crc32c::crc32c(payload) != crc {
                break;
            }
            let Some(items) = decode(payload) else { break };
            changes.push(items);
            at += 8 + len;
        }
        if at < bytes.len() {
            tracing::warn!(
                kept = at,
                dropped = bytes.len() - at,
                "the overlay's change log ends in a torn record; its changes before it are kept"
            );
        }
        Ok((ChangeLog { file, dirty: false }, changes))
    }

    /// Appends one change (one write).
    pub fn append(&mut self, items: &[Item]) -> io::Result<()> {
        let payload = encode(items);
        let mut record = Vec::with_capacity(8 + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.file.write_all(&record)?;
        self.dirty = true;
        Ok(())
    }

    /// Makes what was appended durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Empties the log (its changes are durable elsewhere now).
    pub fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.dirty = false;
        Ok(())
    }
}

fn encode(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Entry { dir, name, value } => {
                out.push(if value.is_some() { 1 } else { 2 });
                out.extend_from_slice(&dir.to_le_bytes());
                out.extend_from_slice(&(name.len() as u16).to_le_bytes());
                out.extend_from_slice(name);
                if let Some((ino, kind)) = value {
                    out.extend_from_slice(&ino.to_le_bytes());
                    out.push(*kind);
                }
            }
            Item::Inode { ino, value } => {
                out.push(if value.is_some() { 3 } else { 4 });
                out.extend_from_slice(&ino.to_le_bytes());
                if let Some((kind, mode, links, target)) = value {
                    out.push(*kind);
                    out.extend_from_slice(&mode.to_le_bytes());
                    out.extend_from_slice(&links.to_le_bytes());
                    out.extend_from_slice(&(target.len() as u32).to_le_bytes());
                    out.extend_from_slice(target);
                }
            }
            Item::NextIno(n) => {
                out.push(5);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    out
}

/// The items of a payload; None if it does not parse.
fn decode(mut b: &[u8]) -> Option<Vec<Item>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }
    fn u64_(b: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
    }
    fn u32_(b: &mut &[u8]) -> Option<u32> {
        Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
    }
    let mut items = Vec::new();
    while let Some(&tag) = b.first() {
        b = &b[1..];
        items.push(match tag {
            1 | 2 => {
                let dir = u64_(&mut b)?;
                let len = u16::from_le_bytes(take(&mut b, 2)?.try_into().ok()?) as usize;
                let name = take(&mut b, len)?.to_vec();
                let value = if tag == 1 { Some((u64_(&mut b)?, take(&mut b, 1)?[0])) } else { None };
                Item::Entry { dir, name, value }
            }
            3 | 4 => {
                let ino = u64_(&mut b)?;
                let value = if tag == 3 {
                    let kind = take(&mut b, 1)?[0];
                    let (mode, links) = (u32_(&mut b)?, u32_(&mut b)?);
                    let len = u32_(&mut b)? as usize;
                    Some((kind, mode, links, take(&mut b, len)?.to_vec()))
                } else {
                    None
                };
                Item::Inode { ino, value }
            }
            5 => Item::NextIno(u64_(&mut b)?),
            _ => return None,
        });
    }
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_ends_the_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log");
        let a = vec![
            Item::Entry { dir: 1, name: b"a\xff".to_vec(), value: Some((7, 1)) },
            Item::Inode { ino: 7, value: Some((1, 0o644, 1, b"t".to_vec())) },
            Item::NextIno(8),
        ];
        let b = vec![Item::Entry { dir: 1, name: b"a\xff".to_vec(), value: None }, Item::Inode { ino: 7, value: None }];
        {
            let (mut log, none) = ChangeLog::open(&path).expect("open");
            assert!(none.is_empty());
            log.append(&a).expect("append");
            log.append(&b).expect("append");
        }
        let whole = std::fs::read(&path).expect("read");
        assert_eq!(ChangeLog::open(&path).expect("open").1, vec![a.clone(), b.clone()]);
        // A power cut tore the last record: the first stays.
        std::fs::write(&path, &whole[..whole.len() - 3]).expect("tear");
        assert_eq!(ChangeLog::open(&path).expect("open").1, vec![a.clone()]);
        // A flipped byte fails the checksum.
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).expect("flip");
        assert_eq!(ChangeLog::open(&path).expect("open").1, vec![a]);
        let (mut log, _) = ChangeLog::open(&path).expect("open");
        log.clear().expect("clear");
        assert!(ChangeLog::open(&path).expect("open").1.is_empty());
    }
}
