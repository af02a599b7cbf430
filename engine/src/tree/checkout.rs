//! What `git checkout` does to a blob's bytes on the way to the working
//! tree, with a default git config on Linux (`core.autocrlf` false,
//! `core.eol` native, which is LF): the `ident` expansion, then LF to
//! CRLF where the attributes ask for CRLF endings. Nothing else: a filter
//! driver (`filter=`), `working-tree-encoding` or any command a repo names
//! is never run, because a repo's attributes are hostile input.
//!
//! The node decides, per path, which of the two apply to a blob
//! ([`Conversion::decide`], which reads the blob: `text=auto` looks at the
//! bytes), and writes the decision into the tree index; the mount applies
//! exactly that decision ([`to_worktree`]) to the blob it fetched, so it
//! needs no attributes of its own. Both follow git's `convert.c`
//! (`gather_stats`, `will_convert_lf_to_crlf`, `ident_to_worktree`),
//! including its quirks: a stray `$Id: ... $` is replaced, a CR before an
//! LF keeps that LF as it is.
//!
//! This module is pure: bytes in, bytes out; no I/O, no state.

/// The line-ending attribute of a path, as git resolves `text`, `crlf`
/// and `eol` (`convert_attrs`), reduced to what matters on checkout with a
/// default config: whether CRLF is wanted, and whether only for text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eol {
    /// The blob's bytes as they are (`-text`, unspecified, `text` or
    /// `text=auto` without `eol=crlf`, `eol=lf`).
    Keep,
    /// `eol=crlf` (with `text`, or alone: it implies `text`).
    Crlf,
    /// `text=auto eol=crlf`: CRLF only if the blob looks like text and
    /// has no CR at all.
    AutoCrlf,
}

/// The conversions the mount applies to one blob, as the index says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conversion(u8);

impl Conversion {
    pub const NONE: Conversion = Conversion(0);
    const IDENT: u8 = 1;
    const CRLF: u8 = 2;
    const ALL: u8 = Self::IDENT | Self::CRLF;

    /// The bits of an index entry, or None for bits no version knows.
    pub fn from_bits(bits: u8) -> Option<Conversion> {
        (bits & !Self::ALL == 0).then_some(Conversion(bits))
    }

    /// Any bits, unchecked: for tests of what refuses unknown ones.
    #[cfg(test)]
    pub(crate) fn raw(bits: u8) -> Conversion {
        Conversion(bits)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    pub fn ident(self) -> bool {
        self.0 & Self::IDENT != 0
    }

    pub fn crlf(self) -> bool {
        self.0 & Self::CRLF != 0
    }

    /// What checkout does to `blob` given its attributes: `ident` set, and
    /// its line-ending attribute. Only what changes the bytes is kept: an
    /// `ident` blob with no `$Id` keyword, or a CRLF blob with no lone LF,
    /// converts to nothing.
    pub fn decide(blob: &[u8], ident: bool, eol: Eol) -> Conversion {
        let mut bits = 0;
        if ident && count_ident(blob) > 0 {
            bits |= Self::IDENT;
        }
        // git gathers the stats after the ident expansion, which adds no
        // CR or LF and removes none a keyword may hold (it stops at one).
        let crlf = match eol {
            Eol::Keep => false,
            Eol::Crlf => Stats::of(blob).lone_lf > 0,
            Eol::AutoCrlf => {
                let s = Stats::of(blob);
                s.lone_lf > 0 && s.lone_cr == 0 && s.crlf == 0 && !s.is_binary()
            }
        };
        if crlf {
            bits |= Self::CRLF;
        }
        Conversion(bits)
    }
}

/// Most bytes a conversion may make of a blob of CHECKOUT_CONVERT_MAX_BYTES
/// (CRLF at most doubles it; a blob of `$Id$` keywords would grow twelve
/// times): past it, neither node nor mount converts.
pub const CONVERTED_MAX_BYTES: u64 = 2 * crate::limits::CHECKOUT_CONVERT_MAX_BYTES;

/// The bytes `git checkout` writes for `blob` (whose id is `oid`) under
/// `conv`, or None past CONVERTED_MAX_BYTES.
pub fn to_worktree(blob: &[u8], oid: &[u8; 20], conv: Conversion) -> Option<Vec<u8>> {
    let expanded;
    let mut bytes = blob;
    if conv.ident() {
        expanded = expand_ident(blob, oid)?;
        bytes = &expanded;
    }
    if !conv.crlf() {
        return Some(bytes.to_vec());
    }
    let lone_lf = Stats::of(bytes).lone_lf;
    if (bytes.len() + lone_lf) as u64 > CONVERTED_MAX_BYTES {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() + lone_lf);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Some(out)
}

/// git's `text_stat`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    nul: usize,
    lone_cr: usize,
    lone_lf: usize,
    crlf: usize,
    printable: usize,
    non_printable: usize,
}

