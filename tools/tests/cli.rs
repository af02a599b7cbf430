//! `trove put|get|stat|delete` and their exit codes; `--help`.

use crate::harness::*;
use std::process::Command;

fn trove(args: &[&str]) -> std::process::Output {
    Command::new(trove_bin()).args(args).output().expect("run trove")
}

#[test]
fn client_commands_round_trip_with_documented_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("d"), &[]);
    let src = dir.path().join("in.bin");
    std::fs::write(&src, bytes(3, 700_000)).expect("write");
    let url = node.url.as_str();
    let p = trove(&["put", "--url", url, "ns", "my key", src.to_str().expect("utf8"), "--ttl", "1h"]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert!(String::from_utf8_lossy(&p.stdout).contains("\"size\":700000"));
    let out = dir.path().join("out.bin");
    let g = trove(&["get", "--url", url, "ns", "my key", out.to_str().expect("utf8")]);
    assert!(g.status.success());
    assert_eq!(std::fs::read(&out).expect("read"), bytes(3, 700_000));
    let s = trove(&["stat", "--url", url, "ns", "my key"]);
    let st: serde_json::Value = serde_json::from_slice(&s.stdout).expect("json");
    assert_eq!(st["size"], 700_000);
    assert_eq!(st["tier"], "local");
    assert!(trove(&["delete", "--url", url, "ns", "my key"]).status.success());

    let missing = trove(&["get", "--url", url, "ns", "my key", out.to_str().expect("utf8")]);
    assert_eq!(missing.status.code(), Some(3), "not found exits 3");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    let bad = trove(&["put", "--url", url, "ns", "a/b", src.to_str().expect("utf8")]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("slashes"), "the server's reason is shown");
    let down = trove(&["stat", "--url", "http://127.0.0.1:1", "ns", "k"]);
    assert_eq!(down.status.code(), Some(5), "unreachable exits 5");
}

#[test]
fn help_teaches_the_commands() {
    let h = trove(&["--help"]);
    let text = String::from_utf8_lossy(&h.stdout);
    for word in ["serve", "put", "get", "stat", "delete", "bench", "trove serve --listen"] {
        assert!(text.contains(word), "--help lacks {word:?}: {text}");
    }
    let s = String::from_utf8_lossy(&trove(&["serve", "--help"]).stdout).into_owned();
    for flag in ["--data-dir", "--local-capacity", "--s3-endpoint", "--s3-bucket", "--shards", "TROVE_LISTEN"] {
        assert!(s.contains(flag), "serve --help lacks {flag}");
    }
}
