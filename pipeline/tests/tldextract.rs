//! grist's host splitting (`text::psl`) against tldextract, URL by URL: the registered domain
//! and the full host datatrove's URLFilter looks up. Reads `GRIST_TLDEXTRACT_TRUTH` (JSON lines
//! of `url`, `registered_domain`, `fqdn`, written by `scripts/datatrove_filters.py tld` with
//! tldextract from PyPI); skipped without it (`just check-datatrove` runs it).
#![allow(clippy::unwrap_used)]

#[test]
fn registered_domains_and_hosts_equal_tldextracts() {
    let Ok(path) = std::env::var("GRIST_TLDEXTRACT_TRUTH") else {
        eprintln!("GRIST_TLDEXTRACT_TRUTH unset: skipped (run `just check-datatrove`)");
        return;
    };
    let (mut n, mut bad) = (0, 0);
    for l in std::fs::read_to_string(&path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let url = v["url"].as_str().unwrap();
        let p = pipeline::text::psl::extract(url);
        let (rd, fq) = (p.registered_domain(), p.fqdn());
        n += 1;
        if rd != v["registered_domain"].as_str().unwrap() || fq != v["fqdn"].as_str().unwrap() {
            bad += 1;
            eprintln!("{url}: ours {rd:?} {fq:?}, tldextract {} {}", v["registered_domain"], v["fqdn"]);
        }
    }
    eprintln!("{n} URLs");
    assert!(n > 0);
    assert_eq!(bad, 0, "{bad} of {n} URLs differ");
}

/// datatrove's URLFilter verdicts (`scripts/datatrove_filters.py urlfilter`) against grist's
/// `[filters.url]` with the same lists: `GRIST_URLFILTER_LISTS` (a folder with `domains`,
/// `urls` and datatrove's three word lists) and `GRIST_URLFILTER_TRUTH`.
#[test]
fn url_filter_decides_as_datatrove() {
    let (Ok(lists), Ok(truth)) = (std::env::var("GRIST_URLFILTER_LISTS"), std::env::var("GRIST_URLFILTER_TRUTH"))
    else {
        eprintln!("GRIST_URLFILTER_LISTS / GRIST_URLFILTER_TRUTH unset: skipped (run `just check-datatrove`)");
        return;
    };
    let d = std::path::Path::new(&lists);
    let f = |n: &str| vec![d.join(n).display().to_string()];
    let cfg = pipeline::steps::filters::url::UrlFilter {
        domains: f("domains"),
        urls: f("urls"),
        categories: vec![],
        banned_words: vec![],
        banned_subwords: vec![],
        soft_banned_words: vec![],
        banned_words_files: f("banned_words.txt"),
        banned_subwords_files: f("banned_subwords.txt"),
        soft_banned_words_files: f("soft_banned_words.txt"),
        soft_word_threshold: 2,
    };
    let l = cfg.load().unwrap();
    let (mut n, mut bad) = (0, 0);
    for line in std::fs::read_to_string(&truth).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let url = v["url"].as_str().unwrap();
        let ours = l.check(url, &mut Vec::new()).map(|r| r.rule);
        let want = v["verdict"].as_array().map(|a| a[1].as_str().unwrap().to_string());
        n += 1;
        if ours != want {
            bad += 1;
            eprintln!("{url}: ours {ours:?}, datatrove {want:?}");
        }
    }
    eprintln!("{n} URLs");
    assert!(n > 0);
    assert_eq!(bad, 0, "{bad} of {n} URLs differ");
}
