//! nginx (sendfile on, one worker pinned like the trove shard) serving a
//! directory, as a child process that is stopped on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
}

impl Nginx {
    /// Serves `root` on `addr` with one worker pinned to `cpu`.
    pub fn start(root: &Path, prefix: &Path, addr: SocketAddr, cpu: usize) -> anyhow::Result<Nginx> {
        let bin = find_nginx().ok_or_else(|| {
            anyhow::anyhow!("nginx not found: apt-get install nginx-light (the README's setup does this)")
        })?;
        std::fs::create_dir_all(prefix.join("logs"))?;
        let mask: String = (0..=cpu).rev().map(|i| if i == cpu { '1' } else { '0' }).collect();
        // Started by root, nginx's worker drops to `nobody`, which cannot
        // read a 0700 work dir (a `mktemp -d`): every GET failed and the
        // bench reported only the errors. The worker stays root instead;
        // as another user nginx does not switch at all.
        let user = if effective_uid() == Some(0) { "user root root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nmaster_process on;\nworker_processes 1;\nworker_cpu_affinity {mask};\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n  keepalive_requests 1000000;\n  keepalive_timeout 120s;\n  \
             client_body_temp_path {prefix}/tmp;\n  proxy_temp_path {prefix}/tmp;\n  fastcgi_temp_path {prefix}/tmp;\n  uwsgi_temp_path {prefix}/tmp;\n  scgi_temp_path {prefix}/tmp;\n  \
             server {{ listen {addr}; root {root}; location / {{ }} }}\n}}\n",
            prefix = prefix.display(),
            root = root.display(),
        );
        std::fs::create_dir_all(prefix.join("tmp"))?;
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let n = Nginx { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "nginx did not start; see {}",
                prefix.join("logs/error.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(n)
    }
}

/// The effective user id of this process, from /proc.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; then make sure.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The baseline serves a work dir only its owner may enter (0700, as
    /// `mktemp -d` makes it).
    #[test]
    fn nginx_serves_a_private_work_dir() {
        assert!(find_nginx().is_some(), "nginx is not installed: run tools/dev/setup.sh");
        let dir = tempfile::tempdir().expect("tmp");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join("f"), b"hello nginx").expect("write");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let _nginx = Nginx::start(&root, &dir.path().join("prefix"), addr, 0).expect("nginx starts");
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.write_all(b"GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
        let mut resp = String::new();
        conn.read_to_string(&mut resp).expect("read");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("hello nginx"), "{resp}");
    }
}
