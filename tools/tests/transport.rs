//! The mount's two transports: FUSE over io_uring (a queue of ring
//! entries per CPU, each served by a thread pinned to that CPU) and
//! `/dev/fuse`, the fallback where the kernel has the ring off. Real
//! mounts of a real node, compared with `git checkout`.

use crate::git::node_for;
use crate::harness::*;
use crate::mount::{assert_same_tree, blobs_served, checkout, sh, REPO};
use crate::tree::rich_upstream;
use std::process::Command;

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect()
}

fn possible_cpus() -> usize {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/possible").expect("cpus");
    list.trim().rsplit([',', '-']).next().and_then(|n| n.parse::<usize>().ok()).expect("a CPU number") + 1
}

#[test]
fn io_uring_serves_every_operation_on_each_cpu_and_dev_fuse_takes_over_where_the_kernel_has_it_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let (up, head) = rich_upstream(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let want = checkout(dir.path(), &up, &head);
    let args = ["--commit", head.as_str(), "--prefetch", "off", "--transport", "io-uring"];
    {
        let _on = UringSwitch::set(true);
        let m = Mount::start(&dir.path().join("ring"), &node.url, REPO, &args);
        let rec = &m.records()[0];
        assert_eq!(rec["transport"], "io_uring", "{rec}");
        let queues = thread_names(m.pid()).iter().filter(|n| n.starts_with("trove-ring-")).count();
        assert_eq!(queues, possible_cpus(), "one queue thread per CPU");

        // Metadata over the ring: lookups, readdirplus, getattr, readlink,
        // statfs, access; no blob fetched.
        let before = blobs_served(&node);
        let listing = sh(&m.dir, "find . -printf '%p %s %m %y %l\\n' | sort && df -k . && test -r run.sh");
        assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(text.contains("./run.sh 18 755 f"), "{text}");
        assert!(text.contains("./link 11 777 l src/main.rs"), "{text}");
        assert!(text.contains("./vendor/sub 4096 755 d"), "{text}");
        assert_eq!(blobs_served(&node), before, "metadata fetched no blob");
        // Writes over the ring too: a new file, a base file copied up, a
        // rename, all read back.
        std::fs::write(m.path("new"), b"over the ring").expect("create and write");
        std::fs::write(m.path("run.sh"), b"#!/bin/sh\necho edited\n").expect("a base file written");
        std::fs::rename(m.path("new"), m.path("src/moved")).expect("rename");
        assert_eq!(std::fs::read(m.path("src/moved")).expect("read"), b"over the ring");
        assert_eq!(std::fs::read(m.path("run.sh")).expect("read"), b"#!/bin/sh\necho edited\n");
        std::fs::write(m.path("run.sh"), b"#!/bin/sh\necho hi\n").expect("back as it was");
        std::fs::remove_file(m.path("src/moved")).expect("unlink");

        // First reads from each CPU at once: each CPU's requests go to
        // its own queue, and a read that waits on the node is answered
        // later from a completion thread.
        let readers: Vec<_> = (0..possible_cpus())
            .map(|cpu| {
                Command::new("taskset")
                    .args(["-c", &cpu.to_string(), "sh", "-c", "find . -type f -exec cat {} + > /dev/null"])
                    .current_dir(&m.dir)
                    .spawn()
                    .expect("taskset")
            })
            .collect();
        for mut r in readers {
            assert!(r.wait().expect("reader").success());
        }
        assert_same_tree(&m.dir, &want);
        assert!(blobs_served(&node) > before);

        // Unmounting ends every queue: the daemon exits, nothing stays.
        let (code, out) = m.umount();
        assert_eq!(code, Some(0), "{out}");
        wait_until("the mount to go", std::time::Duration::from_secs(10), || !is_mounted(&m.dir));
    }
    {
        let _off = UringSwitch::set(false);
        let m = Mount::start(&dir.path().join("fallback"), &node.url, REPO, &args);
        let rec = &m.records()[0];
        assert_eq!(rec["transport"], "/dev/fuse", "{rec}");
        assert!(m.log_text().contains("enable_uring"), "the mount says how to turn the ring on: {}", m.log_text());
        assert!(!thread_names(m.pid()).iter().any(|n| n.starts_with("trove-ring-")), "no queue threads");
        assert_same_tree(&m.dir, &want);
    }
}
