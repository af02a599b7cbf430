//! What the node reads of an upload-pack request, with one pkt-line
//! decoder (gix-packetline): its wants, where its want section ends, and
//! whether it is a clone that may share its response.
//!
//! git sends the wants first: the section ends at the first flush (v0;
//! in v2 a flush ends the whole request), `have` or `done`. A want after
//! that is upload-pack's to judge, not counted here. The rest of the
//! request is upload-pack's to parse; this module checks only the framing
//! of what it reads.

use gix_packetline::decode::{self, Stream};
use gix_packetline::PacketLineRef;

/// A want section read so far; fed the growing request, it picks up
/// where it stopped (each line is decoded once).
#[derive(Debug, Default)]
pub struct WantScan {
    pub wants: Vec<String>,
    /// The want section has ended (a flush, a `have` or `done` came).
    pub complete: bool,
    /// A `have` came: the client has objects (a fetch, not a clone).
    pub haves: bool,
    /// Where the first line not yet decoded starts.
    pub pos: usize,
}

/// Why a request is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a git upload-pack request: {0}")]
pub struct NotARequest(pub String);

impl WantScan {
    /// Decodes the whole pkt-lines of `body` past `pos`.
    pub fn advance(&mut self, body: &[u8]) -> Result<(), NotARequest> {
        while self.pos < body.len() {
            let (line, used) = match decode::streaming(&body[self.pos..]) {
                Ok(Stream::Complete { line, bytes_consumed }) => (line, bytes_consumed),
                Ok(Stream::Incomplete { .. }) => break,
                Err(e) => return Err(NotARequest(format!("bad pkt-line ({e})"))),
            };
            match line {
                PacketLineRef::Flush => self.complete = true,
                PacketLineRef::Delimiter | PacketLineRef::ResponseEnd => {}
                PacketLineRef::Data(d) => {
                    if d.starts_with(b"have ") {
                        self.haves = true;
                        self.complete = true;
                    } else if d.starts_with(b"done") {
                        self.complete = true;
                    } else if !self.complete {
                        if let Some(w) = d.strip_prefix(b"want ") {
                            let sha = w.get(..40).ok_or_else(|| NotARequest("short want".into()))?;
                            if !sha.iter().all(u8::is_ascii_hexdigit) {
                                return Err(NotARequest("want is not an object id".into()));
                            }
                            self.wants.push(String::from_utf8_lossy(sha).into_owned());
                        }
                    }
                }
            }
            self.pos += used;
        }
        Ok(())
    }
}

/// Whether a whole request body may share its response: well framed to
/// its last byte, it wants something and has nothing.
pub fn shareable(body: &[u8]) -> bool {
    let mut s = WantScan::default();
    s.advance(body).is_ok() && s.pos == body.len() && !s.wants.is_empty() && !s.haves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    fn scan(body: &[u8]) -> Result<WantScan, NotARequest> {
        let mut s = WantScan::default();
        s.advance(body)?;
        Ok(s)
    }

    #[test]
    fn clones_share_and_fetches_do_not() {
        let want = pkt("want 0123456789012345678901234567890123456789 side-band-64k\n");
        let have = pkt("have 0123456789012345678901234567890123456789\n");
        let done = pkt("done\n");
        assert!(shareable(format!("{want}0000{done}").as_bytes()));
        let v2 = format!("{}{}0001{want}{done}0000", pkt("command=fetch\n"), pkt("agent=git/2.47\n"));
        assert!(shareable(v2.as_bytes()));
        assert!(!shareable(format!("{want}0000{have}{done}").as_bytes()), "a fetch names haves");
        assert!(!shareable(format!("{}0000", pkt("command=ls-refs\n")).as_bytes()), "nothing wanted");
        assert!(!shareable(b"zzzzgarbage"), "not pkt-lines");
        assert!(!shareable(format!("{want}00").as_bytes()), "cut short");
    }

    #[test]
    fn wants_are_collected_until_the_want_section_ends() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let line = pkt(&format!("want {sha} multi_ack side-band-64k\n"));
        let body = format!("{line}0000{}", pkt("done\n"));
        let s = scan(body.as_bytes()).expect("valid in this test");
        assert_eq!((s.wants, s.complete, s.pos), (vec![sha.to_owned()], true, body.len()));
        // A want after the section is upload-pack's to judge.
        assert_eq!(scan(format!("{line}0000{line}").as_bytes()).expect("framed").wants.len(), 1);
        // Unfinished: no end yet, and a partial line left.
        let open = format!("{line}00");
        let s = scan(open.as_bytes()).expect("framed so far");
        assert_eq!((s.complete, s.pos), (false, open.len() - 2));
        // Fed in pieces, it picks up where it stopped.
        let mut s = WantScan::default();
        for end in [3, 10, body.len()] {
            s.advance(&body.as_bytes()[..end]).expect("framed");
        }
        assert_eq!((s.wants.len(), s.complete, s.pos), (1, true, body.len()));
        for bad in ["zzzz", "0003", &pkt("want x\n"), &pkt("want ")] {
            assert!(scan(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
