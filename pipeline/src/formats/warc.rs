//! A streaming WARC reader (WARC/1.0, 1.1 and the 0.18 of older crawls) over plain files or
//! gzip files of any member layout. Common Crawl writes one gzip member per record; the
//! reader tracks members so every record carries the compressed offset of the member it
//! starts in (what the Common Crawl index calls `offset`), and a corrupt member is skipped by
//! resynchronizing on the next one. Records are yielded with their raw content block; what a
//! block means (HTTP, text) is for the caller. Not an HTML parser, not an ARC reader.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

/// Content blocks claimed larger than this are scanned past, never held, and ledgered
/// (`record_too_large`, or `bad_content_length` when a record starts inside the claim). Common
/// Crawl truncates payloads far below it; text documents this large are not training data.
pub const MAX_BLOCK_BYTES: u64 = 64 << 20;
/// A record's header section larger than this is not a header.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// One WARC record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcRecord {
    /// The version line, e.g. `WARC/1.0`.
    pub version: String,
    /// Header fields in file order, names as written, values trimmed (continuations joined).
    pub headers: Vec<(String, String)>,
    /// The content block: exactly `Content-Length` bytes.
    pub block: Vec<u8>,
    /// Compressed offset of the gzip member the record starts in (for plain files, the byte offset).
    pub offset: u64,
    /// Offset of the record in the decompressed stream.
    pub stream_offset: u64,
    /// Decompressed bytes the record covers: blank lines before it, headers, block, trailer.
    pub span: u64,
    /// The record was not followed by the two CRLFs the format requires (kept; reported).
    pub missing_trailer: bool,
    /// `Content-Length` ran into the next record; the block was cut where that record starts.
    pub short_length: bool,
}

impl WarcRecord {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// `WARC-Type`, lowercased.
    pub fn record_type(&self) -> String {
        self.header("WARC-Type").unwrap_or("").to_ascii_lowercase()
    }
    /// `WARC-Target-URI`, without the `<...>` some writers (wget) wrap it in.
    pub fn target_uri(&self) -> Option<&str> {
        self.header("WARC-Target-URI").map(|u| u.trim().trim_start_matches('<').trim_end_matches('>').trim())
    }
}

/// What the reader yields: a record, or a stretch of input that could not be a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarcItem {
    Record(WarcRecord),
    Bad {
        /// Compressed offset (member start for gzip).
        offset: u64,
        stream_offset: u64,
        /// Decompressed bytes of the stretch, from the end of the previous item.
        bytes: u64,
        /// `corrupt_gzip`, `truncated_gzip`, `truncated_record`, `malformed_record`,
        /// `record_too_large`, `bad_content_length`.
        reason: &'static str,
        detail: String,
        /// Compressed bytes skipped to find the next gzip member (`corrupt_gzip`, `truncated_gzip`).
        gzip_skipped: u64,
    },
    /// Bytes skipped after a record that was not followed by its CRLF CRLF (warcio's "record
    /// not followed by newline"): the rest of that record, not a record of its own.
    Skipped {
        offset: u64,
        /// Decompressed bytes skipped, from the end of the record.
        bytes: u64,
    },
}

/// A decompressed byte stream that knows where its bytes came from.
pub trait WarcSource: BufRead {
    /// Compressed offset of the member containing decompressed position `pos`.
    fn origin(&mut self, pos: u64) -> u64;
    /// After a decoding error: skip to the next compressed member. Whether one was found
    /// (false at the end) and the compressed bytes skipped.
    fn resync(&mut self) -> io::Result<(bool, u64)>;
    /// Whether the underlying file itself failed to read (not a decoding problem).
    fn raw_failed(&self) -> bool;
    /// Decompressed bytes handed out so far (the stream position of the next byte).
    fn position(&self) -> u64;
    /// Appends the next decompressed bytes to `win`: 0 at the end. By default at most
    /// [`READ_CHUNK`] bytes of what the source buffers; a gzip source decodes whole members
    /// straight into `win`.
    fn fill_into(&mut self, win: &mut Vec<u8>) -> io::Result<usize> {
        let b = self.fill_buf()?;
        // At most 64 KiB per read, whatever the source buffers (a cursor hands out everything).
        let n = b.len().min(READ_CHUNK);
        win.extend_from_slice(&b[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// `Read::read` for a type whose reading goes through its own `BufRead`.
fn read_buffered(r: &mut impl BufRead, out: &mut [u8]) -> io::Result<usize> {
    let avail = r.fill_buf()?;
    let n = avail.len().min(out.len());
    out[..n].copy_from_slice(&avail[..n]);
    r.consume(n);
    Ok(n)
}

/// Counts consumed bytes of a `BufRead` and remembers whether reading it failed.
pub struct Counted<R> {
    inner: R,
    pos: u64,
    failed: bool,
}

impl<R: BufRead> Counted<R> {
    pub fn new(inner: R) -> Self {
        Counted { inner, pos: 0, failed: false }
    }
    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }
    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, buf)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self.inner.fill_buf() {
            Ok(b) => Ok(b),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
    fn consume(&mut self, n: usize) {
        self.pos += n as u64;
        self.inner.consume(n);
    }
}

/// A plain (uncompressed) WARC stream.
pub struct Plain<R>(pub Counted<R>);

impl<R: BufRead> Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
impl<R: BufRead> BufRead for Plain<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.0.consume(n)
    }
}
impl<R: BufRead> WarcSource for Plain<R> {
    fn origin(&mut self, pos: u64) -> u64 {
        pos
    }
    fn resync(&mut self) -> io::Result<(bool, u64)> {
        Ok((false, 0))
    }
    fn raw_failed(&self) -> bool {
        self.0.failed
    }
    fn position(&self) -> u64 {
        self.0.pos
    }
}

enum Member<R: BufRead> {
    Between(Counted<R>),
    In(Box<flate2::bufread::GzDecoder<Counted<R>>>),
    Poisoned,
}

/// Gzip members decoded one after another, each start remembered as (decompressed start,
/// compressed start), so a record can be traced to its member.
///
/// A member that lies whole in the input's buffer is decoded in one call by libdeflate
/// ([`super::inflate`]); any other (cut by the buffer's end, larger than
/// [`super::inflate::MAX_MEMBER_OUTPUT`] decompressed, corrupt, truncated) streams through
/// flate2 from its first byte, which reports errors and resynchronizes as before. Give the
/// input a buffer larger than most members ([`INPUT_BUFFER`]).
pub struct GzMembers<R: BufRead> {
    state: Member<R>,
    /// Recent members, oldest first; entries before the last record start are dropped.
    members: VecDeque<(u64, u64)>,
    /// Decompressed bytes produced so far.
    produced: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    inflater: Option<super::inflate::Inflater>,
    /// Members decoded whole by libdeflate, and streamed by flate2.
    whole: u64,
    streamed: u64,
}

/// The input buffer WARC readers should use: most Common Crawl members (a few KiB to a few
/// hundred) then lie whole in it and take the fast path.
pub const INPUT_BUFFER: usize = 1 << 20;

impl<R: BufRead> GzMembers<R> {
    pub fn new(inner: Counted<R>) -> Self {
        GzMembers {
            state: Member::Between(inner),
            members: VecDeque::new(),
            produced: 0,
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
            inflater: super::inflate::Inflater::new(),
            whole: 0,
            streamed: 0,
        }
    }

