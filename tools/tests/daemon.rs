//! One mount daemon per data dir, serving many mounts: `trove mount`
//! without --foreground starts it or asks it, `trove umount` removes one
//! mount, the daemon exits after its last; its mounts share one blob
//! cache and keep their own overlays; killed, it leaves every mount
//! ENOTCONN, and a new `trove mount` brings each back with its overlay.
//! Its control socket refuses what is not a request.

use crate::git::{git, node_for, Upstream};
use crate::harness::*;
use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const REPO: &str = "example.test/org/repo";
const OTHER: &str = "example.test/org/other";
const ENOTCONN: i32 = 107;

/// The mounts of one data dir, as a user makes them (no --foreground).
/// On drop: each unmounted (`trove umount`, then `umount -l`), and the
/// daemon killed if it is still there, also when the test failed.
struct Daemonized {
    base: PathBuf,
    node: String,
    mounts: Vec<PathBuf>,
}

impl Daemonized {
    fn new(base: &Path, node: &str) -> Daemonized {
        Daemonized { base: base.to_owned(), node: node.to_owned(), mounts: Vec::new() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(trove_bin());
        c.args(args).env("TROVE_RUN_DIR", self.base.join("run"));
        c
    }

    /// `trove mount REPO base/NAME --data-dir base/mount-data ARGS`,
    /// unstarted: the caller runs it.
    fn mount_command(&mut self, name: &str, repo: &str, args: &[&str]) -> Command {
        let node = self.node.clone();
        self.mount_from(&node, name, repo, args)
    }

    /// [`Daemonized::mount_command`] from another node.
    fn mount_from(&mut self, node: &str, name: &str, repo: &str, args: &[&str]) -> Command {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir).expect("mountpoint");
        if !self.mounts.contains(&dir) {
            self.mounts.push(dir.clone());
        }
        let mut c = self.command(&["mount", repo, dir.to_str().expect("utf8"), "--node", node, "--data-dir"]);
        c.arg(self.base.join("mount-data")).args(["--prefetch", "off"]).args(args);
        c
    }

    /// Mounts and checks it said ready and exited 0; the mountpoint.
    fn mount(&mut self, name: &str, repo: &str, args: &[&str]) -> PathBuf {
        let out = self.mount_command(name, repo, args).output().expect("trove mount");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.starts_with("ready:"),
            "trove mount {name}: {}\n{said}{}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        self.base.join(name)
    }

