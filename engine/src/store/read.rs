//! Reading sealed objects: open, check the trailer, stream verified blocks.
//!
//! Any shard may read any sealed file: this is what lets a warm hit be
//! served by the shard that holds the connection, with no cross-core hop.
//! Every block is checked against its CRC32C before a byte of it is
//! handed out; a mismatch ends the stream with [`EngineError::Corrupt`], so
//! corrupt bytes are never served. This module never changes a file: the
//! caller reports a corrupt one to its owner shard, which removes it only
//! if it is still the file that was read (a newer version may have been
//! published over it meanwhile). Reads go through
//! io_uring with O_DIRECT, READ_AHEAD_UNITS at a time; a unit starts at 1 MiB
//! and doubles per read up to 4 MiB, so a short range stays cheap and a long
//! stream issues the large requests the disk streams best. A stream holds at
//! most READ_AHEAD_UNITS units in memory.
//!
//! A long range (at least MAPPED_MIN_BYTES) of a sealed file that is not
//! landing goes through the page cache instead (`mapped.rs`): each unit is
//! checked on the shard's mapper thread and sent with `sendfile`, with no
//! copy through user space.

use crate::error::EngineError;
use crate::limits::{
    ALIGN_BYTES, BLOCK_BYTES, LANDING_POLL_INTERVAL, MAPPED_MIN_BYTES, READ_AHEAD_UNITS, READ_UNIT_BLOCKS,
    READ_UNIT_MAX_BLOCKS, SMALL_FILE_BYTES,
};
use crate::store::format::{self, ObjectMeta};
use crate::store::hot::HotObject;
use crate::store::landing::{Landing, LandingState};
use crate::store::mapped::{self, MappedUnit};
use crate::store::mapper;
use crate::store::open::{len_of, open_dma};
use bytes::Buf;
use futures_lite::Stream;
use glommio::io::{DmaFile, ReadResult};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// Bytes of a sealed file: a DMA read buffer, a memory-tier copy, or a
/// checked page-cache mapping (sent with `sendfile`).
#[derive(Clone)]
enum FileBytes {
    Dma(ReadResult),
    Heap(bytes::Bytes),
    Mapped(Rc<MappedUnit>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Dma(b) => b,
            FileBytes::Heap(b) => b,
            FileBytes::Mapped(m) => m,
        }
    }
}

/// A slice of object data straight from the buffer it was read into (no copy).
pub struct DataChunk {
    buf: FileBytes,
    pos: usize,
    end: usize,
}

impl DataChunk {
    pub fn len(&self) -> usize {
        self.end - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.end
    }
}

impl Buf for DataChunk {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn chunk(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining(), "advance past the end of a chunk");
        self.pos += cnt;
    }
}

/// An open object: its trailer is checked, its data not yet read.
pub struct SealedObject {
    /// None when the whole file is in `whole` (read on open, or a memory hit).
    file: Option<Rc<DmaFile>>,
    /// Empty for a memory-tier copy: it is never read from disk, and its
    /// bytes were checked when they were cached.
    path: PathBuf,
    pub meta: ObjectMeta,
    /// The whole file of a small object: read on open (`Dma`, checked as it
    /// is streamed) or a memory-tier copy (`Heap`, checked already).
    whole: Option<FileBytes>,
    /// Set while the file is still landing from the remote tier.
    landing: Option<Arc<Landing>>,
    /// For a local file: the object's change counter, read before the file
    /// was opened (store/versions.rs). Its owner drops a file found corrupt
    /// or expired only while the counter still says this.
    pub(crate) seen: Option<u64>,
}

