//! `[filters.pii]`: e-mail addresses and public IP addresses replaced by placeholders, as
//! datatrove's `PIIFormatter` does (its regular expressions, its validation, its placeholders,
//! e-mails first), and phone numbers as an option. A text change, not a removal: the counts go
//! to the edits side table and the manifest.
//!
//! One difference, for determinism: datatrove cycles through its placeholders across all the
//! documents a worker sees, so a document's placeholders depend on the documents before it in
//! that worker; here the cycle restarts with every document.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};

/// datatrove's e-mail pattern (`formatters/pii.py`).
const EMAIL: &str = r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\[(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)\])";
/// datatrove's IPv4 pattern: no word boundaries (`999.1.1.1` holds `99.1.1.1`).
const IP: &str = r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)";
/// Phone numbers (not in datatrove): an international number (`+` and 8 to 15 digits in
/// groups) or a North American one (`(415) 555-2671`, `415.555.2671`, `415-555-2671`).
const PHONE: &str =
    r"(?:\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}\d|\(\d{3}\)\s?\d{3}[ .-]\d{4}|\b\d{3}[.-]\d{3}[.-]\d{4})\b";

/// `[filters.pii]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pii {
    pub remove_emails: bool,
    pub remove_ips: bool,
    /// Only addresses Python's `ipaddress` calls global (not private, loopback, shared ...).
    pub only_remove_public_ips: bool,
    pub remove_phones: bool,
    pub email_replacement: Vec<String>,
    pub ip_replacement: Vec<String>,
    pub phone_replacement: Vec<String>,
}

impl Default for Pii {
    fn default() -> Self {
        Pii {
            remove_emails: true,
            remove_ips: true,
            only_remove_public_ips: true,
            remove_phones: false,
            email_replacement: vec!["email@example.com".into(), "firstname.lastname@example.org".into()],
            ip_replacement: [
                "22.214.171.124",
                "126.96.36.199",
                "188.8.131.52",
                "184.108.40.206",
                "220.127.116.11",
                "18.104.22.168",
            ]
            .map(String::from)
            .to_vec(),
            phone_replacement: vec!["+1 555 0100".into()],
        }
    }
}

/// What one document's text became.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replaced {
    pub emails: u64,
    pub ips: u64,
    pub phones: u64,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("constant pattern"))
}

