//! The checkout attributes of a commit's files, from the `.gitattributes`
//! files of its own tree (what `git checkout` of a fresh clone reads with
//! a default config: no `info/attributes`, no user or system file).
//!
//! Matching (globs, directory patterns, precedence of deeper files and
//! later lines, the `binary` macro, macros only at the top level) is
//! gix-attributes'; this module keeps one pattern list per directory on
//! the way from the root to the file, and reduces `text`, `crlf`, `eol`
//! and `ident` to what checkout does with them ([`Eol`], ident). It reads
//! no blob itself (the walk hands it each `.gitattributes`' bytes) and
//! never looks at `filter`, `working-tree-encoding` or anything that
//! would run a command.

use super::checkout::Eol;
use gix_attributes::search::{MetadataCollection, Outcome};
use gix_attributes::{Search, StateRef};
use std::collections::HashMap;
use std::path::PathBuf;

/// git ignores a `.gitattributes` larger than this (`ATTR_MAX_FILE_SIZE`).
pub const ATTRIBUTES_MAX_BYTES: u64 = 100 << 20;

const NAMES: [&str; 4] = ["text", "crlf", "eol", "ident"];

/// What checkout does with one file's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAttributes {
    pub ident: bool,
    pub eol: Eol,
}

impl FileAttributes {
    pub fn converts(self) -> bool {
        self.ident || self.eol != Eol::Keep
    }
}

/// Attributes of files asked for in sorted path order (so that a
/// directory's files come together and its list is read once).
pub struct Walk {
    /// Each directory's `.gitattributes` bytes ("" is the root).
    files: HashMap<Vec<u8>, Vec<u8>>,
    search: Search,
    collection: MetadataCollection,
    out: Outcome,
    /// Directories entered, root first, and whether each pushed a list.
    chain: Vec<(Vec<u8>, bool)>,
}

impl Walk {
    /// `files`: each directory's `.gitattributes` ("" the root, "a/b").
    pub fn new(files: HashMap<Vec<u8>, Vec<u8>>) -> Walk {
        let mut collection = MetadataCollection::default();
        let search = Search::new_globals(std::iter::empty::<PathBuf>(), &mut Vec::new(), &mut collection)
            .expect("the built-in macros need no file");
        let mut walk = Walk { files, search, collection, out: Outcome::default(), chain: Vec::new() };
        walk.enter(Vec::new());
        walk
    }

    /// Whether the tree has any attributes at all (else nothing converts).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn enter(&mut self, dir: Vec<u8>) {
        let pushed = match self.files.get(&dir) {
            Some(bytes) => {
                let mut source = dir.clone();
                if !source.is_empty() {
                    source.push(b'/');
                }
                source.extend_from_slice(b".gitattributes");
                let source = PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&source));
                // Macros are honoured at the top level only, as git does.
                let top = dir.is_empty();
                self.search
                    .add_patterns_buffer(bytes, source, Some(std::path::Path::new("")), &mut self.collection, top)
                    .is_ok()
            }
            None => false,
        };
        self.chain.push((dir, pushed));
    }

    fn leave(&mut self) {
        if let Some((_, true)) = self.chain.pop() {
            self.search.pop_pattern_list();
        }
    }

    /// The attributes of file `path`; paths must come in sorted order.
    pub fn of(&mut self, path: &[u8]) -> FileAttributes {
        let dir = match path.iter().rposition(|&b| b == b'/') {
            Some(cut) => &path[..cut],
            None => &path[..0],
        };
        // Leave what does not hold `dir`, then enter down to it.
        while let Some((top, _)) = self.chain.last() {
            let holds =
                top.is_empty() || dir == &top[..] || (dir.starts_with(top) && dir.get(top.len()) == Some(&b'/'));
            if holds {
                break;
            }
            self.leave();
        }
        let top_len = self.chain.last().map_or(0, |(t, _)| t.len());
        let mut at = if top_len == 0 { 0 } else { top_len + 1 };
        while at < dir.len() {
            let end = dir[at..].iter().position(|&b| b == b'/').map_or(dir.len(), |p| at + p);
            self.enter(dir[..end].to_vec());
            at = end + 1;
        }
        self.out.initialize_with_selection(&self.collection, NAMES);
        self.search.pattern_matching_relative_path(
            path.into(),
            gix_attributes::glob::pattern::Case::Sensitive,
            Some(false),
            &mut self.out,
        );
        let mut states: [StateRef<'_>; 4] = [StateRef::Unspecified; 4];
        for m in self.out.iter_selected() {
            if let Some(i) = NAMES.iter().position(|n| *n == m.assignment.name.as_str()) {
                states[i] = m.assignment.state;
            }
        }
        FileAttributes { ident: matches!(states[3], StateRef::Set), eol: eol_of(states[0], states[1], states[2]) }
    }
}

