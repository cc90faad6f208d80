//! A URL's host split into subdomain, domain and public suffix by the Public Suffix List's
//! ICANN section, exactly as tldextract 5 does it (datatrove's `URLFilter` asks tldextract for
//! `registered_domain` and `fqdn`): the host taken leniently from the URL (scheme, user info,
//! port, path dropped, case kept, trailing dots stripped), labels matched from the right
//! through a trie of the rules (lowercased, punycode labels decoded), a wildcard or exception
//! consulted at the first label the trie does not have, IPv4 hosts and hosts without a suffix
//! giving no registered domain.
//!
//! The list is the snapshot tldextract 5.4 ships (`pipeline/data/psl/`, version 2025-04-07,
//! MPL 2.0). Not URL parsing in general: `url` does that where a step needs it.

use std::collections::HashMap;
use std::sync::OnceLock;

const LIST: &str = include_str!("../../data/psl/public_suffix_list.dat");

#[derive(Debug, Default)]
struct Node {
    matches: HashMap<String, Node>,
    end: bool,
}

fn trie() -> &'static Node {
    static TRIE: OnceLock<Node> = OnceLock::new();
    TRIE.get_or_init(|| {
        let icann = LIST.split("// ===BEGIN PRIVATE DOMAINS===").next().unwrap_or_default();
        let mut root = Node::default();
        for line in icann.lines() {
            // tldextract's `^[.*!]*\w\S*`: a rule starts with a word character, after any
            // leading `.`, `*` or `!`; comments and blank lines do not.
            let rule = line.split(char::is_whitespace).next().unwrap_or_default();
            let start = rule.trim_start_matches(['.', '*', '!']);
            if !start.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut node = &mut root;
            for label in rule.rsplit('.') {
                node = node.matches.entry(label.to_string()).or_default();
            }
            node.end = true;
        }
        root
    })
}

/// tldextract's `_decode_punycode`: lowercase, and an `xn--` label decoded when it decodes.
fn decode_label(label: &str) -> String {
    let lower = label.to_lowercase();
    if let Some(puny) = lower.strip_prefix("xn--")
        && let Some(decoded) = idna::punycode::decode_to_string(puny)
    {
        return decoded;
    }
    lower
}

/// The index of the first public-suffix label, if any rule matches.
fn suffix_index(labels: &[&str]) -> Option<usize> {
    let mut node = trie();
    let (mut suffix_idx, mut label_idx) = (labels.len(), labels.len());
    for label in labels.iter().rev() {
        let decoded = decode_label(label);
        if let Some(next) = node.matches.get(&decoded) {
            label_idx -= 1;
            node = next;
            if node.end {
                suffix_idx = label_idx;
            }
            continue;
        }
        if node.matches.contains_key("*") {
            let exception = node.matches.contains_key(&format!("!{decoded}"));
            return Some(if exception { label_idx } else { label_idx - 1 });
        }
        break;
    }
    (suffix_idx != labels.len()).then_some(suffix_idx)
}

/// tldextract's `_schemeless_url`.
fn schemeless(url: &str) -> &str {
    let Some(at) = url.find("//") else { return url };
    if at == 0 {
        return &url[2..];
    }
    let scheme_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    if at < 2 || url.as_bytes()[at - 1] != b':' || !url[..at - 1].chars().all(scheme_chars) {
        return url;
    }
    &url[at + 2..]
}

/// tldextract's `lenient_netloc`: the host, case kept.
pub fn host(url: &str) -> &str {
    let rest = schemeless(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let after_userinfo = authority.rsplit('@').next().unwrap_or_default();
    if after_userinfo.starts_with('[')
        && let Some(end) = after_userinfo.find(']')
    {
        return &after_userinfo[..=end];
    }
    let hostname = crate::text::pystr::strip(after_userinfo.split(':').next().unwrap_or_default());
    hostname.trim_end_matches(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}'])
}

fn looks_like_ipv4(s: &str) -> bool {
    let octet = |o: &str| {
        !o.is_empty()
            && o.len() <= 3
            && o.bytes().all(|b| b.is_ascii_digit())
            && (o.len() == 1 || !o.starts_with('0'))
            && o.parse::<u32>().is_ok_and(|v| v <= 255)
    };
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| octet(p))
}

/// A host split as tldextract splits it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parts {
    pub subdomain: String,
    pub domain: String,
    pub suffix: String,
}

impl Parts {
    /// `domain.suffix` when both are set (tldextract's `registered_domain`), else "".
    pub fn registered_domain(&self) -> String {
        if self.suffix.is_empty() || self.domain.is_empty() {
            return String::new();
        }
        format!("{}.{}", self.domain, self.suffix)
    }

    /// `subdomain.domain.suffix` when domain and suffix are set (tldextract's `fqdn`), else "".
    pub fn fqdn(&self) -> String {
        if self.suffix.is_empty() || self.domain.is_empty() {
            return String::new();
        }
        [&self.subdomain, &self.domain, &self.suffix]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// tldextract's `extract(url)` (ICANN suffixes only).
pub fn extract(url: &str) -> Parts {
    let netloc = host(url);
    let dotted = netloc.replace(['\u{3002}', '\u{ff0e}', '\u{ff61}'], ".");
    if dotted.len() >= 4
        && dotted.starts_with('[')
        && dotted.ends_with(']')
        && dotted[1..dotted.len() - 1].parse::<std::net::Ipv6Addr>().is_ok()
    {
        return Parts { domain: dotted, ..Parts::default() };
    }
    let labels: Vec<&str> = dotted.split('.').collect();
    let Some(i) = suffix_index(&labels) else {
        if labels.len() == 4 && looks_like_ipv4(&dotted) {
            return Parts { domain: dotted.clone(), ..Parts::default() };
        }
        let n = labels.len();
        return Parts {
            subdomain: labels[..n - 1].join("."),
            domain: labels[n - 1].to_string(),
            suffix: String::new(),
        };
    };
    Parts {
        subdomain: if i >= 2 { labels[..i - 1].join(".") } else { String::new() },
        domain: if i > 0 { labels[i - 1].to_string() } else { String::new() },
        suffix: labels[i..].join("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tldextract 5.4.0's answers (research notes, `tld_cases.out`).
    #[test]
    fn splits_as_tldextract() {
        let rd = |u: &str| extract(u).registered_domain();
        assert_eq!(rd("example.com:8080/p"), "example.com");
        assert_eq!(rd("http://user:pw@sub.example.co.uk:80/"), "example.co.uk");
        assert_eq!(extract("http://user:pw@sub.example.co.uk:80/").fqdn(), "sub.example.co.uk");
        assert_eq!(rd("http://example.com./"), "example.com");
        assert_eq!(rd("http://bücher.de/"), "bücher.de");
        assert_eq!(rd("https://a.b.c.kawasaki.jp/"), "b.c.kawasaki.jp");
        assert_eq!(rd("http://foo.github.io/"), "github.io");
        assert_eq!(rd("//cdn.example.org/x"), "example.org");
        assert_eq!(rd("HTTP://WWW.Example.COM/x"), "Example.COM");
        for u in ["http://[::1]/", "http://1.2.3.4:80/", "http://localhost/", "http://co.uk/"] {
            assert_eq!((rd(u), extract(u).fqdn()), (String::new(), String::new()), "{u}");
        }
        // An exception rule: www.ck is registrable, other *.ck are suffixes.
        assert_eq!(rd("http://www.ck/"), "www.ck");
        assert_eq!(rd("http://a.b.ck/"), "a.b.ck");
    }
}