impl SealedObject {
    /// Opens the sealed file at `path`; `Ok(None)` when there is none.
    /// A file that fails its trailer checks is reported corrupt (and left
    /// where it is).
    pub async fn open(path: &Path) -> Result<Option<Self>, EngineError> {
        let file = match open_dma(path).await {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == ErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(EngineError::io("opening", path, e));
            }
        };
        let file_len = match len_of(&file) {
            Ok(len) => len,
            Err(e) => {
                let _ = file.close().await;
                return Err(EngineError::io("sizing", path, e));
            }
        };
        let checked = Self::read_trailer(&file, path, file_len).await;
        match checked {
            Ok((meta, Some(whole))) => {
                // Read whole: the descriptor is no longer needed.
                let _ = file.close().await;
                Ok(Some(Self {
                    file: None,
                    path: path.to_owned(),
                    meta,
                    whole: Some(FileBytes::Dma(whole)),
                    landing: None,
                    seen: None,
                }))
            }
            Ok((meta, None)) => Ok(Some(Self {
                file: Some(Rc::new(file)),
                path: path.to_owned(),
                meta,
                whole: None,
                landing: None,
                seen: None,
            })),
            Err(e) => {
                let _ = file.close().await;
                Err(e)
            }
        }
    }

    /// Opens a file that is landing (or has just landed) from the remote tier.
    pub async fn open_landing(landing: Arc<Landing>) -> Result<Self, EngineError> {
        let file = match open_dma(&landing.tmp_path).await {
            Ok(f) => f,
            // Sealed and renamed between the reply and this open.
            Err(_) => {
                open_dma(&landing.final_path).await.map_err(|e| EngineError::io("opening", &landing.final_path, e))?
            }
        };
        Ok(Self {
            file: Some(Rc::new(file)),
            path: landing.final_path.clone(),
            meta: landing.meta.clone(),
            whole: None,
            landing: Some(landing),
            seen: None,
        })
    }

    /// An object served from the memory tier.
    pub fn from_hot(hot: HotObject) -> Self {
        Self {
            file: None,
            path: PathBuf::new(),
            meta: hot.meta,
            whole: Some(FileBytes::Heap(hot.whole)),
            landing: None,
            seen: None,
        }
    }

    /// The whole file, if it was read whole from disk and every block of
    /// its data matches its sum: what the memory tier may keep.
    pub fn verified_whole_file(&self) -> Option<&[u8]> {
        let Some(FileBytes::Dma(all)) = &self.whole else { return None };
        let data = all.get(..self.meta.data_len as usize)?;
        let intact = data
            .chunks(BLOCK_BYTES as usize)
            .enumerate()
            .all(|(block, bytes)| format::verify_block(&self.meta, block as u64, bytes).is_ok());
        intact.then_some(&all[..])
    }

    /// The data bytes `[start, end)` of a memory-tier copy, without a copy:
    /// they were checked when cached. None for anything read from disk.
    pub fn memory_bytes(&self, start: u64, end: u64) -> Option<bytes::Bytes> {
        let Some(FileBytes::Heap(all)) = &self.whole else { return None };
        let end = end.min(self.meta.data_len) as usize;
        Some(all.slice((start as usize).min(end)..end))
    }

    async fn read_trailer(
        file: &DmaFile,
        path: &Path,
        file_len: u64,
    ) -> Result<(ObjectMeta, Option<ReadResult>), EngineError> {
        let corrupt = |what: String| EngineError::Corrupt { path: path.to_owned(), what };
        if file_len < ALIGN_BYTES || !file_len.is_multiple_of(ALIGN_BYTES) {
            return Err(corrupt(format!("length {file_len} is not a sealed file's")));
        }
        if file_len <= SMALL_FILE_BYTES {
            let all = file
                .read_at_aligned(0, file_len as usize)
                .await
                .map_err(|e| EngineError::glommio("reading", path, e))?;
            if all.len() as u64 != file_len {
                return Err(corrupt("short read".into()));
            }
            let tlen = format::decode_tail(&all, file_len).map_err(|e| corrupt(e.to_string()))?;
            let meta = format::decode_trailer(&all[(file_len - tlen) as usize..], file_len)
                .map_err(|e| corrupt(e.to_string()))?;
            return Ok((meta, Some(all)));
        }
        let last = file
            .read_at_aligned(file_len - ALIGN_BYTES, ALIGN_BYTES as usize)
            .await
            .map_err(|e| EngineError::glommio("reading", path, e))?;
        let tlen = format::decode_tail(&last, file_len).map_err(|e| corrupt(e.to_string()))?;
        let trailer = if tlen == ALIGN_BYTES {
            last
        } else {
            file.read_at_aligned(file_len - tlen, tlen as usize)
                .await
                .map_err(|e| EngineError::glommio("reading", path, e))?
        };
        let meta = format::decode_trailer(&trailer, file_len).map_err(|e| corrupt(e.to_string()))?;
        Ok((meta, None))
    }

    /// True while this reads a file still landing from the remote tier.
    pub fn is_landing(&self) -> bool {
        self.landing.is_some()
    }

    /// The data bytes `[start, end)` as verified chunks. `end` is clamped to
    /// the data length.
    pub fn stream(self, start: u64, end: u64) -> impl Stream<Item = Result<DataChunk, EngineError>> {
        let end = end.min(self.meta.data_len);
        let first_block = start / BLOCK_BYTES;
        // Following bytes that are still arriving from S3: the first read
        // waits for one block, not a whole unit, so the first byte goes out
        // as soon as one verified block has landed.
        let landing = self.landing.as_ref().is_some_and(|l| l.state() == LandingState::Running);
        let plain = match &self.file {
            Some(f) if self.landing.is_none() && end.saturating_sub(start) >= MAPPED_MIN_BYTES => reopen_plain(f),
            _ => None,
        };
        let state = StreamState {
            obj: Rc::new(self),
            start,
            end,
            next_read: first_block,
            next_yield: first_block,
            unit_blocks: if landing { 1 } else { READ_UNIT_BLOCKS },
            current: None,
            pending: VecDeque::new(),
            failed: false,
            plain,
        };
        futures_lite::stream::unfold(state, |mut st| async move {
            let item = st.next().await?;
            Some((item, st))
        })
    }
}