/// git's `convert_attrs` and `output_eol` with `core.autocrlf` false and
/// `core.eol` native (LF): CRLF only for `eol=crlf`, and for `text=auto`
/// only with `eol=crlf`.
fn eol_of(text: StateRef<'_>, crlf: StateRef<'_>, eol: StateRef<'_>) -> Eol {
    #[derive(PartialEq)]
    enum Action {
        Undefined,
        Binary,
        Text,
        Input,
        Auto,
    }
    let action = |s: StateRef<'_>| match s {
        StateRef::Set => Action::Text,
        StateRef::Unset => Action::Binary,
        StateRef::Value(v) if v.as_bstr() == "input" => Action::Input,
        StateRef::Value(v) if v.as_bstr() == "auto" => Action::Auto,
        _ => Action::Undefined,
    };
    let mut a = action(text);
    if a == Action::Undefined {
        a = action(crlf);
    }
    if a == Action::Binary {
        return Eol::Keep;
    }
    let wants_crlf = matches!(eol, StateRef::Value(v) if v.as_bstr() == "crlf");
    match (a, wants_crlf) {
        (Action::Auto, true) => Eol::AutoCrlf,
        (_, true) => Eol::Crlf,
        // text, text=auto, input, eol=lf or nothing: LF, as stored.
        _ => Eol::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(files: &[(&str, &str)]) -> Walk {
        Walk::new(files.iter().map(|(d, b)| (d.as_bytes().to_vec(), b.as_bytes().to_vec())).collect())
    }

    #[test]
    fn deeper_files_and_later_lines_win_and_macros_apply() {
        let mut w = walk(&[
            ("", "*.txt eol=crlf\n*.bat text eol=crlf\n*.bin binary\n*.auto text=auto eol=crlf\n*.id ident\n"),
            ("sub", "*.txt -text\n"),
            ("sub/deeper", "a.txt eol=crlf\nb.txt text eol=crlf\n[attr]mine text eol=crlf\n*.m mine\n"),
        ]);
        let mut paths = vec![
            "a.auto",
            "a.bat",
            "a.bin",
            "a.id",
            "a.txt",
            "other",
            "sub/a.txt",
            "sub/deeper/a.txt",
            "sub/deeper/b.txt",
            "sub/deeper/c.m",
            "sub2/a.txt",
        ];
        paths.sort();
        let got: Vec<(&str, FileAttributes)> = paths.iter().map(|p| (*p, w.of(p.as_bytes()))).collect();
        let want = |ident, eol| FileAttributes { ident, eol };
        assert_eq!(
            got,
            vec![
                ("a.auto", want(false, Eol::AutoCrlf)),
                ("a.bat", want(false, Eol::Crlf)),
                ("a.bin", want(false, Eol::Keep)),
                ("a.id", want(true, Eol::Keep)),
                ("a.txt", want(false, Eol::Crlf)),
                ("other", want(false, Eol::Keep)),
                ("sub/a.txt", want(false, Eol::Keep)),
                // -text from sub/ still holds: eol alone does not undo it
                // (checked against git 2.47).
                ("sub/deeper/a.txt", want(false, Eol::Keep)),
                ("sub/deeper/b.txt", want(false, Eol::Crlf)),
                // A macro below the top level is ignored.
                ("sub/deeper/c.m", want(false, Eol::Keep)),
                ("sub2/a.txt", want(false, Eol::Crlf)),
            ]
        );
    }

    #[test]
    fn eol_follows_git_with_a_default_config() {
        use StateRef::*;
        let v = |s: &'static str| Value(s.into());
        assert_eq!(eol_of(Set, Unspecified, Unspecified), Eol::Keep, "text: LF, as stored");
        assert_eq!(eol_of(Unspecified, Unspecified, v("crlf")), Eol::Crlf, "eol=crlf implies text");
        assert_eq!(eol_of(Unset, Unspecified, v("crlf")), Eol::Keep, "-text wins over eol");
        assert_eq!(eol_of(v("auto"), Unspecified, v("crlf")), Eol::AutoCrlf);
        assert_eq!(eol_of(v("auto"), Unspecified, Unspecified), Eol::Keep);
        assert_eq!(eol_of(Unspecified, Set, v("crlf")), Eol::Crlf, "crlf is text's old name");
        assert_eq!(eol_of(Unspecified, v("input"), Unspecified), Eol::Keep, "crlf=input is LF");
        assert_eq!(eol_of(Unspecified, v("input"), v("crlf")), Eol::Crlf, "unless eol says otherwise");
        assert_eq!(eol_of(Unspecified, Unset, v("crlf")), Eol::Keep);
    }
}
