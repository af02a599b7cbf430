//! Opening a file for O_DIRECT reads through glommio when another task may
//! rename or remove it at the same moment.
//!
//! glommio's `DmaFile::open` looks its path up twice: to open the file and
//! then for `statfs`, whose failure it unwraps. A file renamed or removed
//! in between (a landing sealed and renamed into place, an object evicted)
//! panics the shard, and every connection on it hangs. So the inode is
//! pinned first with an `O_PATH` descriptor, and glommio opens that
//! descriptor's `/proc/self/fd` link: both of its lookups then find the same
//! file, wherever it has been renamed or whether it is still linked.
//! The `DmaFile` keeps that link as its path, which stops naming the file
//! once the pin is closed: callers must not use glommio's path-based calls
//! (`file_size`, `stat`) on it, but [`len_of`], which fstats the descriptor.
//!
//! This module must never hand glommio a path that can change under it.

use glommio::io::DmaFile;
use rustix::fs::{Mode, OFlags};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The length of an open file, from its descriptor (see the module doc).
pub fn len_of(file: &DmaFile) -> io::Result<u64> {
    // SAFETY: the descriptor belongs to `file`, open for this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(file.as_raw_fd()) };
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// Opens `path` as a `DmaFile`; NotFound if there is no such file now.
pub async fn open_dma(path: &Path) -> io::Result<DmaFile> {
    let pin = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let link = format!("/proc/self/fd/{}", pin.as_raw_fd());
    let opened = DmaFile::open(&link).await.map_err(io::Error::from);
    drop(pin);
    match opened {
        // No /proc (a bare container): the plain path, racy but working.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !Path::new("/proc/self/fd").exists() => {
            DmaFile::open(path).await.map_err(io::Error::from)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::open_dma;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A thread renames the file back and forth while a shard opens it:
    /// every open finds the file or says NotFound, and none panics (a plain
    /// `DmaFile::open` of the path panics here within a few thousand tries).
    #[test]
    fn a_file_renamed_while_it_is_opened_never_panics_the_shard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, vec![7u8; 4096]).expect("write");
        let stop = Arc::new(AtomicBool::new(false));
        let renamer = {
            let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::rename(&a, &b);
                    let _ = std::fs::rename(&b, &a);
                }
            })
        };
        let opened = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                // At least 20k tries, and on until both outcomes were seen
                // (a loaded machine may hold the renamer off for a while).
                let (mut opened, mut missed, mut tries) = (0u64, 0u64, 0u64);
                while tries < 20_000 || ((opened == 0 || missed == 0) && tries < 5_000_000) {
                    tries += 1;
                    match open_dma(&a).await {
                        Ok(f) => {
                            assert_eq!(&f.read_at_aligned(0, 4096).await.expect("read")[..], &[7u8; 4096][..]);
                            let _ = f.close().await;
                            opened += 1;
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
                            missed += 1;
                        }
                    }
                    if tries % 1024 == 0 {
                        glommio::yield_if_needed().await;
                    }
                }
                opened
            })
            .expect("executor")
            .join();
        stop.store(true, Ordering::Relaxed);
        renamer.join().expect("renamer");
        assert!(opened.expect("the shard did not panic") > 0, "some opens found the file");
    }
}
