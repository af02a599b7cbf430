//! Invalid names get 400 JSON and never touch anything outside the data dir.

use crate::harness::*;

#[test]
fn invalid_names_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = Node::start(&data, &[]);
    let long = "k".repeat(1025);
    let long_ns = "n".repeat(129);
    let cases: Vec<(String, String)> = vec![
        ("ns".into(), "".into()),
        ("".into(), "key".into()),
        ("ns".into(), "..".into()),
        ("ns".into(), "%2e%2e".into()),
        ("..".into(), "key".into()),
        ("ns".into(), "a%2Fb".into()),
        ("ns".into(), "a/b".into()),
        ("ns".into(), "..%2F..%2Fescape".into()),
        ("ns".into(), "a%0Ab".into()),
        ("ns".into(), "a%00b".into()),
        ("ns".into(), "%FF%FE".into()),
        ("n%20s".into(), "key".into()),
        ("ns".into(), long),
        (long_ns, "key".into()),
    ];
    for (ns, key) in &cases {
        // Raw requests: an HTTP client would normalise `..` away.
        for method in ["PUT", "GET", "DELETE"] {
            let req = format!("{method} /api/v1/object/{ns}/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\npayload");
            let resp = String::from_utf8_lossy(&raw(node.port, req.as_bytes(), std::time::Duration::from_secs(5)))
                .into_owned();
            assert!(resp.starts_with("HTTP/1.1 400"), "{method} {ns:?}/{key:?}: {resp}");
            assert!(resp.contains("\"code\":\"invalid_key\""), "{method} {ns:?}/{key:?}: {resp}");
            assert!(resp.contains("\"error\":\"the "), "a message that says what is wrong: {resp}");
        }
    }
    assert!(object_files(&data).is_empty(), "no object may be written");
    let siblings: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(siblings.iter().all(|n| n == "data" || n.to_string_lossy().ends_with(".log")), "{siblings:?}");
}

#[test]
fn the_git_face_namespaces_are_closed_to_the_object_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = Node::start(&data, &[]);
    // A PUT here would replace a snapshot every `trove restore` unpacks; a
    // GET would read a private repo's snapshot past its access check.
    for ns in ["git-snapshot", "git-bundle", "git-mirror"] {
        let url = node.object_url(ns, "example.test:org:repo");
        for (method, body) in [("PUT", b"poison".to_vec()), ("GET", vec![]), ("HEAD", vec![]), ("DELETE", vec![])] {
            let r = http(method, &url, &[], body);
            assert_eq!(r.status, 403, "{method} {ns}");
            if method != "HEAD" {
                assert_eq!(r.json()["code"], "reserved_namespace", "{method} {ns}");
            }
        }
    }
    assert!(object_files(&data).is_empty(), "nothing may be written");
    // Other namespaces that merely look alike stay open.
    assert_eq!(put(&node.object_url("git-snapshots", "k"), b"v".to_vec()).status, 201);
}