    /// The same reader without the libdeflate path: every member streams through flate2 (what
    /// the fast path is tested against).
    pub fn streaming_only(inner: Counted<R>) -> Self {
        GzMembers { inflater: None, ..GzMembers::new(inner) }
    }

    /// Members decoded so far: (whole, by libdeflate; streamed, by flate2).
    pub fn members_decoded(&self) -> (u64, u64) {
        (self.whole, self.streamed)
    }

    /// Decodes the next chunk into the buffer; 0 at the end of the input.
    fn refill(&mut self) -> io::Result<usize> {
        loop {
            match std::mem::replace(&mut self.state, Member::Poisoned) {
                Member::In(mut d) => match d.read(&mut self.buf) {
                    Ok(0) => self.state = Member::Between((*d).into_inner()),
                    Ok(n) => {
                        self.state = Member::In(d);
                        self.start = 0;
                        self.end = n;
                        self.produced += n as u64;
                        return Ok(n);
                    }
                    Err(e) => {
                        self.state = Member::Between((*d).into_inner());
                        return Err(e);
                    }
                },
                Member::Between(mut c) => {
                    let empty = match c.fill_buf() {
                        Ok(b) => b.is_empty(),
                        Err(e) => {
                            self.state = Member::Between(c);
                            return Err(e);
                        }
                    };
                    if empty {
                        self.state = Member::Between(c);
                        return Ok(0);
                    }
                    self.members.push_back((self.produced, c.position()));
                    let whole = match (&mut self.inflater, c.fill_buf()) {
                        (Some(inflater), Ok(input)) => inflater.gzip_member(input, &mut self.buf),
                        _ => None,
                    };
                    if let Some((used, n)) = whole {
                        c.consume(used);
                        self.state = Member::Between(c);
                        self.whole += 1;
                        if n > 0 {
                            self.start = 0;
                            self.end = n;
                            self.produced += n as u64;
                            return Ok(n);
                        }
                        continue;
                    }
                    self.streamed += 1;
                    self.state = Member::In(Box::new(flate2::bufread::GzDecoder::new(c)));
                }
                Member::Poisoned => return Ok(0),
            }
        }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl<R: BufRead> BufRead for GzMembers<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.refill()?;
        }
        Ok(&self.buf[self.start..self.end])
    }
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

impl<R: BufRead> WarcSource for GzMembers<R> {
    fn origin(&mut self, pos: u64) -> u64 {
        while self.members.len() > 1 && self.members[1].0 <= pos {
            self.members.pop_front();
        }
        self.members.front().map(|m| m.1).unwrap_or(0)
    }

    fn resync(&mut self) -> io::Result<(bool, u64)> {
        // Drop what is buffered from the bad member, then scan the compressed bytes for the
        // next gzip header (1f 8b 08). What is skipped counts from the bad member's start.
        self.start = self.end;
        let Member::Between(mut c) = std::mem::replace(&mut self.state, Member::Poisoned) else {
            return Ok((false, 0));
        };
        let from = self.members.back().map(|m| m.1).unwrap_or(0);
        loop {
            let here = c.position();
            let buf = match c.fill_buf() {
                Ok(b) => b,
                Err(e) => {
                    self.state = Member::Between(c);
                    return Err(e);
                }
            };
            if buf.is_empty() {
                let skipped = c.position() - from;
                self.state = Member::Between(c);
                return Ok((false, skipped));
            }
            match memchr::memmem::find(buf, &[0x1f, 0x8b, 0x08]) {
                // Not the bad member's own header again.
                Some(i) if here + i as u64 > from => {
                    c.consume(i);
                    let skipped = c.position() - from;
                    self.state = Member::Between(c);
                    return Ok((true, skipped));
                }
                _ => {
                    // Keep the last two bytes: a header may straddle the buffer edge.
                    let skip = buf.len().saturating_sub(2).max(1);
                    c.consume(skip);
                }
            }
        }
    }

    fn raw_failed(&self) -> bool {
        match &self.state {
            Member::Between(c) => c.failed,
            Member::In(d) => d.get_ref().failed,
            Member::Poisoned => false,
        }
    }

    fn position(&self) -> u64 {
        self.produced - (self.end - self.start) as u64
    }