/// Python 3.11's `ipaddress.ip_address(s)` for a dotted quad the IP pattern matched: refuses
/// leading zeros (`010.1.1.1`).
fn parse_ip(s: &str) -> Option<Ipv4Addr> {
    if s.split('.').any(|o| o.len() > 1 && o.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Python 3.11.7's `IPv4Address.is_global`: not in 100.64.0.0/10 and not private by its list.
pub fn is_global(ip: Ipv4Addr) -> bool {
    const PRIVATE: [(u32, u8); 14] = [
        (0x0000_0000, 8),  // 0.0.0.0/8
        (0x0a00_0000, 8),  // 10.0.0.0/8
        (0x7f00_0000, 8),  // 127.0.0.0/8
        (0xa9fe_0000, 16), // 169.254.0.0/16
        (0xac10_0000, 12), // 172.16.0.0/12
        (0xc000_0000, 29), // 192.0.0.0/29
        (0xc000_00aa, 31), // 192.0.0.170/31
        (0xc000_0200, 24), // 192.0.2.0/24
        (0xc0a8_0000, 16), // 192.168.0.0/16
        (0xc612_0000, 15), // 198.18.0.0/15
        (0xc633_6400, 24), // 198.51.100.0/24
        (0xcb00_7100, 24), // 203.0.113.0/24
        (0xf000_0000, 4),  // 240.0.0.0/4
        (0xffff_ffff, 32), // 255.255.255.255/32
    ];
    let a = u32::from(ip);
    let within = |net: u32, bits: u8| (a ^ net) >> (32 - bits as u32) == 0;
    !within(0x6440_0000, 10) && !PRIVATE.iter().any(|&(n, b)| within(n, b))
}

impl Pii {
    /// The text with its e-mails, IPs (and phones) replaced, if any were; the counts.
    pub fn apply(&self, text: &str) -> (Option<String>, Replaced) {
        static EMAIL_RE: OnceLock<Regex> = OnceLock::new();
        static IP_RE: OnceLock<Regex> = OnceLock::new();
        static PHONE_RE: OnceLock<Regex> = OnceLock::new();
        let mut counts = Replaced::default();
        let mut out: Option<String> = None;
        let pass = |out: &mut Option<String>, re: &Regex, with: &[String], ok: &dyn Fn(&str) -> bool| -> u64 {
            let cur = out.as_deref().unwrap_or(text);
            if with.is_empty() || !re.is_match(cur) {
                return 0;
            }
            let (mut n, mut i) = (0u64, 0usize);
            let new = re.replace_all(cur, |c: &Captures| {
                let m = &c[0];
                if !ok(m) {
                    return m.to_string();
                }
                let r = with[i % with.len()].clone();
                i += 1;
                n += 1;
                r
            });
            if n > 0 {
                *out = Some(new.into_owned());
            }
            n
        };
        if self.remove_emails {
            counts.emails = pass(&mut out, re(&EMAIL_RE, EMAIL), &self.email_replacement, &|_| true);
        }
        if self.remove_ips {
            let public = self.only_remove_public_ips;
            counts.ips = pass(&mut out, re(&IP_RE, IP), &self.ip_replacement, &|m| {
                parse_ip(m).is_some_and(|ip| !public || is_global(ip))
            });
        }
        if self.remove_phones {
            counts.phones = pass(&mut out, re(&PHONE_RE, PHONE), &self.phone_replacement, &|_| true);
        }
        (out, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> String {
        let (t, _) = Pii::default().apply(s);
        t.unwrap_or_else(|| s.to_string())
    }

    /// datatrove 0.10.1's outputs (a fresh formatter per line; research notes `pii_edge.out`).
    #[test]
    fn replacements_equal_datatroves() {
        let text = "Contact me at john.doe@gmail.com or jane@example.org. Server at 8.8.8.8, router 192.168.1.1, loopback 127.0.0.1, and 1.2.3.4 plus 999.1.1.1 and 256.256.256.256. Another: a.b-c+d@sub.domain.co.uk.";
        assert_eq!(
            one(text),
            "Contact me at email@example.com or firstname.lastname@example.org. Server at 22.214.171.124, router 192.168.1.1, loopback 127.0.0.1, and 126.96.36.199 plus 9188.8.131.52 and 256.256.256.256. Another: email@example.com."
        );
        for (a, b) in [
            ("010.1.1.1", "010.1.1.1"),
            ("224.0.0.1", "22.214.171.124"),
            ("100.64.0.1", "100.64.0.1"),
            ("100.128.0.1", "22.214.171.124"),
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("192.0.0.9", "22.214.171.124"),
            ("172.32.0.1", "22.214.171.124"),
            ("v8.8.8.8x", "v22.214.171.124x"),
            ("x@y", "x@y"),
            ("x@y.z", "email@example.com"),
            ("mañana@example.com", "mañana@example.com"),
            ("über@example.com", "über@example.com"),
            ("café.owner@example.com", "café.email@example.com"),
            ("john@[192.168.0.1]", "email@example.com"),
            ("user@sub-.example.com", "user@sub-.example.com"),
            ("_a@b.co", "email@example.com"),
            ("a@b.c.", "email@example.com."),
            ("foo..bar@example.com", "foo..email@example.com"),
        ] {
            assert_eq!(one(a), b, "{a}");
        }
    }

    #[test]
    fn counts_and_options() {
        let p = Pii { remove_phones: true, ..Pii::default() };
        let (t, n) = p.apply("Mail a@b.co, call (415) 555-2671 or +44 20 7946 0958, host 8.8.4.4.");
        assert_eq!(n, Replaced { emails: 1, ips: 1, phones: 2 });
        assert_eq!(t.as_deref(), Some("Mail email@example.com, call +1 555 0100 or +1 555 0100, host 22.214.171.124."));
        assert_eq!(Pii::default().apply("nothing here"), (None, Replaced::default()));
        // Private addresses stay unless asked.
        let all = Pii { only_remove_public_ips: false, ..Pii::default() };
        assert_eq!(all.apply("10.0.0.1").0.as_deref(), Some("22.214.171.124"));
    }
}
