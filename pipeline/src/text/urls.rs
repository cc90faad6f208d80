//! URL normalization for matching Reddit links to crawled pages. Two URLs that a reader would
//! call the same page get the same key: the scheme is dropped (http and https match), the
//! host is lowercased and loses a leading `www.`, default ports and fragments go, tracking
//! query parameters go (`utm_*`, `fbclid`, `gclid`, `mc_cid`, `mc_eid`, `igshid`, `ref_src`,
//! `_ga`), and a trailing `/` on the path goes. Other query parameters keep their order.

/// Query parameters that identify a campaign or a click, not a page.
fn is_tracking(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("utm_")
        || matches!(n.as_str(), "fbclid" | "gclid" | "mc_cid" | "mc_eid" | "igshid" | "ref_src" | "_ga")
}

/// The match key of an http(s) URL, or `None` for anything else.
pub fn normalize(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let u = url::Url::parse(raw).ok()?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return None;
    }
    let host = u.host_str()?.trim_end_matches('.');
    let host = host.strip_prefix("www.").unwrap_or(host);
    let mut key = String::with_capacity(raw.len());
    key.push_str(host);
    if let Some(port) = u.port() {
        key.push(':');
        key.push_str(&port.to_string());
    }
    let path = u.path().trim_end_matches('/');
    key.push_str(path);
    let kept: Vec<(String, String)> =
        u.query_pairs().filter(|(k, _)| !is_tracking(k)).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if !kept.is_empty() {
        let q = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish();
        key.push('?');
        key.push_str(&q);
    }
    Some(key)
}

/// The 64-bit hash of a match key, as held in the in-memory URL set.
pub fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_page_same_key() {
        let k = normalize("http://www.Example.com/a/b/?utm_source=x&id=3#top").unwrap();
        assert_eq!(k, "example.com/a/b?id=3");
        for same in [
            "https://example.com/a/b?id=3",
            "http://EXAMPLE.com:80/a/b?id=3&fbclid=abc",
            "https://www.example.com:443/a/b/?id=3",
        ] {
            assert_eq!(normalize(same).as_deref(), Some(k.as_str()), "{same}");
        }
        assert_eq!(normalize("http://example.com").unwrap(), "example.com");
        assert_eq!(normalize("http://example.com:8080/x").unwrap(), "example.com:8080/x");
    }

    #[test]
    fn different_pages_and_non_web_urls() {
        assert_ne!(normalize("http://example.com/a?id=3"), normalize("http://example.com/a?id=4"));
        assert_ne!(normalize("http://example.com/a"), normalize("http://example.org/a"));
        assert_eq!(normalize("ftp://example.com/a"), None);
        assert_eq!(normalize("not a url"), None);
        assert_eq!(normalize("mailto:x@example.com"), None);
    }
}
