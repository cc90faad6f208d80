//! A streaming WARC reader (WARC/1.0, 1.1 and the 0.18 of older crawls) over plain files or
//! gzip files of any member layout. Common Crawl writes one gzip member per record; the
//! reader tracks members so every record carries the compressed offset of the member it
//! starts in (what the Common Crawl index calls `offset`), and a corrupt member is skipped by
//! resynchronizing on the next one. Records are yielded with their raw content block; what a
//! block means (HTTP, text) is for the caller. Not an HTML parser, not an ARC reader.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

/// Content blocks larger than this are skipped (streamed past, not buffered) and reported.
pub const MAX_BLOCK_BYTES: u64 = 256 << 20;
/// A record's header section larger than this is not a header.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// A Content-Length that overruns into the next record is cut there when the overrun is at
/// most this long (bounds the bytes pushed back, so crafted input cannot make it quadratic).
const MAX_PUSHBACK_BYTES: usize = 16 << 20;

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
        /// `corrupt_gzip`, `truncated_gzip`, `truncated_record`, `malformed_record`, `record_too_large`.
        reason: &'static str,
        detail: String,
    },
    /// Bytes skipped after a record that was not followed by its CRLF CRLF (warcio's "record
    /// not followed by newline"): the rest of that record, not a record of its own.
    Skipped {
        offset: u64,
        bytes: u64,
    },
}

