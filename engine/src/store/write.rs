//! Streaming writer of one sealed object file.
//!
//! Bytes are appended through aligned DMA buffers (O_DIRECT, io_uring) with
//! a bounded number of writes in flight, while each 256 KiB block is
//! checksummed (CRC32C).
//! `finish` pads, appends the trailer and fdatasyncs: only then may the file
//! be published (renamed into place) by the owner shard. Until then it lives
//! under a shard's `tmp/`, which recovery wipes, so a crash never leaves a
//! partial object where a reader can see it. Memory held: at most
//! (WRITE_BEHIND + 1) x WRITE_CHUNK_BYTES, whatever the object's size.

use crate::error::EngineError;
use crate::limits::{ALIGN_BYTES, BLOCK_BYTES, WRITE_BEHIND, WRITE_CHUNK_BYTES};
use crate::store::format::{self, etag_of, ObjectMeta};
use glommio::io::{DmaBuffer, DmaFile};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

/// An object file being written; see the module doc.
pub struct ObjectWriter {
    file: Rc<DmaFile>,
    path: PathBuf,
    buf: DmaBuffer,
    buf_used: usize,
    /// File offset at which `buf` starts.
    buf_pos: u64,
    in_flight: VecDeque<glommio::Task<glommio::Result<usize, ()>>>,
    data_len: u64,
    max_data_len: u64,
    /// CRC32C of the current block so far.
    block_crc: u32,
    block_fill: u64,
    block_sums: Vec<u64>,
    done: bool,
}

/// A written, fdatasync'd file, ready to be published.
pub struct SealedTmp {
    pub path: PathBuf,
    pub meta: ObjectMeta,
    pub file_len: u64,
}

impl ObjectWriter {
    /// Creates the file at `path` (in a `tmp/` dir). Objects longer than
    /// `max_data_len` are refused while they stream in.
    pub async fn create(path: PathBuf, max_data_len: u64) -> Result<Self, EngineError> {
        let file = DmaFile::create(&path).await.map_err(|e| EngineError::glommio("creating", &path, e))?;
        let buf = file.alloc_dma_buffer(WRITE_CHUNK_BYTES);
        Ok(Self {
            file: Rc::new(file),
            path,
            buf,
            buf_used: 0,
            buf_pos: 0,
            in_flight: VecDeque::new(),
            data_len: 0,
            max_data_len,
            block_crc: 0,
            block_fill: 0,
            block_sums: Vec::new(),
            done: false,
        })
    }

    /// Appends object data.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), EngineError> {
        let new_len = self.data_len + data.len() as u64;
        if new_len > self.max_data_len {
            return Err(EngineError::TooLarge { len: new_len, max: self.max_data_len });
        }
        self.data_len = new_len;
        while !data.is_empty() {
            // Hash up to the end of the current block, then copy.
            let n = data.len().min((BLOCK_BYTES - self.block_fill) as usize);
            let (head, rest) = data.split_at(n);
            self.block_crc = crc32c::crc32c_append(self.block_crc, head);
            self.block_fill += n as u64;
            if self.block_fill == BLOCK_BYTES {
                self.close_block();
            }
            self.append_raw(head).await?;
            data = rest;
        }
        Ok(())
    }

    fn close_block(&mut self) {
        self.block_sums.push(u64::from(self.block_crc));
        self.block_crc = 0;
        self.block_fill = 0;
    }

    async fn append_raw(&mut self, mut data: &[u8]) -> Result<(), EngineError> {
        while !data.is_empty() {
            let n = data.len().min(WRITE_CHUNK_BYTES - self.buf_used);
            self.buf.as_bytes_mut()[self.buf_used..self.buf_used + n].copy_from_slice(&data[..n]);
            self.buf_used += n;
            data = &data[n..];
            if self.buf_used == WRITE_CHUNK_BYTES {
                self.submit_buffer().await?;
            }
        }
        Ok(())
    }

    /// Sends the current buffer (whole, aligned) to disk, waiting first if
    /// WRITE_BEHIND writes are already in flight.
    async fn submit_buffer(&mut self) -> Result<(), EngineError> {
        debug_assert_eq!(self.buf_used as u64 % ALIGN_BYTES, 0);
        while self.in_flight.len() >= WRITE_BEHIND {
            self.wait_oldest().await?;
        }
        let len = self.buf_used;
        let mut full = std::mem::replace(&mut self.buf, self.file.alloc_dma_buffer(WRITE_CHUNK_BYTES));
        full.trim_to_size(len);
        let file = self.file.clone();
        let pos = self.buf_pos;
        self.in_flight.push_back(glommio::spawn_local(async move { file.write_at(full, pos).await }));
        self.buf_pos += len as u64;
        self.buf_used = 0;
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), EngineError> {
        if let Some(task) = self.in_flight.pop_front() {
            task.await.map_err(|e| EngineError::glommio("writing", &self.path, e))?;
        }
        Ok(())
    }

    /// Pads, writes the trailer, waits for every write and fdatasyncs.
    pub async fn finish(mut self, namespace: &str, key: &str, expires_ms: u64) -> Result<SealedTmp, EngineError> {
        if self.block_fill > 0 {
            self.close_block();
        }
        let pad = (format::align_up(self.data_len) - self.data_len) as usize;
        self.append_raw(&vec![0u8; pad]).await?;
        let block_sums = std::mem::take(&mut self.block_sums);
        let meta = ObjectMeta {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            data_len: self.data_len,
            created_ms: crate::clock::now_ms(),
            expires_ms,
            etag: etag_of(&block_sums, self.data_len),
            block_sums: block_sums.into(),
        };
        let trailer = format::encode_trailer(&meta);
        self.append_raw(&trailer).await?;
        if self.buf_used > 0 {
            self.submit_buffer().await?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        let file_len = self.buf_pos;
        debug_assert_eq!(file_len, meta.file_len());
        self.file.fdatasync().await.map_err(|e| EngineError::glommio("syncing", &self.path, e))?;
        self.done = true;
        Ok(SealedTmp { path: self.path.clone(), meta, file_len })
    }

    /// Drops the partial file.
    pub async fn abandon(mut self) {
        self.done = true;
        while self.wait_oldest().await.is_ok() && !self.in_flight.is_empty() {}
        self.in_flight.clear();
        if let Err(e) = glommio::io::remove(&self.path).await {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove abandoned object file");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.done {
            // A writer dropped mid-stream (client gone, task cancelled): the
            // file is under tmp/, unreachable by readers; remove it now
            // rather than at the next restart.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
