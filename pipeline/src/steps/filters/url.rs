//! `[filters.url]`: block lists of domains and URLs and banned words in URLs, decided as
//! datatrove's `URLFilter` decides (its order, its normalization, its reasons): the registered
//! domain, then the full host, in the domain list (`domain`, `subdomain`); the URL as written in
//! the URL list (`url`); a banned word among the URL's alphanumeric runs (`hard_blacklisted`);
//! `soft_word_threshold` soft words among them (`soft_blacklisted`); a banned subword inside
//! the URL with everything but letters and digits removed, lowercased (`blacklisted_subword`).
//!
//! The lists are the user's files (UT1-style folders of `domains` and `urls` files, or single
//! files, one entry a line, `#` comments) and inline words; grist ships none. Hosts are split
//! by `text::psl` as tldextract splits them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};

use super::rules::{Measured, Removal};

/// `[filters.url]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlFilter {
    /// Domain lists: files, or folders whose files named `domains` are read (UT1's layout,
    /// `adult/domains`), limited to `categories` when given.
    #[serde(default)]
    pub domains: Vec<String>,
    /// URL lists (entries as written, `host/path` in UT1): files, or folders of `urls` files.
    #[serde(default)]
    pub urls: Vec<String>,
    /// UT1 categories (folder names) to read from folders; empty: all.
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub banned_words: Vec<String>,
    #[serde(default)]
    pub banned_subwords: Vec<String>,
    #[serde(default)]
    pub soft_banned_words: Vec<String>,
    /// Files of words, one a line, added to the lists above.
    #[serde(default)]
    pub banned_words_files: Vec<String>,
    #[serde(default)]
    pub banned_subwords_files: Vec<String>,
    #[serde(default)]
    pub soft_banned_words_files: Vec<String>,
    #[serde(default = "default_soft_threshold")]
    pub soft_word_threshold: usize,
}

fn default_soft_threshold() -> usize {
    2
}