impl Stats {
    /// git's `gather_stats`.
    fn of(buf: &[u8]) -> Stats {
        let mut s = Stats::default();
        let mut i = 0;
        while i < buf.len() {
            let c = buf[i];
            i += 1;
            match c {
                b'\r' if buf.get(i) == Some(&b'\n') => {
                    s.crlf += 1;
                    i += 1;
                }
                b'\r' => s.lone_cr += 1,
                b'\n' => s.lone_lf += 1,
                127 => s.non_printable += 1,
                // BS, HT, ESC and FF count as printable.
                8 | 9 | 27 | 12 => s.printable += 1,
                0 => {
                    s.nul += 1;
                    s.non_printable += 1;
                }
                c if c < 32 => s.non_printable += 1,
                _ => s.printable += 1,
            }
        }
        // A DOS end-of-file mark last is no sign of binary.
        if buf.last() == Some(&0o32) {
            s.non_printable -= 1;
        }
        s
    }

    /// git's `convert_is_binary`.
    fn is_binary(&self) -> bool {
        self.lone_cr > 0 || self.nul > 0 || (self.printable >> 7) < self.non_printable
    }
}

/// git's `count_ident`: `$Id$` and `$Id:...$` (on one line).
fn count_ident(buf: &[u8]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < buf.len() {
        let c = buf[i];
        i += 1;
        if c != b'$' {
            continue;
        }
        if buf.len() - i < 3 {
            break;
        }
        if &buf[i..i + 2] != b"Id" {
            continue;
        }
        let next = buf[i + 2];
        i += 3;
        if next == b'$' {
            count += 1;
        }
        if next != b':' {
            continue;
        }
        while i < buf.len() {
            let c = buf[i];
            i += 1;
            if c == b'$' {
                count += 1;
                break;
            }
            if c == b'\n' {
                break;
            }
        }
    }
    count
}

