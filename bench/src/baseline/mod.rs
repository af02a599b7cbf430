//! What trove is measured against in the same run: nginx serving the same
//! files with sendfile, the disk's O_DIRECT read ceiling (fio), and the
//! loopback TCP ceiling.

pub mod disk;
pub mod nginx;
pub mod tcp;
