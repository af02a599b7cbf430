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
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nworker_cpu_affinity {mask};\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n\
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