/// One read unit in flight.
type UnitRead = glommio::Task<Result<FileBytes, EngineError>>;

struct StreamState {
    obj: Rc<SealedObject>,
    start: u64,
    end: u64,
    next_read: u64,
    next_yield: u64,
    /// Blocks the next read unit covers; grows to READ_UNIT_MAX_BLOCKS.
    unit_blocks: u64,
    /// The read unit holding `next_yield`: its first block, its block count
    /// and its bytes.
    current: Option<(u64, u64, FileBytes)>,
    /// Read units in flight, in order, with their first block and block count.
    pending: VecDeque<(u64, u64, UnitRead)>,
    failed: bool,
    /// The same file without O_DIRECT, when this stream goes through the
    /// page cache.
    plain: Option<Arc<std::fs::File>>,
}

impl StreamState {
    async fn next(&mut self) -> Option<Result<DataChunk, EngineError>> {
        if self.failed || self.start >= self.end {
            return None;
        }
        let block = self.next_yield;
        let block_start = block * BLOCK_BYTES;
        if block_start >= self.end {
            return None;
        }
        let block_len = (self.obj.meta.data_len - block_start).min(BLOCK_BYTES);
        // For a small object the buffer is the whole file; else it is the
        // read unit that holds this block.
        let (buf, at) = match &self.obj.whole {
            Some(all) => (all.clone(), block_start as usize),
            None => {
                if !matches!(&self.current, Some((first, blocks, _)) if block < first + blocks) {
                    self.fill_read_ahead();
                    let (first, blocks, task) =
                        self.pending.pop_front().expect("read-ahead keeps the next unit queued");
                    debug_assert_eq!(first, block);
                    match task.await {
                        Ok(b) => self.current = Some((first, blocks, b)),
                        Err(e) => {
                            self.failed = true;
                            return Some(Err(e));
                        }
                    }
                }
                let (first, _, unit) = self.current.as_ref().expect("set above");
                (unit.clone(), ((block - first) * BLOCK_BYTES) as usize)
            }
        };
        if buf.len() < at + block_len as usize {
            self.failed = true;
            return Some(Err(self.corrupt(format!("block {block} is short"))));
        }
        let verified = match &buf {
            FileBytes::Mapped(_) => Ok(()), // checked whole on the mapper thread
            _ => format::verify_block(&self.obj.meta, block, &buf[at..at + block_len as usize]),
        };
        if let Err(e) = verified {
            self.failed = true;
            return Some(Err(self.corrupt(e.to_string())));
        }
        self.next_yield += 1;
        let from = self.start.max(block_start) - block_start;
        let to = self.end.min(block_start + block_len) - block_start;
        Some(Ok(DataChunk { buf, pos: at + from as usize, end: at + to as usize }))
    }

