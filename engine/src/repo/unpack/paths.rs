//! Path checks of an unpack: lexical (absolute, climbing out) before
//! anything is touched, and resolved (a link chain leading out) once the
//! tree is whole.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Whether the link at `link` resolves inside `dest` (canonical): the
/// target itself if it exists, else its nearest existing ancestor.
pub(super) fn resolves_inside(dest: &Path, link: &Path) -> bool {
    let Ok(target) = std::fs::read_link(link) else { return false };
    let mut p = link.parent().unwrap_or(dest).join(target);
    loop {
        if let Ok(c) = p.canonicalize() {
            return c.starts_with(dest);
        }
        if !p.pop() {
            return false;
        }
    }
}

pub(super) fn target_is_absolute(p: &Path) -> bool {
    p.has_root() || matches!(p.components().next(), Some(Component::Prefix(_)))
}

/// `p` as a path that stays inside the root (lexically, `..` folded), or
/// None when it is absolute or climbs out.
pub(super) fn inside(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) if !n.as_bytes().is_empty() => out.push(n),
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}