    /// The daemon's count of blobs fetched, from a record written after
    /// this call.
    fn hydrated_now(&self, dir: &Path) -> u64 {
        let asked = trove_engine::now_ms();
        let mut count = None;
        wait_until("a record written after now", Duration::from_secs(10), || {
            let r = self.record(dir);
            count = r["hydrated_blobs"].as_u64().filter(|_| r["updated_ms"].as_u64().is_some_and(|t| t > asked));
            count.is_some()
        });
        count.unwrap_or_default()
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.base.join("mount-data/mountd.log")).unwrap_or_default()
    }

    fn records(&self) -> Vec<serde_json::Value> {
        let out = self.command(&["mounts", "--json"]).output().expect("trove mounts");
        let recs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        recs.as_array().cloned().unwrap_or_default()
    }

    fn record(&self, dir: &Path) -> serde_json::Value {
        let dir = std::fs::canonicalize(dir.parent().expect("parent"))
            .expect("canonical")
            .join(dir.file_name().expect("name"));
        self.records().into_iter().find(|r| r["mountpoint"].as_str() == dir.to_str()).unwrap_or_default()
    }

    /// The daemon's pid, as its mounts' records say.
    fn daemon_pid(&self) -> Option<u32> {
        self.records().iter().find_map(|r| r["pid"].as_u64()).map(|p| p as u32)
    }

    fn umount(&self, dir: &Path) -> (Option<i32>, String) {
        let out = self.command(&["umount", dir.to_str().expect("utf8")]).output().expect("trove umount");
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Daemonized {
    fn drop(&mut self) {
        let pid = self.daemon_pid();
        for dir in &self.mounts {
            if is_mounted(dir) {
                let _ = self.umount(dir);
            }
            if is_mounted(dir) {
                let _ = Command::new("umount").arg("-l").arg(dir).status();
            }
        }
        if let Some(pid) = pid {
            if !poll_until(Duration::from_secs(10), || !daemon_alive(pid)) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// Whether `pid` is a live `trove mountd`.
fn daemon_alive(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"));
    !zombie && cmdline.split(|&b| b == 0).any(|a| a == b"mountd")
}

/// The upstream with two repos that share most blobs: `org/repo` at two
/// commits, and `org/other`, a copy of it at the second with one commit
/// more. The two commits of `org/repo`.
fn two_repos(dir: &Path) -> (Upstream, String, String) {
    let mut up = Upstream::new(dir);
    let first = git(&up.work, &["rev-parse", "HEAD"]);
    let second = up.commit(1);
    let other = up.root.join("org/other");
    git(dir, &["clone", "-q", "--bare", up.bare().to_str().expect("utf8"), other.to_str().expect("utf8")]);
    let work = dir.join("other-work");
    git(dir, &["clone", "-q", other.to_str().expect("utf8"), work.to_str().expect("utf8")]);
    std::fs::write(work.join("only-other"), b"other\n").expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "other"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    (up, first, second)
}

/// Writes `bytes` to `path` (made or truncated) and fsyncs it and its
/// directory: the change must survive a kill of the daemon.
fn write_synced(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    std::fs::File::open(path.parent().expect("parent")).expect("dir").sync_all().expect("fsync dir");
}

#[test]
fn one_daemon_serves_two_repos_and_two_commits_sharing_blobs_with_their_own_overlays() {
    let dir = tempfile::tempdir().expect("tmp");
    let (up, first, second) = two_repos(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let mut d = Daemonized::new(dir.path(), &node.url);

    // Two repos, two commits of one; the last two asked at once (each
    // `trove mount` finds the daemon, or starts it: one wins the data dir).
    let a = d.mount("a", REPO, &["--commit", &first]);
    let b = d.mount("b", REPO, &["--commit", &second]);
    let (mut c_cmd, mut e_cmd) =
        (d.mount_command("c", OTHER, &[]), d.mount_command("e", OTHER, &["--commit", &second]));
    let (c_child, e_child) = (c_cmd.output(), e_cmd.output());
    for out in [c_child.expect("trove mount c"), e_child.expect("trove mount e")] {
        assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), d.daemon_log());
    }
    let (c, e) = (dir.path().join("c"), dir.path().join("e"));
    let mounts = [&a, &b, &c, &e];
    let pid = d.daemon_pid().expect("a daemon pid");
    assert!(daemon_alive(pid), "the mounts are served by a `trove mountd`");
    wait_until("all four records to name the one daemon serving four mounts", Duration::from_secs(10), || {
        let recs = d.records();
        recs.len() == 4 && recs.iter().all(|r| r["pid"].as_u64() == Some(u64::from(pid)) && r["daemon_mounts"] == 4)
    });
    assert_eq!(std::fs::read(c.join("only-other")).expect("read"), b"other\n");
    assert!(!a.join("f4").exists() && b.join("f4").exists(), "each mount shows its own commit");

    // One blob, four mounts of two repos: fetched once.
    let before = d.hydrated_now(&a);
    let f1 = std::fs::read(up.work.join("f1")).expect("f1");
    for m in mounts {
        assert_eq!(std::fs::read(m.join("f1")).expect("read f1"), f1, "{}", m.display());
    }
    assert_eq!(d.hydrated_now(&e), before + 1, "the first read fetched f1; the other three fetched nothing");

    // Writes stay in their own mount.
    write_synced(&a.join("new-in-a"), b"a's\n");
    write_synced(&b.join("f1"), b"b rewrote f1\n");
    std::fs::remove_file(c.join("f2")).expect("rm c/f2");
    std::fs::File::open(&c).expect("dir").sync_all().expect("fsync dir");
    assert!(!b.join("new-in-a").exists() && !c.join("new-in-a").exists(), "a's new file is a's alone");
    assert_eq!(std::fs::read(a.join("f1")).expect("read"), f1, "b's rewrite is b's alone");
    assert_eq!(std::fs::read(e.join("f1")).expect("read"), f1);
    assert!(e.join("f2").exists() && a.join("f2").exists(), "c's unlink is c's alone");

    // The daemon killed: every mount errors at once, none hangs (a name
    // never looked up must be asked of it; attributes the kernel holds
    // are still answered from its cache, as on any FUSE mount).
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    for m in mounts {
        wait_until("every access to say ENOTCONN", Duration::from_secs(10), || {
            let lookup = std::fs::metadata(m.join("never-looked-up")).err().and_then(|e| e.raw_os_error());
            let list = std::fs::read_dir(m).err().and_then(|e| e.raw_os_error());
            lookup == Some(ENOTCONN) && list == Some(ENOTCONN)
        });
    }
    // Mounted again (the dead mounts detached on the way): every overlay
    // is as it was, under a new daemon.
    d.mount("a", REPO, &["--commit", &first]);
    d.mount("b", REPO, &["--commit", &second]);
    d.mount("c", OTHER, &[]);
    d.mount("e", OTHER, &["--commit", &second]);
    let again = d.daemon_pid().expect("a daemon pid");
    assert_ne!(again, pid, "a new daemon");
    assert_eq!(std::fs::read(a.join("new-in-a")).expect("a's file"), b"a's\n");
    assert_eq!(std::fs::read(b.join("f1")).expect("b's f1"), b"b rewrote f1\n");
    assert!(!c.join("f2").exists(), "c's unlink stays");
    assert_eq!(std::fs::read(e.join("f1")).expect("e's f1"), f1);
    assert_eq!(std::fs::read(a.join("f1")).expect("a's f1"), f1);

    // `trove umount` takes one mount; the daemon goes with the last. The
    // repo's other mount still fetches once the first is gone (they
    // shared its hydration).
    let (code, out) = d.umount(&a);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read(b.join("f4")).expect("b/f4 fetched after a went"),
        std::fs::read(up.work.join("f4")).expect("f4")
    );
    for m in mounts.into_iter().skip(1) {
        let (code, out) = d.umount(m);
        assert_eq!(code, Some(0), "{out}");
        assert!(!is_mounted(m), "{} unmounted", m.display());
        if m != &e {
            assert!(daemon_alive(again), "the daemon serves the mounts left");
        }
    }
    wait_until("the daemon to exit after its last mount", Duration::from_secs(10), || !daemon_alive(again));
    assert!(d.records().is_empty(), "no record left");
}

#[test]
fn an_asker_that_leaves_before_ready_stops_its_mount_and_the_control_socket_refuses_junk() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let mut d = Daemonized::new(dir.path(), &node.url);
    let served = d.mount("served", REPO, &[]);
    let pid = d.daemon_pid().expect("daemon");
    // A mount that asks the running daemon for other settings hears that
    // it keeps its own.
    let out = d.mount_command("joined", REPO, &["--cache-capacity", "1GiB"]).output().expect("trove mount");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("keeps the") && err.contains("8589934592 bytes of cache"), "{err}");
    let (code, said) = d.umount(&dir.path().join("joined"));
    assert_eq!(code, Some(0), "{said}");

    // A node that takes connections and never answers: the mount waits
    // for its index; its asker is killed meanwhile.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let mut cmd = d.mount_from(&silent_url, "stalled", REPO, &["--ready-timeout", "60s"]);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut asker = cmd.spawn().expect("spawn");
    let stalled = dir.path().join("stalled");
    wait_until("the stalled mount to be mounted, waiting", Duration::from_secs(10), || is_mounted(&stalled));
    let _ = asker.kill();
    let _ = asker.wait();
    wait_until("the daemon to stop the mount nobody waits for", Duration::from_secs(10), || !is_mounted(&stalled));
    assert!(daemon_alive(pid), "the daemon serves its other mount");

    // Its control socket: junk, an overlong line, and a silent peer are
    // refused without stopping it.
    let socket = std::fs::read_dir(dir.path().join("run"))
        .expect("run dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("a control socket");
    let ask = |bytes: &[u8]| -> String {
        let mut s = UnixStream::connect(&socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let _ = s.write_all(bytes);
        let mut line = String::new();
        let _ = std::io::BufReader::new(s).read_line(&mut line);
        line
    };
    let silent_peer = UnixStream::connect(&socket).expect("connect");
    assert!(ask(b"{\"ask\":\"format_disk\"}\n").contains("\"code\":2"), "an unknown request is refused");
    assert!(ask(b"not json\n").contains("a bad control request"), "junk is refused");
    let long = ask(&vec![b'x'; 300 << 10]);
    assert!(long.contains("too long"), "an overlong line is refused: {long}");
    let other_dir = dir.path().join("elsewhere");
    let options = serde_json::json!({"ask": "unmount", "mountpoint": other_dir, "wait_ms": 100});
    assert!(ask(format!("{options}\n").as_bytes()).contains("is not a mount of this daemon"));
    // The silent peer is dropped after its deadline; meanwhile the daemon
    // answered the others.
    let mut buf = Vec::new();
    silent_peer.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let _ = (&silent_peer).read_to_end(&mut buf);
    assert!(daemon_alive(pid));
    assert!(std::fs::read_dir(&served).expect("still served").next().is_some());
}

#[test]
fn trove_mount_sends_nothing_to_a_control_socket_another_user_serves() {
    let dir = tempfile::tempdir().expect("tmp");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A run dir another user could write to (as /tmp/trove-UID made by
    // them first), where they listen on the data dir's socket name.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("run dir");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let data = dir.path().join("mount-data");
    std::fs::create_dir(&data).expect("data dir");
    let data = std::fs::canonicalize(&data).expect("canonical");
    let socket = run.join(format!("mountd-{}.sock", trove_engine::overlay::path_id(&data)));
    let listener = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); print('up', flush=True)\n\
        c,_=s.accept(); c.settimeout(5); got=b''\n\
        try:\n    while True:\n        b=c.recv(65536)\n        if not b: break\n        got+=b\n\
        except Exception: pass\n\
        print(len(got), flush=True)\n";
    let mut spy = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "python3", "-c", listener])
        .arg(&socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv python3");
    /// Kills the other user's listener, also when the test fails.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = std::io::BufReader::new(spy.stdout.take().expect("stdout")).lines();
    let _spy = Kill(spy);
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("up"), "the other user listens");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mountpoint");
    let _unmount = UnmountOnDrop(mnt.clone());
    let out = Command::new(trove_bin())
        .args(["mount", REPO])
        .arg(&mnt)
        .args(["--node", "http://me:s3cret@127.0.0.1:9", "--data-dir"])
        .arg(&data)
        .env("TROVE_RUN_DIR", &run)
        .output()
        .expect("trove mount");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("served by another user") && err.contains("nothing was sent"), "{err}");
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("0"), "the other user got no byte (no token)");
    assert!(!is_mounted(&mnt));
}