    fn fill_into(&mut self, win: &mut Vec<u8>) -> io::Result<usize> {
        while self.start == self.end && self.inflater.is_some() && matches!(self.state, Member::Between(_)) {
            match self.whole_members_into(win)? {
                Some(0) => continue,
                Some(n) => return Ok(n),
                None => break,
            }
        }
        let b = self.fill_buf()?;
        let n = b.len().min(READ_CHUNK);
        win.extend_from_slice(&b[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Decompressed bytes one batch of whole members may add to the window.
const BATCH_OUTPUT: usize = 8 << 20;
/// Below this much planned output a batch decodes on the calling thread.
const PARALLEL_OUTPUT: usize = 256 << 10;

impl<R: BufRead> GzMembers<R> {
    /// Decodes the members lying whole in the input buffer straight into `win`, in parallel
    /// when there are several (see [`super::inflate::plan_members`]): `Some(bytes appended)`,
    /// or None when the next member does not decode whole here; it is then set to stream
    /// through flate2, which reports its error or reads past the buffer's end.
    fn whole_members_into(&mut self, win: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let (Member::Between(c), Some(inflater)) = (&mut self.state, self.inflater.as_mut()) else {
            return Ok(None);
        };
        let at = c.position();
        let input = c.fill_buf()?;
        if input.is_empty() {
            return Ok(None);
        }
        let spans = super::inflate::plan_members(input, BATCH_OUTPUT);
        let planned: usize = spans.iter().map(|s| s.size).sum();
        let parallel = spans.len() > 1 && planned >= PARALLEL_OUTPUT;
        let good = super::inflate::decode_planned(inflater, input, &spans, win, parallel);
        let (used, bytes) = if good > 0 {
            for s in &spans[..good] {
                self.members.push_back((self.produced, at + s.start as u64));
                self.produced += s.size as u64;
            }
            self.whole += good as u64;
            (spans[good - 1].end, spans[..good].iter().map(|s| s.size).sum())
        } else {
            // One member, its end unknown: decoded with room for four times its input.
            let guess = input.len().saturating_mul(4);
            match inflater.gzip_member_append(input, win, guess) {
                Some((used, n)) => {
                    self.members.push_back((self.produced, at));
                    self.produced += n as u64;
                    self.whole += 1;
                    (used, n)
                }
                None => {
                    if let Member::Between(c) = std::mem::replace(&mut self.state, Member::Poisoned) {
                        self.members.push_back((self.produced, at));
                        self.streamed += 1;
                        self.state = Member::In(Box::new(flate2::bufread::GzDecoder::new(c)));
                    }
                    return Ok(None);
                }
            }
        };
        if let Member::Between(c) = &mut self.state {
            c.consume(used);
        }
        Ok(Some(bytes))
    }
}

/// Streams WARC records (and reports of bad stretches) from a [`WarcSource`].
///
/// Bytes are read once into a window (`win`, stream bytes `base..base + win.len()`) and a
/// record is parsed in place, so when a `Content-Length` overruns into later records the block
/// is cut at the next version line and those records are parsed from the same window: nothing
/// is copied back or read twice (linear time on any input). The window holds at most one
/// header section and one claimed block (`MAX_HEADER_BYTES + MAX_BLOCK_BYTES`), twice over
/// before it is compacted; a block claimed larger is scanned without being kept.
pub struct WarcReader<S> {
    src: S,
    win: Vec<u8>,
    /// Parsing position in `win`.
    at: usize,
    /// Stream position of `win[0]`.
    base: u64,
    /// The source has nothing more (its end, or the decoding error held in `pending`).
    eof: bool,
    /// A decoding error met while reading; reported once what was read before it is used.
    pending: Option<io::Error>,
    done: bool,
    /// Stream position where the current item began (the end of the previous one).
    lead: u64,
    /// The last record lacked its trailer: what follows up to the next version line is its tail.
    after_missing_trailer: bool,
}

/// The most the window takes from the source at a time.
const READ_CHUNK: usize = 64 << 10;
/// The longest line the reader looks at: a header line over 64 KiB is not a header.
pub const MAX_LINE_BYTES: usize = 64 << 10;

impl<S: WarcSource> WarcReader<S> {
    pub fn new(src: S) -> Self {
        WarcReader {
            src,
            win: Vec::new(),
            at: 0,
            base: 0,
            eof: false,
            pending: None,
            done: false,
            lead: 0,
            after_missing_trailer: false,
        }
    }

    /// Stream position of the parsing point.
    fn pos(&self) -> u64 {
        self.base + self.at as u64
    }

    /// Drops the parsed part of the window once it is at least half of it, so each byte is
    /// moved at most once on average. Only called where no window index is held.
    fn compact(&mut self) {
        if self.at > 0 && self.at >= self.win.len() / 2 {
            self.win.drain(..self.at);
            self.base += self.at as u64;
            self.at = 0;
        }
    }

    /// Appends the source's next bytes to the window; false when there are none. A decoding
    /// error ends the window there and waits in `pending`; a failure to read the file is an error.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        match self.src.fill_into(&mut self.win) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(e) if self.src.raw_failed() => Err(e),
            Err(e) => {
                self.eof = true;
                self.pending = Some(e);
                Ok(false)
            }
        }
    }

    /// Reads until the window holds `n` bytes or the source has no more.
    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.win.len() < n && self.fill()? {}
        Ok(())
    }

    /// The end of the line starting at window index `from`: just past its `\n`, where the
    /// input ends, or `from + MAX_LINE_BYTES` for a longer line.
    fn line_end(&mut self, from: usize) -> io::Result<usize> {
        let mut scanned = from;
        loop {
            let lim = (from + MAX_LINE_BYTES).min(self.win.len());
            if let Some(i) = memchr::memchr(b'\n', &self.win[scanned..lim]) {
                return Ok(scanned + i + 1);
            }
            if lim == from + MAX_LINE_BYTES || !self.fill()? {
                return Ok(lim);
            }
            scanned = lim;
        }
    }

    /// The next item, or `None` at the end of the input (or where a decoding error stopped it:
    /// the caller reports that error and resynchronizes).
    fn parse(&mut self) -> io::Result<Option<WarcItem>> {
        self.lead = self.pos();
        // Skip the blank lines between records.
        let start = loop {
            self.compact();
            let e = self.line_end(self.at)?;
            if e == self.at {
                return Ok(None);
            }
            if !self.win[self.at..e].iter().all(u8::is_ascii_whitespace) {
                break self.at;
            }
            self.at = e;
        };
        let stream_offset = self.pos();
        let offset = self.src.origin(stream_offset);
        let lead = self.lead;
        let bad = |me: &Self, reason: &'static str, detail: String| WarcItem::Bad {
            offset,
            stream_offset,
            bytes: me.pos() - lead,
            reason,
            detail,
            gzip_skipped: 0,
        };
        let first = self.line_end(start)?;
        let after_missing_trailer = std::mem::take(&mut self.after_missing_trailer);
        if !self.win[start..first].starts_with(b"WARC/") {
            let head = String::from_utf8_lossy(&self.win[start..first.min(start + 40)]).trim_end().to_string();
            self.skip_to_next_record()?;
            if after_missing_trailer {
                return Ok(Some(WarcItem::Skipped { offset, bytes: self.pos() - lead }));
            }
            let n = self.pos() - stream_offset;
            let detail = format!("expected a `WARC/` version line, found {head:?} ({n} bytes skipped)");
            return Ok(Some(bad(self, "malformed_record", detail)));
        }
        let version = String::from_utf8_lossy(trim_eol(&self.win[start..first])).into_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut p = first;
        let body = loop {
            let e = self.line_end(p)?;
            if e == p {
                self.at = e;
                return Ok(Some(bad(self, "truncated_record", "the input ends inside the record's headers".into())));
            }
            if e - start > MAX_HEADER_BYTES || (e - p == MAX_LINE_BYTES && self.win[e - 1] != b'\n') {
                self.at = e;
                self.skip_to_next_record()?;
                let n = self.pos() - stream_offset;
                let detail = format!(
                    "headers over {MAX_HEADER_BYTES} bytes or a header line over {MAX_LINE_BYTES} ({n} bytes skipped)"
                );
                return Ok(Some(bad(self, "malformed_record", detail)));
            }
            let l = trim_eol(&self.win[p..e]);
            p = e;
            if l.is_empty() {
                break e;
            }
            if (l[0] == b' ' || l[0] == b'\t')
                && let Some(last) = headers.last_mut()
            {
                last.1.push(' ');
                last.1.push_str(String::from_utf8_lossy(l).trim());
                continue;
            }
            let text = String::from_utf8_lossy(l).into_owned();
            let Some((name, value)) = text.split_once(':') else {
                self.at = e;
                self.skip_to_next_record()?;
                let n = self.pos() - stream_offset;
                let detail = format!("header line without a colon: {:?} ({n} bytes skipped)", truncate(&text, 60));
                return Ok(Some(bad(self, "malformed_record", detail)));
            };
            headers.push((name.trim().to_string(), value.trim().to_string()));
        };
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.trim().parse::<u64>());
        let length = match length {
            Some(Ok(n)) => n,
            other => {
                let what =
                    if other.is_none() { "no Content-Length header" } else { "a Content-Length that is not a number" };
                self.at = body;
                self.skip_to_next_record()?;
                let n = self.pos() - stream_offset;
                return Ok(Some(bad(self, "malformed_record", format!("{what} ({n} bytes skipped)"))));
            }
        };
        if length > MAX_BLOCK_BYTES {
            let body_pos = self.base + body as u64;
            let reason = self.skip_large_block(body, length)?;
            let skipped = self.pos() - stream_offset;
            let detail = match reason {
                "bad_content_length" => format!(
                    "Content-Length {length} is over the {MAX_BLOCK_BYTES}-byte limit and a record starts {} bytes into the block ({skipped} bytes skipped)",
                    self.pos() - body_pos
                ),
                "record_too_large" => format!("{length} bytes > {MAX_BLOCK_BYTES} ({skipped} bytes skipped)"),
                _ => format!("Content-Length {length} runs past the end of the input ({skipped} bytes skipped)"),
            };
            return Ok(Some(bad(self, reason, detail)));
        }
        let length = length as usize;
        let end = body + length;
        // The block and the CRLF CRLF after it.
        self.need(end + 4)?;
        let avail = (self.win.len() - body).min(length);
        let complete = avail == length;
        // When the trailer is missing (or the input ended early) and a version line stands inside
        // the block, the Content-Length overran into the next record: give the block its real
        // end and parse the next record from where it starts.
        let at_trailer = complete && self.win.get(end).is_none_or(|&b| b == b'\r' || b == b'\n');
        let (block_end, short_length) = if at_trailer {
            (end, false)
        } else if let Some(cut) = version_line_in(&self.win, body, body + avail) {
            (cut, true)
        } else if !complete {
            self.at = self.win.len();
            let detail = format!("Content-Length {length} runs past the end of the input ({avail} bytes present)");
            return Ok(Some(bad(self, "truncated_record", detail)));
        } else {
            (end, false)
        };
        let block_len = if short_length { trim_trailing_eols(&self.win[body..block_end]) } else { block_end - body };
        let block = self.win[body..body + block_len].to_vec();
        self.at = block_end;
        let missing_trailer = short_length || !self.consume_trailer()?;
        self.after_missing_trailer = missing_trailer && !short_length;
        Ok(Some(WarcItem::Record(WarcRecord {
            version,
            headers,
            block,
            offset,
            stream_offset,
            span: self.pos() - lead,
            missing_trailer,
            short_length,
        })))
    }

