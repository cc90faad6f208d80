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
        // serde_json's Value refuses nesting past 128 levels, numbers out of f64's range and
        // lone UTF-16 surrogate escapes (`\udd8d`, grammatical JSON that no Rust string can
        // hold); the field reader skips the values it does not want without recursion or
        // conversion and accepts such a record (its own fields are still read exactly, and
        // one of them holding such an escape is an error for both). Found by this target.
        (Ok(_), Err(e))
            if ["recursion limit", "out of range", "surrogate", "escape"].iter().any(|k| e.to_string().contains(k)) => {}
        (f, t) => panic!("field reader {:?} but value tree {:?} on {text:?}", f.is_ok(), t.is_ok()),
    }
});