    fn fill_read_ahead(&mut self) {
        let last_block = (self.end - 1) / BLOCK_BYTES;
        while self.pending.len() < READ_AHEAD_UNITS && self.next_read <= last_block {
            let first = self.next_read;
            let blocks = self.unit_blocks.min(last_block + 1 - first);
            self.unit_blocks = (self.unit_blocks * 2).min(READ_UNIT_MAX_BLOCKS);
            let pos = first * BLOCK_BYTES;
            let len = format::align_up((self.obj.meta.data_len - pos).min(blocks * BLOCK_BYTES));
            let obj = self.obj.clone();
            let task = match &self.plain {
                Some(plain) => {
                    let data = (self.obj.meta.data_len - pos).min(blocks * BLOCK_BYTES) as usize;
                    glommio::spawn_local(map_unit(obj, plain.clone(), first, data))
                }
                None => glommio::spawn_local(async move {
                    if let Some(landing) = &obj.landing {
                        wait_landed(landing, pos + len).await?;
                    }
                    let file = obj.file.as_ref().expect("objects not read whole keep their file open");
                    file.read_at_aligned(pos, len as usize)
                        .await
                        .map(FileBytes::Dma)
                        .map_err(|e| EngineError::glommio("reading", &obj.path, e))
                }),
            };
            self.pending.push_back((first, blocks, task));
            self.next_read += blocks;
        }
    }

    fn corrupt(&self, what: String) -> EngineError {
        tracing::error!(path = %self.obj.path.display(), %what, "checksum mismatch; the object is dropped");
        EngineError::Corrupt { path: self.obj.path.clone(), what }
    }
}

/// The same open file without O_DIRECT, for a stream through the page
/// cache; None (the stream stays on O_DIRECT) where that cannot be had.
/// Opening through /proc reaches the very inode, even if it was unlinked
/// since, and touches no disk.
fn reopen_plain(file: &DmaFile) -> Option<Arc<std::fs::File>> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    std::fs::File::open(format!("/proc/self/fd/{fd}")).ok().map(Arc::new)
}

/// Maps, locks and checks one unit on the shard's mapper thread
/// (mapper.rs), then takes it onto this shard.
async fn map_unit(
    obj: Rc<SealedObject>,
    plain: Arc<std::fs::File>,
    first: u64,
    len: usize,
) -> Result<FileBytes, EngineError> {
    match mapper::map_verified(plain, first * BLOCK_BYTES, len, first, obj.meta.block_sums.clone()).await {
        Ok(unit) => Ok(FileBytes::Mapped(Rc::new(MappedUnit::adopt(unit)))),
        Err(mapped::MapError::Map(e)) => Err(EngineError::io("mapping", &obj.path, e)),
        Err(mapped::MapError::Checksum(e)) => {
            tracing::error!(path = %obj.path.display(), what = %e, "checksum mismatch; the object is dropped");
            Err(EngineError::Corrupt { path: obj.path.clone(), what: e.to_string() })
        }
    }
}

/// Waits until `landing` has written `need` bytes, or fails.
async fn wait_landed(landing: &Landing, need: u64) -> Result<(), EngineError> {
    let need = need.min(landing.file_len);
    loop {
        if landing.landed() >= need {
            return Ok(());
        }
        match landing.state() {
            LandingState::Sealed => return Ok(()),
            LandingState::Failed => {
                return Err(EngineError::Io {
                    op: "following remote fetch of",
                    path: landing.final_path.clone(),
                    source: std::io::Error::other("the remote fetch failed mid-stream"),
                })
            }
            LandingState::Running => glommio::timer::sleep(LANDING_POLL_INTERVAL).await,
        }
    }
}
