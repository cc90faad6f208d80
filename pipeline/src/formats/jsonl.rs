//! Fields of a JSON record by dotted path (`text`, `metadata.url`), read without building the
//! record's value tree: every other value is skipped as it is parsed (serde's `IgnoredAny`),
//! so a huge or deeply nested record costs the wanted strings and nothing else. Syntax is
//! checked over the whole record.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The string values found at the wanted paths (`None`: absent, or not a string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub values: Vec<Option<String>>,
}

/// Parses one JSON record and returns the string at each dotted path of `paths`. A value at a
/// path that is not a string (or a path through something that is not an object) gives `None`;
/// a repeated key keeps its last value, as `serde_json::Value` does.
pub fn extract(text: &str, paths: &[&str]) -> Result<Fields, serde_json::Error> {
    let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
    let wanted: Vec<(usize, &[&str])> = split.iter().enumerate().map(|(i, p)| (i, p.as_slice())).collect();
    let mut out = Fields { values: vec![None; paths.len()] };
    let mut de = serde_json::Deserializer::from_str(text);
    Seek { wanted: &wanted, out: &mut out }.deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// Looks for `wanted` (index into the output, the path's remaining keys) in one value.
struct Seek<'a, 'p> {
    wanted: &'a [(usize, &'p [&'p str])],
    out: &'a mut Fields,
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Paths that end here want this value as a string; the rest want it as an object.
        if self.wanted.iter().any(|(_, rest)| rest.is_empty()) {
            let s = d.deserialize_any(Leaf)?;
            for &(j, rest) in self.wanted {
                if rest.is_empty() {
                    self.out.values[j] = s.clone();
                }
            }
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let below: Vec<(usize, &[&str])> =
                self.wanted.iter().filter(|(_, rest)| rest[0] == key).map(|&(i, rest)| (i, &rest[1..])).collect();
            if below.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                // A repeated key: its last value decides.
                for &(i, _) in &below {
                    self.out.values[i] = None;
                }
                map.next_value_seed(Seek { wanted: &below, out: self.out })?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A wanted value: the string itself, or `None` for anything else (skipped as it is parsed).
struct Leaf;

impl<'de> Visitor<'de> for Leaf {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(self, s: &str) -> Result<Option<String>, E> {
        Ok(Some(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Option<String>, E> {
        Ok(Some(s))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via_value(text: &str, path: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        path.split('.').try_fold(&v, |v, k| v.get(k))?.as_str().map(str::to_string)
    }

    #[test]
    fn the_same_answers_as_a_value_tree() {
        let records = [
            r#"{"text": "hello \"world\" \u00e9", "metadata": {"url": "http://x/"}}"#,
            r#"{"metadata": {"url": 5}, "text": ["not", "a", "string"]}"#,
            r#"{"text": "first", "text": "last"}"#,
            r#"{"metadata": "flat", "text": "t"}"#,
            r#"{"metadata": {"url": "a"}, "metadata": {"other": 1}, "text": "x"}"#,
            r#"[1, 2, {"text": "in an array"}]"#,
            r#""just a string""#,
            r#"{"deep": {"a": [{"b": {"c": [1, 2, 3]}}]}, "text": "after nesting"}"#,
        ];
        for r in records {
            let got = extract(r, &["text", "metadata.url"]).unwrap();
            assert_eq!(got.values, [via_value(r, "text"), via_value(r, "metadata.url")], "{r}");
        }
    }

    #[test]
    fn syntax_errors_anywhere_are_errors_and_nesting_is_bounded() {
        for bad in [r#"{"text": "x", "other": [1, 2}"#, r#"{"text": "x"} trailing"#, r#"{"text": "x""#, "{"] {
            assert!(extract(bad, &["text"]).is_err(), "{bad}");
        }
        // Skipped values are skipped without recursion: deep nesting costs no stack.
        let deep = format!("{{\"text\": \"x\", \"n\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(extract(&deep, &["text"]).unwrap().values, [Some("x".to_string())]);
    }
}
