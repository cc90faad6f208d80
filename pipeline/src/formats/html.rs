//! From a WARC `response` block to text: the HTTP status line and headers, chunked
//! transfer coding and gzip/deflate content coding undone, the charset found (header, then
//! `<meta>`, then UTF-8 if valid, else windows-1252) and decoded with encoding_rs, and the main
//! text extracted with dom_smoothie (a port of Mozilla's Readability: navigation, scripts,
//! styles, ads and footers removed; paragraphs kept). Not a WARC reader.

use std::io::Read;

/// Largest decoded body (bytes): a gzip or deflate body that inflates past this is refused
/// (`body_too_large`), which bounds memory and extraction time on decompression bombs.
pub const MAX_BODY_BYTES: u64 = 64 << 20;

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body with transfer and content codings undone.
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The media type of `Content-Type`, lowercased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("Content-Type").map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }
}

/// Why a block is not usable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Ledger reason: `malformed_http`, `http_status`, `not_html`, `unsupported_encoding`
    /// (e.g. brotli), `bad_content_encoding` (a gzip/deflate body that does not decode),
    /// `body_too_large`, `no_main_text`, `too_many_elements`, `too_deeply_nested`.
    pub reason: &'static str,
    pub detail: String,
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection { reason, detail: detail.into() }
}