    /// A block claimed larger than `MAX_BLOCK_BYTES`, starting at window index `body`: scanned
    /// in window-sized steps, never held. A version line inside it means the length is damaged
    /// (`bad_content_length`: reading resumes at that record); none means a record too large
    /// to keep (`record_too_large`, skipped whole); `truncated_record` if the input ends first.
    fn skip_large_block(&mut self, body: usize, length: u64) -> io::Result<&'static str> {
        let end = self.base + body as u64 + length;
        let mut scan = body;
        loop {
            let lim = end.min(self.base + self.win.len() as u64);
            let to = (lim - self.base) as usize;
            // Leave a partial version line at the window's edge for the next round.
            let upto = if self.eof || lim == end { to } else { to.saturating_sub(8).max(scan) };
            if let Some(cut) = version_line_in(&self.win, scan, upto) {
                self.at = cut;
                return Ok("bad_content_length");
            }
            if lim == end {
                self.at = to;
                self.consume_trailer()?;
                return Ok("record_too_large");
            }
            if self.eof {
                self.at = self.win.len();
                return Ok("truncated_record");
            }
            // Keep the byte before the scan point: a version line must follow a line end.
            self.at = upto.saturating_sub(1);
            let keep = upto - self.at;
            self.compact();
            scan = self.at + keep;
            self.fill()?;
        }
    }

    /// Consumes up to two line ends after a block; false if something else comes first.
    fn consume_trailer(&mut self) -> io::Result<bool> {
        let mut newlines = 0;
        while newlines < 2 {
            if self.at == self.win.len() && !self.fill()? {
                return Ok(false);
            }
            match self.win[self.at] {
                b'\r' => self.at += 1,
                b'\n' => {
                    self.at += 1;
                    newlines += 1;
                }
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Skips lines until one starts with `WARC/` (left unread) or the input ends.
    fn skip_to_next_record(&mut self) -> io::Result<()> {
        loop {
            self.compact();
            let e = self.line_end(self.at)?;
            if e == self.at || self.win[self.at..e].starts_with(b"WARC/") {
                return Ok(());
            }
            self.at = e;
        }
    }

    /// Reports the decoding error that ended the window, as an item covering the stream from
    /// `lead` (the unfinished item it cut), and resynchronizes on the next gzip member.
    fn corrupt(&mut self, offset: u64, stream_offset: u64) -> io::Result<WarcItem> {
        let e = self.pending.take().expect("a pending decoding error");
        let reason = if e.kind() == io::ErrorKind::UnexpectedEof { "truncated_gzip" } else { "corrupt_gzip" };
        let bytes = self.base + self.win.len() as u64 - self.lead;
        let (found, gzip_skipped) = self.src.resync()?;
        let detail = format!(
            "{e} ({bytes} decoded bytes dropped; {gzip_skipped} compressed bytes skipped to {})",
            if found { "the next gzip member" } else { "the end of the file" }
        );
        self.win.clear();
        self.at = 0;
        self.base = self.src.position();
        self.eof = !found;
        Ok(WarcItem::Bad { offset, stream_offset, bytes, reason, detail, gzip_skipped })
    }
}

/// The first index in `from..to` where a `WARC/d.d` version line starts after a line end.
fn version_line_in(win: &[u8], from: usize, to: usize) -> Option<usize> {
    let mut i = from.max(1);
    while i < to {
        let hit = memchr::memmem::find(&win[i - 1..to], b"\nWARC/")?;
        let at = i + hit;
        let rest = &win[at + 5..];
        if rest.len() >= 3 && rest[0].is_ascii_digit() && rest[1] == b'.' && rest[2].is_ascii_digit() {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

fn trim_trailing_eols(b: &[u8]) -> usize {
    let mut n = b.len();
    while n > 0 && (b[n - 1] == b'\n' || b[n - 1] == b'\r') {
        n -= 1;
    }
    n
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl<S: WarcSource> Iterator for WarcReader<S> {
    /// An `Err` means the file itself could not be read (not bad data): stop.
    type Item = io::Result<WarcItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.parse() {
            Ok(item) => item,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        // An item that ran into a decoding error is the damaged stretch itself: report it as
        // that error (a record whose whole block was read is kept).
        let cut_short = self.pending.is_some() && self.at == self.win.len();
        let report = match item {
            Some(WarcItem::Record(r)) => return Some(Ok(WarcItem::Record(r))),
            Some(other) if !cut_short => return Some(Ok(other)),
            None if self.pending.is_none() => {
                self.done = true;
                return None;
            }
            Some(WarcItem::Bad { offset, stream_offset, .. }) => self.corrupt(offset, stream_offset),
            Some(WarcItem::Skipped { offset, .. }) => self.corrupt(offset, self.lead),
            None => {
                let p = self.pos();
                let offset = self.src.origin(p);
                self.corrupt(offset, p)
            }
        };
        if report.is_err() {
            self.done = true;
        }
        Some(report)
    }
}

/// Opens a WARC stream over raw bytes: gzip (any member layout) or plain, by magic.
pub fn open<R: BufRead + 'static>(mut raw: Counted<R>) -> io::Result<Box<dyn WarcSourceIter>> {
    let gz = raw.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz { Box::new(WarcReader::new(GzMembers::new(raw))) } else { Box::new(WarcReader::new(Plain(raw))) })
}

/// A boxed WARC reader, whatever its source.
pub trait WarcSourceIter: Iterator<Item = io::Result<WarcItem>> {}
impl<S: WarcSource> WarcSourceIter for WarcReader<S> {}

/// What `grist warc` counts over files: records by type, bad stretches by reason, skipped tails.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Census {
    pub files: usize,
    /// Bytes of the files as stored (compressed where they are).
    pub bytes: u64,
    /// `record <type>`, `bad <reason>` and `skipped tail` -> count.
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// Streams every file through the reader and counts what it finds. A file that cannot be
/// opened or read is an error naming it.
pub fn census(files: &[shards::Loc]) -> Result<Census, shards::ShardError> {
    let mut c = Census { files: files.len(), ..Census::default() };
    for loc in files {
        let at = |e: io::Error| shards::ShardError::io(shards::At::file(loc.to_string()), e);
        c.bytes += loc.size()?;
        let raw = Counted::new(io::BufReader::with_capacity(INPUT_BUFFER, loc.open()?));
        for item in open(raw).map_err(at)? {
            let key = match item.map_err(at)? {
                WarcItem::Record(r) => format!("record {}", r.record_type()),
                WarcItem::Bad { reason, .. } => format!("bad {reason}"),
                WarcItem::Skipped { .. } => "skipped tail".to_string(),
            };
            *c.counts.entry(key).or_default() += 1;
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(kind: &str, uri: &str, body: &str) -> Vec<u8> {
        format!(
            "WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {uri}\r\nWARC-Record-ID: <urn:uuid:{uri}>\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
            body.len()
        )
        .into_bytes()
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn read_all(bytes: Vec<u8>) -> Vec<WarcItem> {
        let r = open(Counted::new(io::Cursor::new(bytes))).unwrap();
        r.map(|i| i.unwrap()).collect()
    }

    #[test]
    fn whole_members_by_libdeflate_read_exactly_as_streaming_at_any_buffer_size() {
        // Members of many sizes (one beyond the fast path's output cap), a corrupt one, a cut
        // one mid-file, garbage between members, and a truncated last member.
        let mut file = Vec::new();
        for i in 0..60 {
            let body = format!("page {i} ").repeat(1 + i * i * 7);
            file.extend(gz(&record("response", &format!("http://x/{i}"), &body)));
            if i == 20 {
                let mut bad = gz(&record("response", "http://x/bad", &"corrupt ".repeat(900)));
                let n = bad.len();
                bad[n / 2] ^= 0x55;
                file.extend(bad);
            }
            if i == 30 {
                file.extend(b"\x00garbage between members\x1f\x8b");
            }
            if i == 35 {
                // Garbage ending in what reads as the previous member's length.
                let isize = file[file.len() - 4..].to_vec();
                file.extend(b"\x00junk");
                file.extend(isize);
            }
            if i == 40 {
                let cut = gz(&record("response", "http://x/cut", &"cut ".repeat(5000)));
                file.extend(&cut[..cut.len() / 3]);
            }
            if i % 9 == 5 {
                // Stored (level 0), so the compressed bytes hold what looks like the next
                // member's header after a small trailer length: a batch plans a wrong span.
                let mut body = format!("stored {i} ").into_bytes();
                body.extend_from_slice(b"\x10\x00\x00\x00\x1f\x8b\x08\x00 ");
                body.extend(std::iter::repeat_n(b's', i * 500));
                let head = format!(
                    "WARC/1.0\r\nWARC-Type: resource\r\nWARC-Target-URI: http://x/stored{i}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
                e.write_all(&[head.as_bytes(), &body, b"\r\n\r\n"].concat()).unwrap();
                file.extend(e.finish().unwrap());
            }
            if i == 50 {
                // A trailer that lies about the member's length (both decoders refuse it).
                let mut lying = gz(&record("response", "http://x/lying", &"lies ".repeat(3000)));
                let n = lying.len();
                lying[n - 3] ^= 0x01;
                file.extend(lying);
            }
        }
        let huge = "0123456789abcdef".repeat((super::super::inflate::MAX_MEMBER_OUTPUT >> 4) + 1000);
        file.extend(gz(&record("resource", "http://x/huge", &huge)));
        let last = gz(&record("response", "http://x/last", "the end"));
        file.extend(&last[..last.len() - 5]);

        let read = |buffer: usize, fast: bool| {
            let raw = Counted::new(io::BufReader::with_capacity(buffer, io::Cursor::new(file.clone())));
            let src = if fast { GzMembers::new(raw) } else { GzMembers::streaming_only(raw) };
            let mut reader = WarcReader::new(src);
            let items: Vec<WarcItem> = (&mut reader).map(|i| i.unwrap()).collect();
            (items, reader.src.members_decoded())
        };
        let (want, (whole, streamed)) = read(1 << 16, false);
        assert_eq!(whole, 0);
        assert!(streamed > 60);
        assert!(records(&want).len() >= 61, "60 pages and the huge one, at least");
        assert!(want.iter().filter(|i| matches!(i, WarcItem::Bad { .. })).count() >= 3);
        assert!(
            want.iter().filter(|i| matches!(i, WarcItem::Bad { .. })).count() >= 5,
            "the lying member and the garbage too"
        );
        let stored: Vec<&str> =
            records(&want).iter().filter_map(|r| r.target_uri().filter(|u| u.contains("stored"))).collect();
        assert_eq!(
            stored.len(),
            7,
            "{stored:?} {:?}",
            want.iter().filter(|i| matches!(i, WarcItem::Bad { .. })).collect::<Vec<_>>()
        );
        for buffer in [64, 4096, 1 << 16, INPUT_BUFFER, 64 << 20] {
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (got, (whole, streamed)) = pool.install(|| read(buffer, true));
                assert_eq!(got, want, "input buffer {buffer}, {threads} threads");
                if buffer >= INPUT_BUFFER {
                    assert!(whole >= 60, "input buffer {buffer}: {whole} whole, {streamed} streamed");
                }
            }
        }
    }

    fn records(items: &[WarcItem]) -> Vec<&WarcRecord> {
        items.iter().filter_map(|i| if let WarcItem::Record(r) = i { Some(r) } else { None }).collect()
    }

    #[test]
    fn plain_records_with_offsets_and_headers() {
        let a = record("conversion", "http://a/", "hello\nworld");
        let b = record("response", "<http://b/>", "body");
        let items = read_all([a.clone(), b].concat());
        let rs = records(&items);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].record_type(), "conversion");
        assert_eq!(rs[0].block, b"hello\nworld");
        assert_eq!(rs[0].header("warc-target-uri"), Some("http://a/"));
        assert_eq!(rs[1].target_uri(), Some("http://b/"));
        assert_eq!((rs[0].offset, rs[1].offset), (0, a.len() as u64));
        assert!(!rs[0].missing_trailer);
    }

    #[test]
    fn per_record_gzip_members_give_member_offsets() {
        let members: Vec<Vec<u8>> =
            (0..5).map(|i| gz(&record("response", &format!("http://x/{i}"), &"y".repeat(i * 1000)))).collect();
        let mut starts = Vec::new();
        let mut at = 0;
        for m in &members {
            starts.push(at as u64);
            at += m.len();
        }
        let items = read_all(members.concat());
        let offsets: Vec<u64> = records(&items).iter().map(|r| r.offset).collect();
        assert_eq!(offsets, starts);
    }

    #[test]
    fn a_corrupt_member_is_reported_and_the_next_ones_read() {
        let good: Vec<Vec<u8>> =
            (0..3).map(|i| gz(&record("response", &format!("http://x/{i}"), "body text"))).collect();
        let mut bad = good[1].clone();
        let mid = bad.len() / 2;
        for b in &mut bad[12..mid] {
            *b ^= 0x55;
        }
        let items = read_all([good[0].clone(), bad, good[2].clone()].concat());
        let uris: Vec<_> = records(&items).iter().map(|r| r.target_uri().unwrap().to_string()).collect();
        assert_eq!(uris, ["http://x/0", "http://x/2"]);
        assert!(items.iter().any(|i| matches!(i, WarcItem::Bad { reason: "corrupt_gzip", .. })), "{items:?}");
    }

    #[test]
    fn offsets_stay_right_after_a_corrupt_member() {
        let good: Vec<Vec<u8>> =
            (0..4).map(|i| gz(&record("response", &format!("http://x/{i}"), &"b".repeat(3000)))).collect();
        let mut bad = good[1].clone();
        for b in &mut bad[12..40] {
            *b ^= 0x5a;
        }
        let members = [good[0].clone(), bad, good[2].clone(), good[3].clone()];
        let starts: Vec<u64> = members
            .iter()
            .scan(0u64, |at, m| {
                let s = *at;
                *at += m.len() as u64;
                Some(s)
            })
            .collect();
        let items = read_all(members.concat());
        let offsets: Vec<(String, u64)> =
            records(&items).iter().map(|r| (r.target_uri().unwrap().to_string(), r.offset)).collect();
        assert_eq!(
            offsets,
            [("http://x/0".into(), starts[0]), ("http://x/2".into(), starts[2]), ("http://x/3".into(), starts[3])]
        );
    }

    #[test]
    fn an_inflated_length_mid_file_does_not_swallow_the_rest() {
        let mut bytes = b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 999999\r\n\r\nshort\r\n\r\n".to_vec();
        bytes.extend(record("response", "http://b/", "bbb"));
        bytes.extend(record("response", "http://c/", "ccc"));
        let items = read_all(bytes);
        let rs = records(&items);
        assert_eq!(rs.len(), 3, "{items:?}");
        assert_eq!(rs[0].block, b"short");
        assert!(rs[0].short_length);
        assert_eq!(rs[2].target_uri(), Some("http://c/"));
    }

    #[test]
    fn truncation_keeps_every_complete_record() {
        let all: Vec<u8> =
            (0..4).flat_map(|i| gz(&record("response", &format!("http://x/{i}"), &"z".repeat(5000)))).collect();
        let cut = &all[..all.len() - 100];
        let items = read_all(cut.to_vec());
        assert_eq!(records(&items).len(), 3);
        assert!(matches!(items.last(), Some(WarcItem::Bad { reason: "truncated_gzip", .. })), "{items:?}");

        // A plain file whose last Content-Length runs past the end.
        let plain = [record("response", "http://a/", "abc"), record("response", "http://b/", "defghij")].concat();
        let items = read_all(plain[..plain.len() - 8].to_vec());
        assert_eq!(records(&items).len(), 1);
        assert!(matches!(items.last(), Some(WarcItem::Bad { reason: "truncated_record", .. })));
    }

    #[test]
    fn garbage_and_bad_headers_resynchronize() {
        let mut bytes = b"this is not warc\r\nnor this\r\n".to_vec();
        bytes.extend(record("response", "http://a/", "abc"));
        bytes.extend(b"WARC/1.0\r\nNo colon here\r\n\r\nxyz\r\n\r\n");
        bytes.extend(b"WARC/1.0\r\nWARC-Type: response\r\n\r\n");
        bytes.extend(record("response", "http://b/", "def"));
        let items = read_all(bytes);
        let reasons: Vec<&str> = items
            .iter()
            .filter_map(|i| if let WarcItem::Bad { reason, .. } = i { Some(*reason) } else { None })
            .collect();
        assert_eq!(reasons, ["malformed_record", "malformed_record", "malformed_record"]);
        let uris: Vec<_> = records(&items).iter().map(|r| r.target_uri().unwrap().to_string()).collect();
        assert_eq!(uris, ["http://a/", "http://b/"]);
    }

    #[test]
    fn a_content_length_that_overruns_is_cut_at_the_next_record() {
        let mut first = b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 40\r\n\r\nonly ten b\r\n\r\n".to_vec();
        first.extend(record("request", "http://b/", "GET / HTTP/1.0"));
        first.extend(record("response", "http://c/", "ccc"));
        let items = read_all(first);
        let rs = records(&items);
        assert_eq!(rs.len(), 3, "{items:?}");
        assert_eq!(rs[0].block, b"only ten b");
        assert!(rs[0].short_length && rs[0].missing_trailer);
        assert_eq!(rs[1].target_uri(), Some("http://b/"));
        assert_eq!(rs[2].block, b"ccc");
    }

    #[test]
    fn a_digit_flipped_length_beyond_the_limit_loses_only_its_record() {
        // 900,000,000 on a 200-byte record: ledgered, and every later record kept.
        let body = "x".repeat(200);
        let mut bytes =
            format!("WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 900000000\r\n\r\n{body}\r\n\r\n").into_bytes();
        let first = bytes.len() as u64;
        for i in 0..50 {
            bytes.extend(record("response", &format!("http://x/{i}"), "fine"));
        }
        let items = read_all(bytes.clone());
        assert_eq!(records(&items).len(), 50, "{:?}", &items[..2]);
        match &items[0] {
            WarcItem::Bad { reason: "bad_content_length", bytes, .. } => assert_eq!(*bytes, first),
            other => panic!("{other:?}"),
        }
        // The same in per-record gzip members.
        let mut members = gz(&bytes[..first as usize]);
        members.extend((0..50).flat_map(|i| gz(&record("response", &format!("http://x/{i}"), "fine"))));
        let items = read_all(members);
        assert_eq!(records(&items).len(), 50);
        assert!(matches!(items[0], WarcItem::Bad { reason: "bad_content_length", .. }));
    }

    #[test]
    fn an_overrun_of_tens_of_mib_keeps_every_later_record() {
        // A 200-byte record claiming 40 MiB, followed by 30 MiB of records.
        let mut bytes = format!(
            "WARC/1.0\r\nWARC-Type: response\r\nContent-Length: {}\r\n\r\n{}\r\n\r\n",
            40 << 20,
            "y".repeat(200)
        )
        .into_bytes();
        let page = "z".repeat(30_000);
        let n = (30 << 20) / page.len();
        for i in 0..n {
            bytes.extend(record("response", &format!("http://x/{i}"), &page));
        }
        let items = read_all(bytes);
        let rs = records(&items);
        assert_eq!(rs.len(), n + 1);
        assert!(rs[0].short_length && rs[0].block.len() == 200);
        assert!(rs[1..].iter().all(|r| !r.short_length && r.block.len() == page.len()));
        assert_eq!(rs[n].target_uri(), Some(format!("http://x/{}", n - 1).as_str()));
    }

    #[test]
    fn nested_lying_lengths_are_each_cut_at_their_next_record() {
        // Every record claims 8 MiB of a 1 MiB file: each is cut at the next, none is lost.
        let mut bytes = Vec::new();
        for i in 0..5000 {
            bytes.extend(
                format!(
                    "WARC/1.0\r\nWARC-Target-URI: http://x/{i}\r\nContent-Length: {}\r\n\r\nbody {i}\r\n\r\n",
                    8 << 20
                )
                .into_bytes(),
            );
        }
        let items = read_all(bytes);
        let rs = records(&items);
        assert_eq!(rs.len(), 4999);
        assert!(rs.iter().all(|r| r.short_length));
        assert_eq!(rs[17].block, b"body 17");
        // The last claims past the end with no record after it.
        assert!(matches!(items.last(), Some(WarcItem::Bad { reason: "truncated_record", .. })));
    }

    /// Every byte of a plain stream is inside exactly one item, in order, or is trailing blank space.
    fn assert_tiles(input: &[u8], items: &[WarcItem]) {
        let covered: u64 = items
            .iter()
            .map(|i| match i {
                WarcItem::Record(r) => r.span,
                WarcItem::Bad { bytes, .. } | WarcItem::Skipped { bytes, .. } => *bytes,
            })
            .sum();
        assert!(covered <= input.len() as u64, "{covered} > {}", input.len());
        let rest = &input[covered as usize..];
        assert!(
            rest.iter().all(u8::is_ascii_whitespace),
            "{} bytes not covered: {:?}",
            rest.len(),
            &rest[..rest.len().min(60)]
        );
    }

    #[test]
    fn every_byte_of_damaged_input_is_in_a_record_or_a_counted_stretch() {
        let mut clean = Vec::new();
        for i in 0..40 {
            clean.extend(record(
                if i % 3 == 0 { "request" } else { "response" },
                &format!("http://x/{i}"),
                &"w\n".repeat(i * 7),
            ));
        }
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..400 {
            let mut bytes = clean.clone();
            for _ in 0..1 + round % 4 {
                let at = (rand() % bytes.len() as u64) as usize;
                match rand() % 5 {
                    0 => bytes[at] = b"0123456789"[(rand() % 10) as usize],
                    1 => bytes[at] ^= 1 << (rand() % 8),
                    2 => drop(bytes.drain(at..(at + (rand() % 300) as usize).min(bytes.len()))),
                    3 => bytes
                        .splice(at..at, b"\r\nWARC/1.0\r\nContent-Length: 99999999\r\n\r\n".iter().copied())
                        .for_each(drop),
                    _ => bytes.truncate(at),
                }
            }
            let items = read_all(bytes.clone());
            assert_tiles(&bytes, &items);
        }
        let items = read_all(clean.clone());
        assert_eq!(records(&items).len(), 40);
        assert_tiles(&clean, &items);
    }

    #[test]
    fn a_lying_length_that_reaches_a_corrupt_member_keeps_the_records_between() {
        let mut members = gz(b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 5000000\r\n\r\nfirst\r\n\r\n");
        members.extend((0..3).flat_map(|i| gz(&record("response", &format!("http://x/{i}"), "ok"))));
        let mut bad = gz(&record("response", "http://bad/", &"q".repeat(4000)));
        for b in &mut bad[12..40] {
            *b ^= 0x5a;
        }
        members.extend(bad);
        members.extend(gz(&record("response", "http://after/", "ok")));
        let items = read_all(members);
        let uris: Vec<_> = records(&items).iter().map(|r| r.target_uri().unwrap_or("").to_string()).collect();
        assert_eq!(uris, ["", "http://x/0", "http://x/1", "http://x/2", "http://after/"], "{items:?}");
        let corrupt: Vec<_> =
            items.iter().filter(|i| matches!(i, WarcItem::Bad { reason: "corrupt_gzip", .. })).collect();
        assert_eq!(corrupt.len(), 1, "{items:?}");
        assert!(matches!(corrupt[0], WarcItem::Bad { gzip_skipped, .. } if *gzip_skipped > 0));
    }

    #[test]
    fn continuation_lines_and_missing_trailer() {
        let bytes = b"WARC/0.18\r\nWARC-Type: response\r\nX-Long: one\r\n  two\r\nContent-Length: 3\r\n\r\nabcWARC/1.0\r\nContent-Length: 0\r\n\r\n\r\n\r\n".to_vec();
        let items = read_all(bytes);
        let rs = records(&items);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].version, "WARC/0.18");
        assert_eq!(rs[0].header("x-long"), Some("one two"));
        assert!(rs[0].missing_trailer);
    }
}