/// datatrove's `normalize`: every run of characters other than ASCII letters and digits
/// removed, lowercased.
pub fn normalize(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The lists, loaded.
#[derive(Debug)]
pub struct Lists {
    domains: HashSet<String>,
    urls: HashSet<String>,
    banned: HashSet<String>,
    soft: Vec<String>,
    subwords: Option<AhoCorasick>,
    soft_threshold: usize,
    /// Entries read: domains, URLs, banned words, soft words, subwords.
    pub sizes: [usize; 5],
    /// xxh3 of every list file's bytes and the inline words: what the output depends on.
    pub digest: u64,
}

/// The files a list path names: itself, or the `name` files under a folder (categories kept).
fn list_files(path: &Path, name: &str, categories: &[String]) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(format!("{}: no such file or folder", path.display()));
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                let category = p.parent().and_then(|d| d.file_name()).map(|c| c.to_string_lossy().to_string());
                if categories.is_empty() || category.is_some_and(|c| categories.contains(&c)) {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One entry a line; `#` lines are comments; blank lines are skipped (datatrove would keep an
/// empty word, which matches every URL ending in a non-alphanumeric character).
fn read_entries(
    files: &[PathBuf],
    normalized: bool,
    into: &mut impl Extend<String>,
    digest: &mut xxhash_rust::xxh3::Xxh3,
) -> Result<(), String> {
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        digest.update(&(bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        into.extend(text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| {
            let e = if normalized { normalize(l) } else { l.trim().to_string() };
            (!e.is_empty()).then_some(e)
        }));
    }
    Ok(())
}

impl UrlFilter {
    /// Bytes of the domain and URL list files (what `grist plan` sizes their tables by); lists
    /// that cannot be found count 0 (the step will say so).
    pub fn list_bytes(&self) -> u64 {
        let mut n = 0;
        for (paths, name) in [(&self.domains, "domains"), (&self.urls, "urls")] {
            for p in paths {
                for f in list_files(Path::new(p), name, &self.categories).unwrap_or_default() {
                    n += std::fs::metadata(&f).map_or(0, |m| m.len());
                }
            }
        }
        n
    }

    /// Reads the lists.
    pub fn load(&self) -> Result<Lists, String> {
        let files = |paths: &[String], name: &str| -> Result<Vec<PathBuf>, String> {
            let mut v = Vec::new();
            for p in paths {
                v.extend(list_files(Path::new(p), name, &self.categories)?);
            }
            Ok(v)
        };
        let mut digest = xxhash_rust::xxh3::Xxh3::new();
        let mut domains = HashSet::new();
        read_entries(&files(&self.domains, "domains")?, false, &mut domains, &mut digest)?;
        let mut urls = HashSet::new();
        read_entries(&files(&self.urls, "urls")?, false, &mut urls, &mut digest)?;
        let mut words = |inline: &[String], paths: &[String]| -> Result<Vec<String>, String> {
            let mut v: Vec<String> = inline.iter().map(|w| normalize(w)).filter(|w| !w.is_empty()).collect();
            let fs: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            read_entries(&fs, true, &mut v, &mut digest)?;
            v.sort();
            v.dedup();
            Ok(v)
        };
        let banned: HashSet<String> = words(&self.banned_words, &self.banned_words_files)?.into_iter().collect();
        let soft = words(&self.soft_banned_words, &self.soft_banned_words_files)?;
        let subs = words(&self.banned_subwords, &self.banned_subwords_files)?;
        let subwords = if subs.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(&subs).map_err(|e| format!("banned subwords: {e}"))?)
        };
        let sizes = [domains.len(), urls.len(), banned.len(), soft.len(), subs.len()];
        Ok(Lists {
            domains,
            urls,
            banned,
            soft,
            subwords,
            soft_threshold: self.soft_word_threshold,
            sizes,
            digest: digest.digest(),
        })
    }
}

impl Lists {
    /// The verdict on one URL (`None`: kept).
    pub fn check(&self, url: &str, seen: &mut Measured) -> Option<Removal> {
        let hit = |rule: &str, seen: &mut Measured| {
            seen.push((rule.to_string(), 1.0));
            Some(Removal { rule: rule.to_string(), value: 1.0, threshold: 0.0, note: None })
        };
        if !self.domains.is_empty() {
            let parts = crate::text::psl::extract(url);
            if self.domains.contains(&parts.registered_domain()) {
                return hit("domain", seen);
            }
            if self.domains.contains(&parts.fqdn()) {
                return hit("subdomain", seen);
            }
        }
        if self.urls.contains(url) {
            return hit("url", seen);
        }
        // datatrove's `set(normalizer.split(url))`: the alphanumeric runs, case kept.
        let words: HashSet<&str> = url.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        if self.banned.iter().any(|w| words.contains(w.as_str())) {
            return hit("hard_blacklisted", seen);
        }
        let soft = self.soft.iter().filter(|w| words.contains(w.as_str())).count();
        seen.push(("soft_blacklisted".into(), soft as f64));
        if soft >= self.soft_threshold && !self.soft.is_empty() {
            return Some(Removal {
                rule: "soft_blacklisted".into(),
                value: soft as f64,
                threshold: self.soft_threshold as f64,
                note: None,
            });
        }
        if let Some(ac) = &self.subwords
            && ac.is_match(&normalize(url))
        {
            return hit("blacklisted_subword", seen);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(dir: &Path) -> Lists {
        std::fs::create_dir_all(dir.join("ut1/adult")).unwrap();
        std::fs::create_dir_all(dir.join("ut1/games")).unwrap();
        std::fs::write(dir.join("ut1/adult/domains"), "# adult\n0-1sex.com\nexample.net\nsub.example.org\n").unwrap();
        std::fs::write(dir.join("ut1/adult/urls"), "0149614511.strimbat.fr/porno-anal-x\n").unwrap();
        std::fs::write(dir.join("ut1/games/domains"), "games.example\n").unwrap();
        let f = UrlFilter {
            domains: vec![dir.join("ut1").display().to_string()],
            urls: vec![dir.join("ut1").display().to_string()],
            categories: vec!["adult".into()],
            banned_words: vec!["porn".into(), "xxx".into(), "anal".into()],
            banned_subwords: vec!["pornhub".into()],
            soft_banned_words: vec!["sexy".into(), "girls".into(), "hot".into()],
            banned_words_files: vec![],
            banned_subwords_files: vec![],
            soft_banned_words_files: vec![],
            soft_word_threshold: 2,
        };
        f.load().unwrap()
    }

    /// datatrove's URLFilter with the same words (its outputs in the research notes' `dt_url.py`).
    #[test]
    fn decisions_follow_datatroves_order_and_normalization() {
        let dir = tempfile::tempdir().unwrap();
        let l = lists(dir.path());
        let rule = |u: &str| l.check(u, &mut Measured::new()).map(|r| r.rule);
        assert_eq!(rule("https://en.wikipedia.org/wiki/Rust_(programming_language)"), None);
        assert_eq!(rule("https://0-1sex.com/page").as_deref(), Some("domain"));
        assert_eq!(rule("http://www.0-1sex.com/").as_deref(), Some("domain"));
        assert_eq!(rule("https://example.com/free-porn-videos").as_deref(), Some("hard_blacklisted"));
        // Case is kept for words: datatrove's lists are lowercase.
        assert_eq!(rule("https://example.com/PORN"), None);
        assert_eq!(rule("https://example.com/xxx-teen").as_deref(), Some("hard_blacklisted"));
        assert_eq!(rule("https://example.com/hot-sexy-girls").as_deref(), Some("soft_blacklisted"));
        assert_eq!(rule("https://example.com/hot-stuff"), None);
        assert_eq!(rule("https://example.com/pornhubvideo").as_deref(), Some("blacklisted_subword"));
        assert_eq!(rule("http://0149614511.strimbat.fr/porno-anal-x").as_deref(), Some("hard_blacklisted"));
        assert_eq!(rule("0149614511.strimbat.fr/porno-anal-x").as_deref(), Some("url"));
        // The category filter: games/ was not read.
        assert_eq!(rule("https://games.example/"), None);
        // A listed host matches as the full host (tldextract's fqdn), not its subdomains.
        assert_eq!(rule("https://a.example.net/").as_deref(), Some("domain"));
        assert_eq!(rule("https://sub.example.org/x").as_deref(), Some("subdomain"));
        assert_eq!(rule("https://deeper.sub.example.org/x"), None);
        assert_eq!(l.sizes, [3, 1, 3, 3, 1]);
    }
}
