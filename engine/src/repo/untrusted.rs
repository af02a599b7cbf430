//! What of a git directory that came over the network is kept, and the
//! config written in its place.
//!
//! A snapshot reaches `trove restore` from a node, and a mirror snapshot
//! reaches a node from S3: both are hostile input. A git directory can run
//! code in many ways (hooks, `core.fsmonitor`, `core.sshCommand`, filter and
//! process drivers, credential helpers, `url.*.insteadOf` rewrites, includes,
//! `commondir`, alternates), so this module keeps an allowlist, not a
//! blocklist: refs, objects (without alternates), HEAD, the index, shallow
//! and reflogs. The archive's `config` is never written; it is captured so
//! that a few plain values (the origin URL, the object format) can be read
//! from it with `git config --no-includes`, checked, and written into a
//! config this module renders itself.
//!
//! A `.git` anywhere below the top of a working tree is refused: git never
//! checks one out, so only a hostile archive has one.
//!
//! What this module must never do: write a byte of the archive's config, or
//! let a value read from it through unchecked.

use std::io::Write;
use std::path::{Component, Path};
use std::process::{Command, Stdio};
use tar::EntryType;

/// The largest archived config that is read for its values.
pub const CONFIG_MAX_BYTES: u64 = 64 << 10;

/// Config for every git this project runs on a tree or mirror that came
/// over the network: no hooks, no fsmonitor. Pass as `-c` pairs before the
/// subcommand.
pub const NO_CODE_CONFIG: &[(&str, &str)] = &[("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false")];

/// Entries of a bare git directory kept from an archive: the repo's data,
/// nothing that configures or runs anything, and only directories and
/// regular files (a link could lead git to a config or hooks elsewhere).
fn git_dir_entry(rel: &Path, kind: EntryType) -> Verdict {
    if !(kind.is_dir() || kind.is_file()) {
        return Verdict::Refuse("a link or special file inside a git directory");
    }
    let mut parts = rel.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_str().unwrap_or("\u{0}")),
        _ => None,
    });
    let Some(first) = parts.next() else {
        // `.git` itself: a file there (`gitdir: ...`) names a repo elsewhere.
        return if kind.is_dir() { Verdict::Keep } else { Verdict::Refuse("a .git that is not a directory") };
    };
    let second = parts.next();
    match (first, second) {
        ("config", None) => Verdict::Capture,
        ("HEAD" | "packed-refs" | "shallow" | "index" | "description", None) => Verdict::Keep,
        ("refs" | "logs", _) => Verdict::Keep,
        ("objects", Some("info")) => match parts.next() {
            // Alternates point git at any directory or URL: never kept.
            Some("alternates" | "http-alternates") => Verdict::Skip,
            _ => Verdict::Keep,
        },
        ("objects", _) => Verdict::Keep,
        // hooks/, info/, config.worktree, commondir, modules/, FETCH_HEAD...
        _ => Verdict::Skip,
    }
}

/// What to do with one archive entry, by its path inside the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Not written; the unpack goes on.
    Skip,
    /// A regular file of at most `untrusted::CONFIG_MAX_BYTES`, handed to
    /// the caller in `unpack::Unpacked::captured` and not written.
    Capture,
    /// The whole archive is refused, for this reason.
    Refuse(&'static str),
}

/// Decides each entry's fate from its path (relative, `..` folded) and kind.
pub type Filter = fn(&Path, tar::EntryType) -> Verdict;

/// Keeps every entry (what is unsafe is refused all the same).
pub fn keep_all(_: &Path, _: tar::EntryType) -> Verdict {
    Verdict::Keep
}

/// The file in a mirror that says its repo is private (the mirrors
/// service's `access.rs` writes and reads it).
pub const PRIVATE_MARKER: &str = "trove-private";

/// The verdict on an entry of a mirror snapshot (a bare mirror). The
/// private-repo marker travels with it.
pub fn mirror_entry(rel: &Path, kind: EntryType) -> Verdict {
    if rel == Path::new(PRIVATE_MARKER) && kind.is_file() {
        return Verdict::Keep;
    }
    git_dir_entry(rel, kind)
}

/// The verdict on an entry of a working-tree snapshot: the files as they
/// are, the top `.git` through the allowlist, a nested `.git` refused.
pub fn worktree_entry(rel: &Path, kind: EntryType) -> Verdict {
    let mut comps = rel.components();
    match comps.next() {
        Some(Component::Normal(n)) if n == ".git" => return git_dir_entry(comps.as_path(), kind),
        _ => {}
    }
    if rel.components().any(|c| matches!(c, Component::Normal(n) if n.eq_ignore_ascii_case(".git"))) {
        return Verdict::Refuse("a .git below the top of the tree (git never checks one out)");
    }
    Verdict::Keep
}

/// One plain value of an archived config, read by git itself with includes
/// off, or None when it has none (or git fails). The caller checks it.
pub fn config_value(config: &[u8], key: &str) -> Option<String> {
    let mut child = Command::new("git")
        .args(["config", "--no-includes", "--file", "-", "--get", key])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().expect("spawned with a stdin");
    let fed = stdin.write_all(config);
    drop(stdin);
    let out = child.wait_with_output().ok()?;
    (fed.is_ok() && out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// Whether `url` may be written as a remote URL: a plain http(s), git, ssh
/// or file URL with nothing git would take for an option or a command
/// (`ext::`, a host starting with `-`, control characters, quotes).
pub fn safe_remote_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    matches!(scheme, "https" | "http" | "git" | "ssh" | "file")
        && !rest.starts_with('-')
        && !url.chars().any(|c| c.is_control() || c == '"' || c == '\\' || c == ' ')
        && url.len() <= 4096
}

/// The object format an archived config names: `sha1` (also when it names
/// none) or `sha256`; None for anything else.
pub fn object_format(config: &[u8]) -> Option<&'static str> {
    match config_value(config, "extensions.objectformat").as_deref() {
        None | Some("sha1") => Some("sha1"),
        Some("sha256") => Some("sha256"),
        Some(_) => None,
    }
}