/// A decompressed byte stream that knows where its bytes came from.
pub trait WarcSource: BufRead {
    /// Compressed offset of the member containing decompressed position `pos`.
    fn origin(&mut self, pos: u64) -> u64;
    /// After a decoding error: skip to the next compressed member. `Ok(false)` at the end.
    fn resync(&mut self) -> io::Result<bool>;
    /// Whether the underlying file itself failed to read (not a decoding problem).
    fn raw_failed(&self) -> bool;
    /// Decompressed bytes handed out so far (the stream position of the next byte).
    fn position(&self) -> u64;
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
    fn resync(&mut self) -> io::Result<bool> {
        Ok(false)
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
pub struct GzMembers<R: BufRead> {
    state: Member<R>,
    /// Recent members, oldest first; entries before the last record start are dropped.
    members: VecDeque<(u64, u64)>,
    /// Decompressed bytes produced so far.
    produced: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: BufRead> GzMembers<R> {
    pub fn new(inner: Counted<R>) -> Self {
        GzMembers {
            state: Member::Between(inner),
            members: VecDeque::new(),
            produced: 0,
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
        }
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

    fn resync(&mut self) -> io::Result<bool> {
        // Drop what is buffered from the bad member, then scan the compressed bytes for the
        // next gzip header (1f 8b 08).
        self.start = self.end;
        let Member::Between(mut c) = std::mem::replace(&mut self.state, Member::Poisoned) else {
            return Ok(false);
        };
        loop {
            let buf = match c.fill_buf() {
                Ok(b) => b,
                Err(e) => {
                    self.state = Member::Between(c);
                    return Err(e);
                }
            };
            if buf.is_empty() {
                self.state = Member::Between(c);
                return Ok(false);
            }
            match memchr::memmem::find(buf, &[0x1f, 0x8b, 0x08]) {
                Some(i) => {
                    c.consume(i);
                    self.state = Member::Between(c);
                    return Ok(true);
                }
                None => {
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
}

/// A source with bytes pushed back in front of it (when a block overran into the next record).
struct Pushback<S> {
    back: Vec<u8>,
    at: usize,
    src: S,
}

impl<S> Pushback<S> {
    /// Puts `bytes` in front of whatever is still unread.
    fn push_front(&mut self, mut bytes: Vec<u8>) {
        bytes.extend_from_slice(&self.back[self.at..]);
        self.back = bytes;
        self.at = 0;
    }
}

impl<S: BufRead> Read for Pushback<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl<S: BufRead> BufRead for Pushback<S> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at < self.back.len() { Ok(&self.back[self.at..]) } else { self.src.fill_buf() }
    }
    fn consume(&mut self, n: usize) {
        if self.at < self.back.len() {
            self.at += n;
            if self.at >= self.back.len() {
                self.back.clear();
                self.at = 0;
            }
        } else {
            self.src.consume(n);
        }
    }
}

/// Streams WARC records (and reports of bad stretches) from a [`WarcSource`].
pub struct WarcReader<S> {
    src: Pushback<S>,
    /// Decompressed position.
    pos: u64,
    done: bool,
    /// The last record lacked its trailer: what follows up to the next version line is its tail.
    after_missing_trailer: bool,
}

enum Step {
    Item(WarcItem),
    /// A decoding error: report it, resynchronize, go on.
    Corrupt(io::Error),
    End,
}

impl<S: WarcSource> WarcReader<S> {
    pub fn new(src: S) -> Self {
        WarcReader { src: Pushback { back: Vec::new(), at: 0, src }, pos: 0, done: false, after_missing_trailer: false }
    }

    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<usize> {
        line.clear();
        // Bound a line's length: a header line over 64 KiB is not a header.
        let n = (&mut self.src).take(64 << 10).read_until(b'\n', line)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn step(&mut self) -> Step {
        match self.try_step() {
            Ok(s) => s,
            Err(e) => Step::Corrupt(e),
        }
    }

    fn try_step(&mut self) -> io::Result<Step> {
        let mut line = Vec::new();
        // Skip the blank lines between records.
        let start = loop {
            let at = self.pos;
            if self.read_line(&mut line)? == 0 {
                return Ok(Step::End);
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                break at;
            }
        };
        let offset = self.src.src.origin(start);
        let bad = |reason: &'static str, detail: String| WarcItem::Bad { offset, stream_offset: start, reason, detail };
        let after_missing_trailer = std::mem::take(&mut self.after_missing_trailer);
        if !line.starts_with(b"WARC/") && after_missing_trailer {
            let skipped = line.len() as u64 + self.skip_to_next_record(&mut line)?;
            return Ok(Step::Item(WarcItem::Skipped { offset, bytes: skipped }));
        }
        if !line.starts_with(b"WARC/") {
            let head = String::from_utf8_lossy(&line[..line.len().min(40)]).trim_end().to_string();
            let skipped = self.skip_to_next_record(&mut line)?;
            return Ok(Step::Item(bad(
                "malformed_record",
                format!("expected a `WARC/` version line, found {head:?} ({skipped} bytes skipped)"),
            )));
        }
        let version = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut header_bytes = 0;
        loop {
            let n = self.read_line(&mut line)?;
            if n == 0 {
                return Ok(Step::Item(bad("truncated_record", "the input ends inside the record's headers".into())));
            }
            header_bytes += n;
            if header_bytes > MAX_HEADER_BYTES {
                let skipped = self.skip_to_next_record(&mut line)?;
                return Ok(Step::Item(bad(
                    "malformed_record",
                    format!("headers longer than {MAX_HEADER_BYTES} bytes ({skipped} bytes skipped)"),
                )));
            }
            let l = trim_eol(&line);
            if l.is_empty() {
                break;
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
                let skipped = self.skip_to_next_record(&mut line)?;
                return Ok(Step::Item(bad(
                    "malformed_record",
                    format!("header line without a colon: {:?} ({skipped} bytes skipped)", truncate(&text, 60)),
                )));
            };
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.trim().parse::<u64>());
        let length = match length {
            Some(Ok(n)) => n,
            other => {
                let what = match other {
                    None => "no Content-Length header".to_string(),
                    Some(_) => "a Content-Length that is not a number".to_string(),
                };
                let skipped = self.skip_to_next_record(&mut line)?;
                return Ok(Step::Item(bad("malformed_record", format!("{what} ({skipped} bytes skipped)"))));
            }
        };
        if length > MAX_BLOCK_BYTES {
            let skipped = io::copy(&mut (&mut self.src).take(length), &mut io::sink())?;
            self.pos += skipped;
            return Ok(Step::Item(bad("record_too_large", format!("{length} bytes > {MAX_BLOCK_BYTES}"))));
        }
        let mut block = Vec::with_capacity(length as usize);
        let got = (&mut self.src).take(length).read_to_end(&mut block)? as u64;
        self.pos += got;
        // A block is followed by CRLF CRLF. When that is missing (or the input ended early) and
        // a version line stands inside the block, the Content-Length overran into the next
        // record: give the block its real end and read the next record from where it starts.
        let mut short_length = false;
        let head = self.src.fill_buf()?;
        let at_trailer = got == length && (head.is_empty() || head[0] == b'\r' || head[0] == b'\n');
        if !at_trailer
            && let Some(cut) = next_record_inside(&block)
            && block.len() - cut <= MAX_PUSHBACK_BYTES
        {
            let rest = block.split_off(cut);
            block.truncate(trim_trailing_eols(&block));
            self.pos -= rest.len() as u64;
            self.src.push_front(rest);
            short_length = true;
        } else if got < length {
            return Ok(Step::Item(bad(
                "truncated_record",
                format!("Content-Length {length} runs past the end of the input ({got} bytes present)"),
            )));
        }
        let missing_trailer = short_length || !self.consume_trailer()?;
        self.after_missing_trailer = missing_trailer && !short_length;
        Ok(Step::Item(WarcItem::Record(WarcRecord {
            version,
            headers,
            block,
            offset,
            stream_offset: start,
            missing_trailer,
            short_length,
        })))
    }

    /// Consumes up to two line ends after a block; false if something else comes first.
    fn consume_trailer(&mut self) -> io::Result<bool> {
        let mut newlines = 0;
        while newlines < 2 {
            let buf = self.src.fill_buf()?;
            match buf.first() {
                Some(b'\r') => {
                    self.src.consume(1);
                    self.pos += 1;
                }
                Some(b'\n') => {
                    self.src.consume(1);
                    self.pos += 1;
                    newlines += 1;
                }
                None => return Ok(newlines == 2),
                Some(_) => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Skips lines until one starts with `WARC/` (left unread); returns the bytes skipped.
    fn skip_to_next_record(&mut self, line: &mut Vec<u8>) -> io::Result<u64> {
        let mut skipped = 0;
        loop {
            let n = self.read_line(line)?;
            if n == 0 {
                return Ok(skipped);
            }
            if line.starts_with(b"WARC/") {
                self.pos -= n as u64;
                self.src.push_front(std::mem::take(line));
                return Ok(skipped);
            }
            skipped += n as u64;
        }
    }
}

/// Where a `WARC/1.x` (or `WARC/0.x`) version line starts inside a block, after a line end.
fn next_record_inside(block: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&block[from..], b"\nWARC/") {
        let at = from + i + 1;
        let rest = &block[at + 5..];
        if rest.len() >= 3 && rest[0].is_ascii_digit() && rest[1] == b'.' && rest[2].is_ascii_digit() {
            return Some(at);
        }
        from = at;
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
        match self.step() {
            Step::Item(item) => Some(Ok(item)),
            Step::End => {
                self.done = true;
                None
            }
            Step::Corrupt(e) => {
                if self.src.src.raw_failed() {
                    self.done = true;
                    return Some(Err(e));
                }
                let offset = self.src.src.origin(self.pos);
                let reason = if e.kind() == io::ErrorKind::UnexpectedEof { "truncated_gzip" } else { "corrupt_gzip" };
                let item = WarcItem::Bad { offset, stream_offset: self.pos, reason, detail: e.to_string() };
                self.src.back.clear();
                self.src.at = 0;
                match self.src.src.resync() {
                    Ok(true) => {}
                    Ok(false) => self.done = true,
                    Err(e) => return Some(Err(e)),
                }
                // Bytes consumed by the failed step were never counted: take the position
                // from the source so later records get their own members' offsets.
                self.pos = self.src.src.position();
                Some(Ok(item))
            }
        }
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
        let raw = Counted::new(io::BufReader::with_capacity(1 << 16, loc.open()?));
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