/// Parses an HTTP/1.x response block.
pub fn parse_http(block: &[u8]) -> Result<HttpResponse, Rejection> {
    let head_end = memchr::memmem::find(block, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| memchr::memmem::find(block, b"\n\n").map(|i| (i, i + 2)))
        .ok_or_else(|| reject("malformed_http", "no end of the HTTP headers"))?;
    let head = String::from_utf8_lossy(&block[..head_end.0]);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let proto = parts.next().unwrap_or("");
    if !proto.starts_with("HTTP/") {
        return Err(reject("malformed_http", format!("status line {:?}", truncate(status_line, 60))));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| reject("malformed_http", format!("status line {:?}", truncate(status_line, 60))))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if (line.starts_with(' ') || line.starts_with('\t'))
            && let Some(last) = headers.last_mut()
        {
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let body = &block[head_end.1..];
    if body.len() as u64 > MAX_BODY_BYTES {
        // The same limit for a plain body as for a decoded one.
        return Err(reject("body_too_large", format!("{} bytes > {MAX_BODY_BYTES}", body.len())));
    }
    let mut resp = HttpResponse { status, headers, body: body.to_vec() };
    if resp.header("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        && let Some(b) = dechunk(&resp.body)
    {
        resp.body = b;
    }
    if let Some(enc) = resp.header("Content-Encoding").map(|v| v.trim().to_ascii_lowercase()) {
        resp.body = decode_content(&enc, std::mem::take(&mut resp.body))?;
    }
    Ok(resp)
}

/// Undoes chunked transfer coding; `None` if the body does not start as a chunked body (some
/// archives store it already de-chunked while keeping the header). A body that stops being
/// validly chunked later (cut short, no final chunk) keeps what was decoded.
fn dechunk(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    let mut chunks = 0;
    loop {
        let size = memchr::memmem::find(rest, b"\r\n").and_then(|eol| {
            let text = std::str::from_utf8(&rest[..eol]).ok()?;
            let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
            Some((eol, size))
        });
        let Some((eol, size)) = size else {
            return (chunks > 0).then_some(out);
        };
        chunks += 1;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size {
            out.extend_from_slice(rest);
            return Some(out); // a truncated last chunk: keep what there is
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
}

/// Undoes a content coding. A body that says gzip but is not (ClueWeb's archives store the
/// decoded body and keep the header) is taken as it is.
fn decode_content(encoding: &str, body: Vec<u8>) -> Result<Vec<u8>, Rejection> {
    match encoding {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" if body.starts_with(&[0x1f, 0x8b]) => {
            // A body cut short (truncated capture) keeps what decodes.
            inflate(flate2::read::MultiGzDecoder::new(&body[..]), "gzip")
        }
        "deflate" if !looks_like_text(&body) => inflate(flate2::read::ZlibDecoder::new(&body[..]), "deflate")
            .or_else(|_| inflate(flate2::read::DeflateDecoder::new(&body[..]), "deflate")),
        "gzip" | "x-gzip" | "deflate" => Ok(body),
        _ if looks_like_text(&body) => Ok(body),
        other => Err(reject("unsupported_encoding", format!("Content-Encoding: {other}"))),
    }
}

/// Decodes up to [`MAX_BODY_BYTES`]; what decoded before an error is kept.
fn inflate(r: impl Read, name: &str) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::new();
    let result = r.take(MAX_BODY_BYTES + 1).read_to_end(&mut out);
    if out.len() as u64 > MAX_BODY_BYTES {
        return Err(reject("body_too_large", format!("{name} body inflates past {MAX_BODY_BYTES} bytes")));
    }
    match result {
        Err(e) if out.is_empty() => Err(reject("bad_content_encoding", format!("{name} body: {e}"))),
        _ => Ok(out),
    }
}

/// Markup already (an archive that stored the decoded body): a `<` and no NUL in the first bytes.
fn looks_like_text(b: &[u8]) -> bool {
    let head = &b[..b.len().min(512)];
    !head.is_empty() && head.contains(&b'<') && !head.contains(&0)
}

/// The charset declared in a `Content-Type` value.
fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// A charset declared in the first 1024 bytes by `<meta charset=...>` or
/// `<meta http-equiv=Content-Type content="...; charset=...">`.
fn meta_charset(body: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset=")?;
    let rest = head[at + 8..].trim_start_matches(['"', '\'', ' ']);
    let name: String =
        rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')).collect();
    (!name.is_empty()).then_some(name)
}

/// Decodes an HTML body to UTF-8. Returns the text and the encoding used.
pub fn decode_html(body: &[u8], content_type: Option<&str>) -> (String, &'static str) {
    // The header's label, then the page's own <meta>, each only if encoding_rs knows it.
    let label = |l: Option<String>| l.and_then(|d| encoding_rs::Encoding::for_label(d.as_bytes()));
    let encoding =
        label(content_type.and_then(charset_param)).or_else(|| label(meta_charset(body))).unwrap_or_else(|| {
            if std::str::from_utf8(body).is_ok() { encoding_rs::UTF_8 } else { encoding_rs::WINDOWS_1252 }
        });
    // A BOM overrides the declaration, as browsers do.
    let (text, used, _) = encoding.decode(body);
    (text.into_owned(), used.name())
}

/// Largest number of elements a page may have before extraction gives up (bounds time and
/// memory on pathological pages).
pub const MAX_ELEMENTS: usize = 200_000;

/// Deepest element nesting a page may have (Chrome's parser stops nesting at 512). The
/// Readability pass is quadratic in depth (20,000 nested elements took 30 s), so deeper pages
/// are refused (`too_deeply_nested`) before they are parsed.
pub const MAX_DEPTH: usize = 1024;

/// Elements that never nest (void), or whose end tag may be left out and is implied by the
/// next sibling (so an unclosed one does not deepen the tree).
const FLAT_ELEMENTS: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr", "p",
    "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "tbody", "thead", "tfoot", "colgroup", "rb", "rt", "rp",
    "rtc", "html", "head", "body",
];

/// The deepest element nesting of a page, from its tags alone in one linear pass: open tags
/// deepen, end tags come back up; void and implied-end elements, self-closing tags, comments
/// and the raw text of `script`, `style`, `textarea` and `title` do not count. An upper bound
/// of the depth the HTML parser builds (misnested end tags are not repaired here).
pub fn nesting_depth(html: &str) -> usize {
    let b = html.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    let name_at = |from: usize| -> (usize, String) {
        let end = b[from..].iter().position(|c| !c.is_ascii_alphanumeric() && *c != b'-').map_or(b.len(), |k| from + k);
        (end, String::from_utf8_lossy(&b[from..end]).to_ascii_lowercase())
    };
    while let Some(k) = memchr::memchr(b'<', &b[i..]) {
        i += k + 1;
        match b.get(i) {
            Some(b'!') if b[i..].starts_with(b"!--") => {
                i = memchr::memmem::find(&b[i..], b"-->").map_or(b.len(), |k| i + k + 3);
            }
            Some(b'!' | b'?') => i = memchr::memchr(b'>', &b[i..]).map_or(b.len(), |k| i + k + 1),
            Some(b'/') => {
                let (end, name) = name_at(i + 1);
                if !name.is_empty() && !FLAT_ELEMENTS.contains(&name.as_str()) {
                    depth = depth.saturating_sub(1);
                }
                i = end;
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let (end, name) = name_at(i);
                let close = memchr::memchr(b'>', &b[end..]).map_or(b.len(), |k| end + k);
                i = (close + 1).min(b.len());
                if matches!(name.as_str(), "script" | "style" | "textarea" | "title") {
                    // Raw text up to its end tag, matched without regard to case.
                    let mut at = i;
                    i = loop {
                        match memchr::memmem::find(&b[at..], b"</") {
                            Some(k)
                                if b[at + k + 2..]
                                    .get(..name.len())
                                    .is_some_and(|t| t.eq_ignore_ascii_case(name.as_bytes())) =>
                            {
                                break at + k;
                            }
                            Some(k) => at += k + 2,
                            None => break b.len(),
                        }
                    };
                    continue;
                }
                if b[..close].ends_with(b"/") || FLAT_ELEMENTS.contains(&name.as_str()) {
                    continue;
                }
                depth += 1;
                max = max.max(depth);
            }
            _ => {}
        }
    }
    max
}

/// The main text of an HTML page: paragraphs separated by blank lines.
pub fn extract_text(html: &str, url: Option<&str>) -> Result<String, Rejection> {
    let depth = nesting_depth(html);
    if depth > MAX_DEPTH {
        return Err(reject("too_deeply_nested", format!("elements nested {depth} deep > {MAX_DEPTH}")));
    }
    let cfg = dom_smoothie::Config {
        text_mode: dom_smoothie::TextMode::Formatted,
        max_elements_to_parse: MAX_ELEMENTS,
        disable_json_ld: true,
        ..Default::default()
    };
    // A URL that is not absolute only loses relative-link resolution, which text ignores.
    let url = url.filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    let mut r = dom_smoothie::Readability::new(html, url, Some(cfg.clone()))
        .or_else(|_| dom_smoothie::Readability::new(html, None, Some(cfg)))
        .map_err(|e| reject("no_main_text", e.to_string()))?;
    let article = r.parse().map_err(|e| match e {
        dom_smoothie::ReadabilityError::TooManyElements(n, max) => {
            reject("too_many_elements", format!("{n} elements > {max}"))
        }
        other => reject("no_main_text", other.to_string()),
    })?;
    Ok(normalize_whitespace(&article.text_content))
}

/// Trims each line, collapses runs of spaces, and keeps at most one blank line between paragraphs.
pub fn normalize_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&words.join(" "));
    }
    out
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn http_status_headers_and_body() {
        let r = parse_http(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=ISO-8859-1\r\nX-A: 1\r\n\r\n<p>caf\xe9</p>",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.media_type().as_deref(), Some("text/html"));
        let (text, enc) = decode_html(&r.body, r.header("content-type"));
        assert_eq!((text.as_str(), enc), ("<p>caf\u{e9}</p>", "windows-1252"));
        assert!(parse_http(b"garbage").is_err());
        assert_eq!(parse_http(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap().status, 404);
    }

    #[test]
    fn chunked_and_gzip_bodies_are_decoded() {
        let r = parse_http(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"hello world");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"<html>zipped</html>").unwrap();
        let mut block = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
        block.extend(gz.finish().unwrap());
        assert_eq!(parse_http(&block).unwrap().body, b"<html>zipped</html>");
        // Says gzip, stored plain (ClueWeb): taken as is.
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n<html>plain</html>").unwrap().body,
            b"<html>plain</html>"
        );
    }

    #[test]
    fn bombs_and_broken_chunks() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_BODY_BYTES >> 20) + 1 {
            gz.write_all(&zeros).unwrap();
        }
        let mut block = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
        block.extend(gz.finish().unwrap());
        assert_eq!(parse_http(&block).unwrap_err().reason, "body_too_large");
        // No final chunk: what was decoded is kept, no chunk-size line leaks.
        let r = parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world").unwrap();
        assert_eq!(r.body, b"hello world");
    }

    #[test]
    fn an_unknown_header_charset_falls_back_to_meta() {
        let (t, e) =
            decode_html(b"<meta charset=\"windows-1251\"><p>\xcf\xf0\xe8</p>", Some("text/html; charset=x-nonsense"));
        assert_eq!(e, "windows-1251");
        assert!(t.contains("\u{41f}\u{440}\u{438}"), "{t}");
    }

    #[test]
    fn meta_charset_and_utf8_fallback() {
        let (t, e) = decode_html(b"<meta charset=\"shift_jis\"><p>\x82\xa0</p>", None);
        assert_eq!(e, "Shift_JIS");
        assert!(t.contains('\u{3042}'));
        let (_, e) = decode_html("<p>\u{e9}t\u{e9}</p>".as_bytes(), None);
        assert_eq!(e, "UTF-8");
    }

    #[test]
    fn extraction_keeps_the_article_and_drops_the_chrome() {
        let para = "The river crossed the valley beside the old mill, and the village gathered to watch the water rise through the long spring evening. ";
        let html = format!(
            "<html><head><title>T</title><style>.x{{color:red}}</style><script>var tracking = 1;</script></head>\
             <body><nav><a href='/'>Home</a> | <a href='/about'>About us</a></nav>\
             <article><h1>River</h1><p>{}</p><p>{}</p></article>\
             <footer>Copyright 2024 Example Corp. All rights reserved.</footer></body></html>",
            para.repeat(4),
            para.repeat(3)
        );
        let text = extract_text(&html, Some("https://example.com/river")).unwrap();
        assert!(text.contains("The river crossed the valley"), "{text}");
        for chrome in ["tracking", "color:red", "About us", "All rights reserved"] {
            assert!(!text.contains(chrome), "{chrome:?} leaked into {text}");
        }
        assert!(text.contains("\n\n"), "paragraphs must stay separate: {text}");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing_and_ordinary_pages_are_not() {
        let deep = format!("<html><body>{}text{}</body></html>", "<div>".repeat(20_000), "</div>".repeat(20_000));
        assert_eq!(nesting_depth(&deep), 20_000);
        assert_eq!(extract_text(&deep, None).unwrap_err().reason, "too_deeply_nested");
        // Unclosed paragraphs and list items, void elements, self-closing tags, comments and
        // script text do not deepen a page.
        let flat = format!(
            "<!DOCTYPE html><html><head><script>if (a<b) {{ x = '<div>' }}</script></head><body>{}<!-- <div><div> --></body></html>",
            "<p>one<br><img src=x/><li>two<span/>".repeat(5000)
        );
        assert_eq!(nesting_depth(&flat), 0);
        assert_eq!(nesting_depth("<div><section><div></div></section><div><b>x</b></div></div>"), 3);
    }

    #[test]
    fn a_plain_body_over_the_limit_is_refused_like_a_decoded_one() {
        let mut block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n".to_vec();
        block.resize(block.len() + MAX_BODY_BYTES as usize + 1, b'a');
        assert_eq!(parse_http(&block).unwrap_err().reason, "body_too_large");
    }

    #[test]
    fn whitespace_normalization() {
        assert_eq!(normalize_whitespace("  a   b \n\n\n  c\n d  "), "a b\n\nc\nd");
    }
}