/// A git config file, rendered from checked values. Keys are
/// `section.name` or `section.subsection.name`; sections keep their first
/// order.
#[derive(Default)]
pub struct ConfigFile {
    entries: Vec<(String, String, String, String)>,
}

impl ConfigFile {
    /// The core of a fresh repository of `object_format` (`bare` or not).
    pub fn repository(bare: bool, object_format: &str) -> ConfigFile {
        let mut c = ConfigFile::default();
        let sha256 = object_format == "sha256";
        c.set("core.repositoryformatversion", if sha256 { "1" } else { "0" });
        c.set("core.filemode", "true");
        c.set("core.bare", if bare { "true" } else { "false" });
        if !bare {
            c.set("core.logallrefupdates", "true");
        }
        if sha256 {
            c.set("extensions.objectformat", "sha256");
        }
        c
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        let (section, rest) = key.split_once('.').expect("a config key has a section");
        let (sub, name) = rest.rsplit_once('.').unwrap_or(("", rest));
        self.entries.push((section.into(), sub.into(), name.into(), value.into()));
        self
    }

    pub fn render(&self) -> String {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut sections: Vec<(&str, &str)> = Vec::new();
        for (s, sub, _, _) in &self.entries {
            if !sections.contains(&(s.as_str(), sub.as_str())) {
                sections.push((s, sub));
            }
        }
        let mut out = String::new();
        for (s, sub) in sections {
            if sub.is_empty() {
                out.push_str(&format!("[{s}]\n"));
            } else {
                out.push_str(&format!("[{s} \"{}\"]\n", quote(sub)));
            }
            for (_, _, name, value) in self.entries.iter().filter(|e| e.0 == s && e.1 == sub) {
                out.push_str(&format!("\t{name} = \"{}\"\n", quote(value)));
            }
        }
        out
    }

    /// Writes the config to `path` (replacing what is there).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_git_dirs_data_is_kept() {
        let v = |p: &str| worktree_entry(Path::new(p), EntryType::Regular);
        assert!(matches!(v("src/main.rs"), Verdict::Keep));
        assert!(matches!(v(".git/objects/pack/p.pack"), Verdict::Keep));
        assert!(matches!(v(".git/refs/heads/main"), Verdict::Keep));
        assert!(matches!(v(".git/config"), Verdict::Capture));
        for skipped in [".git/hooks/post-checkout", ".git/hooks", ".git/objects/info/alternates", ".git/commondir"] {
            assert!(matches!(v(skipped), Verdict::Skip), "{skipped}");
        }
        for nested in ["sub/.git/config", "a/.GIT/hooks/x", "a/.git"] {
            assert!(matches!(v(nested), Verdict::Refuse(_)), "{nested}");
        }
        assert!(matches!(mirror_entry(Path::new("hooks/pre-receive"), EntryType::Regular), Verdict::Skip));
        assert!(matches!(mirror_entry(Path::new("trove-private"), EntryType::Regular), Verdict::Keep));
        // `.git` as a link or a gitdir file would lead git to a config elsewhere.
        for kind in [EntryType::Symlink, EntryType::Link, EntryType::Regular] {
            assert!(matches!(worktree_entry(Path::new(".git"), kind), Verdict::Refuse(_)));
        }
        assert!(matches!(worktree_entry(Path::new(".git/refs"), EntryType::Symlink), Verdict::Refuse(_)));
        assert!(matches!(worktree_entry(Path::new(".git"), EntryType::Directory), Verdict::Keep));
    }

    #[test]
    fn values_are_read_by_git_without_includes_and_checked() {
        let cfg = b"[include]\n\tpath = /etc/gitconfig\n[remote \"origin\"]\n\turl = https://h/o/r\n";
        assert_eq!(config_value(cfg, "remote.origin.url").as_deref(), Some("https://h/o/r"));
        assert_eq!(object_format(cfg), Some("sha1"));
        assert_eq!(object_format(b"[extensions]\nobjectformat = sha256\n"), Some("sha256"));
        assert_eq!(object_format(b"[extensions]\nobjectformat = evil\n"), None);
        assert!(safe_remote_url("file:///srv/git/org/repo"));
        for bad in ["ext::sh -c touch% /tmp/x", "ssh://-oProxyCommand=x/y", "https://h/\"x", "/local/path"] {
            assert!(!safe_remote_url(bad), "{bad}");
        }
    }

    #[test]
    fn a_rendered_config_reads_back_as_written() {
        let mut c = ConfigFile::repository(false, "sha1");
        c.set("remote.origin.url", "https://h/o/r").set("branch.we\"ird.merge", "refs/heads/we\"ird");
        let text = c.render();
        assert_eq!(config_value(text.as_bytes(), "remote.origin.url").as_deref(), Some("https://h/o/r"));
        assert_eq!(config_value(text.as_bytes(), "branch.we\"ird.merge").as_deref(), Some("refs/heads/we\"ird"));
        assert_eq!(config_value(text.as_bytes(), "core.bare").as_deref(), Some("false"));
    }
}