/// git's `ident_to_worktree`: every `$Id$`, and every `$Id:...$` on one
/// line without a space inside its value, becomes `$Id: <oid> $`.
fn expand_ident(src: &[u8], oid: &[u8; 20]) -> Option<Vec<u8>> {
    let id = format!("Id: {} $", super::oid_hex(oid));
    let mut out = Vec::with_capacity(src.len() + 64);
    let mut rest = src;
    // Step 1: to the next '$', which is kept.
    while let Some(d) = rest.iter().position(|&b| b == b'$') {
        out.extend_from_slice(&rest[..=d]);
        rest = &rest[d + 1..];
        // Step 2: "Id$" or "Id:...$"?
        if rest.len() < 3 || &rest[..2] != b"Id" {
            continue;
        }
        if rest[2] == b'$' {
            rest = &rest[3..];
        } else if rest[2] == b':' {
            let Some(end) = rest[3..].iter().position(|&b| b == b'$').map(|p| p + 3) else {
                // An unfinished keyword: nothing more to expand.
                break;
            };
            if rest[3..end].contains(&b'\n') {
                continue;
            }
            // A space inside the value, not right before the closing
            // '$': another system's keyword, left alone.
            if end > 4 && rest[4..end].iter().position(|&b| b == b' ').is_some_and(|s| 4 + s < end - 1) {
                continue;
            }
            rest = &rest[end + 1..];
        } else {
            continue;
        }
        out.extend_from_slice(id.as_bytes());
        if (out.len() + rest.len()) as u64 > CONVERTED_MAX_BYTES {
            return None;
        }
    }
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: [u8; 20] = [0xab; 20];

    fn crlf() -> Conversion {
        Conversion(Conversion::CRLF)
    }

    #[test]
    fn lone_lfs_become_crlf_and_crlfs_stay() {
        let conv = |b: &[u8], c| to_worktree(b, &OID, c).expect("small");
        assert_eq!(conv(b"a\nb\r\nc\n", crlf()), b"a\r\nb\r\nc\r\n");
        assert_eq!(conv(b"\n\n", crlf()), b"\r\n\r\n");
        assert_eq!(conv(b"no newline", crlf()), b"no newline");
        assert_eq!(conv(b"x\n", Conversion::NONE), b"x\n");
    }

    #[test]
    fn auto_converts_only_text_without_any_cr() {
        assert_eq!(Conversion::decide(b"a\nb\n", false, Eol::AutoCrlf), crlf());
        assert_eq!(Conversion::decide(b"a\r\nb\n", false, Eol::AutoCrlf), Conversion::NONE, "a CRLF already");
        assert_eq!(Conversion::decide(b"a\rb\n", false, Eol::AutoCrlf), Conversion::NONE, "a lone CR");
        assert_eq!(Conversion::decide(b"a\0b\n", false, Eol::AutoCrlf), Conversion::NONE, "a NUL is binary");
        assert_eq!(Conversion::decide(b"a\0b\n", false, Eol::Crlf), crlf(), "eol=crlf converts binary too");
        assert_eq!(Conversion::decide(b"a\r\nb", false, Eol::Crlf), Conversion::NONE, "no lone LF");
        assert_eq!(Conversion::decide(b"a\nb\n", false, Eol::Keep), Conversion::NONE);
        let mostly_control: Vec<u8> = std::iter::repeat_n(1u8, 10).chain(*b"\nabc").collect();
        assert!(Stats::of(&mostly_control).is_binary());
        assert!(!Stats::of(b"text\n\x1a").is_binary(), "a trailing ^Z is not counted");
    }

    #[test]
    fn ident_expands_as_git_does() {
        let hex = "ab".repeat(20);
        let ident = Conversion(Conversion::IDENT);
        let cases: [(&[u8], String); 6] = [
            (b"$Id$", format!("$Id: {hex} $")),
            (b"a $Id$ b $Id$", format!("a $Id: {hex} $ b $Id: {hex} $")),
            (b"$Id: old $", format!("$Id: {hex} $")),
            (b"$Id: other system $", "$Id: other system $".into()),
            (b"$Id: across\nlines $", "$Id: across\nlines $".into()),
            (b"$Id: unfinished", "$Id: unfinished".into()),
        ];
        for (src, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&to_worktree(src, &OID, ident).expect("small")),
                want,
                "{:?}",
                String::from_utf8_lossy(src)
            );
        }
        assert_eq!(Conversion::decide(b"no keyword", true, Eol::Keep), Conversion::NONE);
        assert_eq!(Conversion::decide(b"$Id$\n", true, Eol::Crlf), Conversion(3));
        assert_eq!(to_worktree(b"$Id$\n", &OID, Conversion(3)), Some(format!("$Id: {hex} $\r\n").into_bytes()));
    }

    #[test]
    fn a_conversion_that_would_grow_past_the_bound_is_refused() {
        let keywords = b"$Id$".repeat((CONVERTED_MAX_BYTES / 40) as usize);
        assert!(to_worktree(&keywords, &OID, Conversion(Conversion::IDENT)).is_none(), "12x growth");
        let lines = vec![b'\n'; (CONVERTED_MAX_BYTES / 2 + 1) as usize];
        assert!(to_worktree(&lines, &OID, crlf()).is_none(), "past the bound when doubled");
    }

    #[test]
    fn unknown_bits_are_refused() {
        assert_eq!(Conversion::from_bits(3), Some(Conversion(3)));
        assert_eq!(Conversion::from_bits(4), None);
    }
}
