//! JSON lines (ingest) and Pushshift lines (reddit) from arbitrary bytes. Beyond no panic and
//! no unbounded allocation, a differential check: the field reader that builds no value tree
//! must accept exactly the records `serde_json::Value` accepts and find the same strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::formats::jsonl;

fn via_value(v: &serde_json::Value, path: &str) -> Option<String> {
    path.split('.').try_fold(v, |v, k| v.get(k))?.as_str().map(str::to_string)
}

fuzz_target!(|data: &[u8]| {
    let _ = pipeline::steps::reddit::parse_submission(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let paths = ["text", "metadata.url"];
    let fast = jsonl::extract(text, &paths);
    let tree = serde_json::from_str::<serde_json::Value>(text);
    match (fast, tree) {
        (Ok(f), Ok(v)) => {
            let want: Vec<Option<String>> = paths.iter().map(|p| via_value(&v, p)).collect();
            assert_eq!(f.values, want, "{text:?}");
        }
        (Err(_), Err(_)) => {}
        // serde_json's Value refuses nesting past 128 levels and numbers out of f64's range;
        // the field reader skips skipped values without recursion or conversion and may
        // accept such a record (its fields are still read exactly).
        (Ok(_), Err(e)) if e.to_string().contains("recursion limit") || e.to_string().contains("out of range") => {}
        (f, t) => panic!("field reader {:?} but value tree {:?} on {text:?}", f.is_ok(), t.is_ok()),
    }
});
