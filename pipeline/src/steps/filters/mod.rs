//! `grist filters`: the filters every modern Common Crawl recipe runs beside GPT-3's
//! classifier, in FineWeb's order: URL block lists, fastText language ID, Gopher repetition, Gopher quality, C4
//! (line rules that rewrite the text, then document rules), mC4's paragraph rule, FineWeb
//! quality. Each is off
//! unless its table is in the recipe (`[filters.gopher_quality]` ...); each decides exactly as
//! datatrove does (`rules`). A removed document goes to the ledger with its rule
//! (`{filter}.{rule}`, e.g. `fineweb.line_punct_ratio`) and the measured value; a kept one
//! whose text a line rule changed has its changes in the `edits` side table (per rule: lines
//! removed, and the lines themselves with `keep_removed_lines`). Every rule's measured values
//! are counted into a histogram per rule (the manifest's `measured/...` counters, read back by
//! [`FilterReport`]), which `grist inspect` and the report show beside the threshold.
//!
//! One unit per input shard, so the output is the same for any slicing. Not here: the
//! classifier (`quality`), near-duplicates (`dedup`).

pub mod pii;
pub mod rules;
pub mod url;

mod punctuation;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, StringArray, UInt64Array};
use shards::arrow::compute::filter_record_batch;
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::ParquetSink;
use shards::{At, DocReader, DocWriter, LedgerEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions, str_col};

use crate::core::error::{StageError, arrow_err};
use crate::core::slice::TaskSlice;
use crate::core::stage::{MANIFEST, Stage, TaskReport};
use crate::steps::{Outcome, Produces, Shape, Step, StepCtx, need};
use crate::text::fasttext;
use rules::{
    C4Paragraph, C4Quality, Doc, FineWebQuality, GopherQuality, GopherRepetition, Identified, Language, LinesRemoved,
    Measured, Removal,
};

/// Stage name.
pub const STAGE: &str = "filters";
/// Manifest counters: `measured/{filter}/{rule}/{bin}` (see [`bin_of`]), `removed/{filter}/{rule}`,
/// `lines_removed/{filter}/{rule}`, and `edited/{filter}` (documents whose text changed).
const MEASURED: &str = "measured/";
const REMOVED: &str = "removed/";
const LINES_REMOVED: &str = "lines_removed/";
const EDITED: &str = "edited/";
const REPLACED: &str = "pii_replaced/";
/// Documents the URL filter could not judge (no `url`): kept.
const NO_URL: &str = "url_missing";
/// The config key (beside the recipe's) holding the language model's checksum.
const LANGUAGE_MODEL_XXH3: &str = "language_model_xxh3";
/// ... and the URL lists' digest.
const URL_LISTS_XXH3: &str = "url_lists_xxh3";
/// The side table of text changes.
pub const EDITS: &str = "edits";
const EDITS_FORMAT: &str = "filter_edits";

/// `filters`: the heuristic filters of Gopher, C4 and FineWeb.
pub static STEP: Step = Step {
    name: STAGE,
    table: "filters",
    input: Some("ingest"),
    shape: Shape::Sliced,
    produces: Produces::Documents,
    about: "URL lists, language ID, Gopher, C4, FineWeb and PII filters (datatrove's rules), each removal ledgered",
    run: step,
};

fn default_input() -> String {
    STEP.input.unwrap_or_default().to_string()
}

/// `[filters]` in a recipe: the input and one optional table per filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersConfig {
    /// The step whose documents are filtered (a directory under `run.out`).
    #[serde(default = "default_input")]
    pub input: String,
    /// Write the lines a line rule removed into the `edits` side table (else only counts).
    #[serde(default)]
    pub keep_removed_lines: bool,
    /// Runs first, on the documents' `url` column (a document without one is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<url::UrlFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gopher_repetition: Option<GopherRepetition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gopher_quality: Option<GopherQuality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c4: Option<C4Quality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c4_paragraph: Option<C4Paragraph>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fineweb: Option<FineWebQuality>,
    /// Runs last, on the documents the others kept: a text change, not a removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<pii::Pii>,
}

impl FiltersConfig {
    /// The configured filters' names, in the order they run.
    pub fn names(&self) -> Vec<&'static str> {
        [
            ("url", self.url.is_some()),
            ("language", self.language.is_some()),
            ("gopher_repetition", self.gopher_repetition.is_some()),
            ("gopher_quality", self.gopher_quality.is_some()),
            ("c4", self.c4.is_some()),
            ("c4_paragraph", self.c4_paragraph.is_some()),
            ("fineweb", self.fineweb.is_some()),
            ("pii", self.pii.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }

    /// Problems with the settings (a recipe error).
    pub fn check(&self) -> Result<(), String> {
        if self.names().is_empty() {
            return Err(
                "[filters] has no filter: add a table such as [filters.gopher_quality] or [filters.fineweb]".into()
            );
        }
        if let Some(g) = &self.gopher_repetition
            && g.top_n_grams.iter().chain(&g.dup_n_grams).any(|&(n, _)| n == 0 || n > 64)
        {
            return Err("filters.gopher_repetition n-gram sizes must be between 1 and 64".into());
        }
        Ok(())
    }
}

/// What the filters did to one document.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The filter and rule that removed it.
    pub removed: Option<(&'static str, Removal)>,
    /// The text after line rules, when they changed it.
    pub text: Option<String>,
    /// Values measured, per filter.
    pub measured: Vec<(&'static str, Measured)>,
    /// Lines the C4 rules removed.
    pub lines: LinesRemoved,
    /// The language ID's most likely language.
    pub language: Option<Identified>,
    /// What the PII formatter replaced.
    pub pii: pii::Replaced,
}

/// The configured filters with what they load (the language ID's model).
#[derive(Debug)]
pub struct Filters<'c> {
    pub cfg: &'c FiltersConfig,
    pub lid: Option<fasttext::Model>,
    pub urls: Option<url::Lists>,
}

impl<'c> Filters<'c> {
    /// Loads the language ID's model, if the recipe has one.
    pub fn load(cfg: &'c FiltersConfig) -> Result<Filters<'c>, StageError> {
        let lid = match &cfg.language {
            None => None,
            Some(l) => {
                let loc = Loc::parse(&l.model)?;
                let bytes = loc.read()?;
                let model = fasttext::Model::from_bytes(&bytes).map_err(|e| StageError::Input {
                    at: At::byte(loc.to_string(), e.offset as u64),
                    msg: format!(
                        "{}\nhint: filters.language.model must be a fastText model (lid.176.bin or lid.176.ftz)",
                        e.msg
                    ),
                })?;
                if model.args.model != 3 {
                    return Err(StageError::Input {
                        at: At::file(loc.to_string()),
                        msg: "a fastText model that is not a classifier (trained as skipgram or cbow)".into(),
                    });
                }
                Some(model)
            }
        };
        let urls = match &cfg.url {
            None => None,
            Some(u) => Some(u.load().map_err(|msg| StageError::Input {
                at: At::file("[filters.url]".to_string()),
                msg: format!("{msg}\nhint: filters.url's lists are files or folders the recipe names"),
            })?),
        };
        Ok(Filters { cfg, lid, urls })
    }

    /// Runs the configured filters over one document (its text and URL), in order, until one
    /// removes it.
    pub fn apply(&self, text: &str, url: Option<&str>) -> Verdict {
        apply_from(self.cfg, text, |doc, v| {
            if let (Some(lists), Some(u)) = (&self.urls, url.filter(|u| !u.is_empty())) {
                let mut seen = Measured::new();
                if let Some(r) = lists.check(u, &mut seen) {
                    v.removed = Some(("url", r));
                }
                v.measured.push(("url", seen));
            }
            if v.removed.is_some() {
                return;
            }
            if let (Some(l), Some(model)) = (&self.cfg.language, &self.lid) {
                let mut seen = Measured::new();
                let (top, removal) = l.check(model, doc, &mut seen);
                v.language = top;
                if let Some(r) = removal {
                    v.removed = Some(("language", r));
                }
                v.measured.push(("language", seen));
            }
        })
    }
}

/// Runs the text filters (all but the language ID) over one text, in order, until one removes
/// it: for the filters that need nothing loaded.
pub fn apply(cfg: &FiltersConfig, text: &str) -> Verdict {
    apply_from(cfg, text, |_, _| {})
}

fn apply_from(cfg: &FiltersConfig, text: &str, first: impl FnOnce(&mut Doc, &mut Verdict)) -> Verdict {
    let mut doc = Doc::new(text);
    let mut v = Verdict::default();
    first(&mut doc, &mut v);
    let mut run = |name: &'static str,
                   v: &mut Verdict,
                   f: &mut dyn FnMut(&mut Doc, &mut Measured, &mut LinesRemoved) -> Option<Removal>| {
        if v.removed.is_some() {
            return;
        }
        let mut seen = Measured::new();
        if let Some(r) = f(&mut doc, &mut seen, &mut v.lines) {
            v.removed = Some((name, r));
        }
        v.measured.push((name, seen));
    };
    if let Some(f) = &cfg.gopher_repetition {
        run("gopher_repetition", &mut v, &mut |d, s, _| f.check(d, s));
    }
    if let Some(f) = &cfg.gopher_quality {
        run("gopher_quality", &mut v, &mut |d, s, _| f.check(d, s));
    }
    if let Some(f) = &cfg.c4 {
        run("c4", &mut v, &mut |d, s, l| f.check(d, s, l, cfg.keep_removed_lines));
    }
    if let Some(f) = &cfg.c4_paragraph {
        run("c4_paragraph", &mut v, &mut |d, s, _| f.check(d, s));
    }
    if let Some(f) = &cfg.fineweb {
        run("fineweb", &mut v, &mut |d, s, _| f.check(d, s));
    }
    if v.removed.is_none()
        && let Some(p) = &cfg.pii
    {
        let (new, n) = p.apply(&doc.text);
        if let Some(t) = new {
            doc.set_text(t);
        }
        v.pii = n;
    }
    if v.removed.is_none() && doc.text != text {
        v.text = Some(doc.text.into_owned());
    }
    v
}

/// The histogram bin of a measured value: 20 bins of 0.05 over [0, 1), then four bins per
/// doubling from 1 up (bin 20 starts at 1, bin 24 at 2, bin 28 at 4 ...).
pub fn bin_of(value: f64) -> i64 {
    if !value.is_finite() || value < 0.0 {
        return -1;
    }
    if value < 1.0 { (value * 20.0) as i64 } else { 20 + (value.log2() * 4.0) as i64 }
}

/// The lower edge of a bin of [`bin_of`].
pub fn bin_start(bin: i64) -> f64 {
    if bin < 20 { bin as f64 / 20.0 } else { 2f64.powf((bin - 20) as f64 / 4.0) }
}

fn step(ctx: &StepCtx) -> Result<Outcome, StageError> {
    let cfg = need(&ctx.recipe.filters, STEP.table)?;
    let out = ctx.dir(STAGE);
    let rep = run(cfg, &ctx.dir(&cfg.input), &out, ctx.slice)?;
    Outcome::units(rep, "documents", "kept").then(|| {
        let m = Manifest::read(&out.join(MANIFEST))?;
        Ok(FilterReport::read(&m)?.render())
    })
}

fn model_err(loc: &Loc) -> impl Fn(ShardError) -> StageError + '_ {
    move |e| StageError::Input { at: At::file(loc.to_string()), msg: e.to_string() }
}

fn edits_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("filter", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("lines", DataType::Utf8, true),
    ]))
}

/// Rows of the edits table for one document.
#[derive(Default)]
struct Edits {
    ids: Vec<String>,
    filters: Vec<&'static str>,
    rules: Vec<&'static str>,
    counts: Vec<u64>,
    lines: Vec<Option<String>>,
}

/// Runs the filters for one task slice over the documents in `docs_dir`.
pub fn run(cfg: &FiltersConfig, docs_dir: &Loc, out: &Loc, slice: TaskSlice) -> Result<TaskReport, StageError> {
    cfg.check().map_err(StageError::Recipe)?;
    let filters = Filters::load(cfg)?;
    let input = Manifest::read(&docs_dir.join(MANIFEST))?;
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    if let Some(u) = &filters.urls {
        // The lists' bytes, not their paths, decide the output.
        config[URL_LISTS_XXH3] = format!("{:016x}", u.digest).into();
    }
    if let Some(l) = &cfg.language {
        // The model's bytes, not its path, decide the output.
        let loc = Loc::parse(&l.model)?;
        let (_, xxh3) = shards::checksum::file_checksum(&loc).map_err(model_err(&loc))?;
        config[LANGUAGE_MODEL_XXH3] = xxh3.into();
    }
    let stage = Stage::per_input_file(STAGE, out.clone(), config, &input);
    stage.run(slice, |ctx| {
        let start = Instant::now();
        let entry = &input.outputs[ctx.unit];
        let src_loc = docs_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let reader = DocReader::open(&src_loc)?;
        let in_schema = reader.schema().clone();
        let mut fields: Vec<Field> = in_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        // The language ID writes `language` (replacing a source's declared language, as
        // datatrove's metadata does) and `language_score`.
        let mut lang_cols = None;
        if cfg.language.is_some() {
            let mut col = |name: &str, t: DataType| match fields.iter().position(|f| f.name() == name) {
                Some(i) => {
                    fields[i] = Field::new(name, t, fields[i].is_nullable());
                    i
                }
                None => {
                    fields.push(Field::new(name, t, false));
                    fields.len() - 1
                }
            };
            lang_cols = Some((col("language", DataType::Utf8), col("language_score", DataType::Float64)));
        }
        let schema = Arc::new(Schema::new(fields));
        let (shard_loc, _) = ctx.shard();
        let (ledger_loc, _) = ctx.ledger();
        let (edits_loc, edits_name) = ctx.side(EDITS);
        let mut writer = DocWriter::create(&shard_loc, schema.clone(), WriteOptions::default())?;
        let mut ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
        let mut edits_sink =
            ParquetSink::create(&edits_loc, edits_schema(), EDITS_FORMAT, 1, WriteOptions::default(), &[])?;
        let mut m = ctx.manifest();
        let text_idx = schema.index_of("text").map_err(arrow_err(&shard_loc))?;
        for batch in reader.batches(None, 2048)? {
            let b = batch?;
            let (ids, sources, texts) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let urls = b.column_by_name("url").and_then(|c| c.as_any().downcast_ref::<StringArray>());
            let url_at = |i: usize| urls.filter(|u| u.is_valid(i)).map(|u| u.value(i));
            if cfg.url.is_some() {
                let missing = (0..b.num_rows()).filter(|&i| url_at(i).is_none_or(str::is_empty)).count();
                m.count(NO_URL, missing as u64);
            }
            let verdicts: Vec<Verdict> =
                (0..b.num_rows()).into_par_iter().map(|i| filters.apply(texts.value(i), url_at(i))).collect();
            let mut keep = Vec::with_capacity(b.num_rows());
            let mut edits = Edits::default();
            for (i, v) in verdicts.iter().enumerate() {
                for (filter, seen) in &v.measured {
                    for (rule, value) in seen {
                        m.count(&format!("{MEASURED}{filter}/{rule}/{}", bin_of(*value)), 1);
                    }
                }
                keep.push(v.removed.is_none());
                if let Some((filter, r)) = &v.removed {
                    m.count(&format!("{REMOVED}{filter}/{}", r.rule), 1);
                    let cmp = if r.value > r.threshold {
                        ">"
                    } else if r.value == r.threshold {
                        "="
                    } else {
                        "<"
                    };
                    let note = r.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
                    ledger.push(LedgerEntry {
                        id: ids.value(i).to_string(),
                        source: sources.value(i).to_string(),
                        stage: STAGE.to_string(),
                        reason: format!("{filter}.{}", r.rule),
                        detail: Some(format!("{} {cmp} {}{note}", r.value, r.threshold)),
                        score: Some(r.value),
                        ..LedgerEntry::default()
                    })?;
                    continue;
                }
                let l = &v.lines;
                let by_rule = [
                    ("too_long_word", l.too_long_word),
                    ("no_terminal_punct", l.no_terminal_punct),
                    ("too_few_words", l.too_few_words),
                    ("javascript", l.javascript),
                    ("policy", l.policy),
                ];
                for (rule, n) in by_rule.into_iter().filter(|r| r.1 > 0) {
                    m.count(&format!("{LINES_REMOVED}c4/{rule}"), n as u64);
                    edits.ids.push(ids.value(i).to_string());
                    edits.filters.push("c4");
                    edits.rules.push(rule);
                    edits.counts.push(n as u64);
                    edits.lines.push(None);
                }
                if cfg.keep_removed_lines && !l.lines.is_empty() {
                    // All removed lines of the document in one row, in text order.
                    edits.ids.push(ids.value(i).to_string());
                    edits.filters.push("c4");
                    edits.rules.push("lines");
                    edits.counts.push(l.lines.len() as u64);
                    edits.lines.push(Some(l.lines.join("\n")));
                }
                if l.total() > 0 {
                    m.count(&format!("{EDITED}c4"), 1);
                }
                let p = &v.pii;
                for (rule, n) in
                    [("email", p.emails), ("ip", p.ips), ("phone", p.phones)].into_iter().filter(|r| r.1 > 0)
                {
                    m.count(&format!("{REPLACED}{rule}"), n);
                    edits.ids.push(ids.value(i).to_string());
                    edits.filters.push("pii");
                    edits.rules.push(rule);
                    edits.counts.push(n);
                    edits.lines.push(None);
                }
                if p.emails + p.ips + p.phones > 0 {
                    m.count(&format!("{EDITED}pii"), 1);
                }
            }
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            if let Some((li, si)) = lang_cols {
                fn lang(v: &Verdict) -> Option<&Identified> {
                    v.language.as_ref()
                }
                let l: ArrayRef = Arc::new(StringArray::from_iter_values(
                    verdicts.iter().map(|v| lang(v).map_or("", |l| l.language.as_str())),
                ));
                let sc: ArrayRef =
                    Arc::new(Float64Array::from_iter_values(verdicts.iter().map(|v| lang(v).map_or(0.0, |l| l.score))));
                for (i, a) in [(li, l), (si, sc)] {
                    if i < cols.len() {
                        cols[i] = a;
                    } else {
                        cols.push(a);
                    }
                }
            }
            if verdicts.iter().any(|v| v.text.is_some()) {
                cols[text_idx] = Arc::new(StringArray::from_iter_values(
                    verdicts.iter().enumerate().map(|(i, v)| v.text.as_deref().unwrap_or(texts.value(i))),
                ));
            }
            let full = RecordBatch::try_new(schema.clone(), cols).map_err(arrow_err(&shard_loc))?;
            let kept = filter_record_batch(&full, &BooleanArray::from(keep)).map_err(arrow_err(&shard_loc))?;
            m.accounting.docs_in += b.num_rows() as u64;
            m.accounting.docs_out += kept.num_rows() as u64;
            m.accounting.docs_ledger += (b.num_rows() - kept.num_rows()) as u64;
            writer.write(&kept)?;
            if !edits.ids.is_empty() {
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(edits.ids.iter())),
                    Arc::new(StringArray::from_iter_values(edits.filters.iter())),
                    Arc::new(StringArray::from_iter_values(edits.rules.iter())),
                    Arc::new(UInt64Array::from_iter_values(edits.counts)),
                    Arc::new(StringArray::from(edits.lines)),
                ];
                edits_sink.write(&RecordBatch::try_new(edits_schema(), cols).map_err(arrow_err(&edits_loc))?)?;
            }
        }
        let rows = writer.finish()?;
        let ledger_rows = ledger.finish()?;
        let edit_rows = edits_sink.finish()?;
        m.side.push(shards::FileEntry::describe(&edits_loc, edits_name, edit_rows)?);
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        m.timings.insert("filter_seconds".into(), start.elapsed().as_secs_f64());
        Ok(m)
    })
}

/// One rule's figures in a filter output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleReport {
    /// Documents the rule removed.
    pub removed: u64,
    /// The threshold from the config (None for rules without one: `empty`, `lorem_ipsum` ...).
    pub threshold: Option<f64>,
    /// Documents measured per value bin: (bin's lower edge, documents), ascending.
    pub histogram: Vec<(f64, u64)>,
}

impl RuleReport {
    /// Documents measured.
    pub fn measured(&self) -> u64 {
        self.histogram.iter().map(|h| h.1).sum()
    }

    /// The lower edge of the bin holding the q-quantile of the measured values.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.measured();
        let want = (q * n as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for &(edge, c) in &self.histogram {
            acc += c;
            if acc >= want {
                return Some(edge);
            }
        }
        None
    }
}

/// What the filters did, read back from a filter output's manifest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilterReport {
    pub docs: u64,
    pub kept: u64,
    /// Per filter (in run order), per rule (in check order of first appearance).
    pub filters: Vec<(String, Vec<(String, RuleReport)>)>,
    /// Lines removed by line rules: (filter/rule, lines).
    pub lines_removed: BTreeMap<String, u64>,
    /// Documents whose text a filter changed (line rules, PII), per filter.
    pub edited: BTreeMap<String, u64>,
    /// PII replaced: (email, ip, phone) -> occurrences.
    pub pii_replaced: BTreeMap<String, u64>,
    /// Documents the URL filter kept for want of a URL.
    pub url_missing: u64,
}

impl FilterReport {
    pub fn read(m: &Manifest) -> Result<FilterReport, StageError> {
        let mut config = m.config.clone();
        if let Some(o) = config.as_object_mut() {
            o.remove(LANGUAGE_MODEL_XXH3);
            o.remove(URL_LISTS_XXH3);
        }
        let cfg: FiltersConfig = serde_json::from_value(config)
            .map_err(|e| StageError::Recipe(format!("the filters manifest's config: {e}")))?;
        let mut rules: BTreeMap<(String, String), RuleReport> = BTreeMap::new();
        let mut out = FilterReport { docs: m.accounting.docs_in, kept: m.accounting.docs_out, ..Default::default() };
        for (k, &v) in &m.counters {
            if let Some(rest) = k.strip_prefix(MEASURED) {
                let mut p = rest.rsplitn(2, '/');
                let (Some(bin), Some(fr)) = (p.next(), p.next()) else { continue };
                let Some((f, r)) = fr.split_once('/') else { continue };
                let Ok(bin) = bin.parse::<i64>() else { continue };
                rules.entry((f.into(), r.into())).or_default().histogram.push((bin_start(bin), v));
            } else if let Some(rest) = k.strip_prefix(REMOVED) {
                let Some((f, r)) = rest.split_once('/') else { continue };
                rules.entry((f.into(), r.into())).or_default().removed += v;
            } else if let Some(rest) = k.strip_prefix(LINES_REMOVED) {
                out.lines_removed.insert(rest.to_string(), v);
            } else if let Some(rest) = k.strip_prefix(EDITED) {
                out.edited.insert(rest.to_string(), v);
            } else if let Some(rest) = k.strip_prefix(REPLACED) {
                out.pii_replaced.insert(rest.to_string(), v);
            } else if k == NO_URL {
                out.url_missing = v;
            }
        }
        for ((f, r), mut rep) in rules {
            rep.histogram.sort_by(|a, b| a.0.total_cmp(&b.0));
            rep.threshold = threshold(&cfg, &f, &r);
            match out.filters.iter_mut().find(|x| x.0 == f) {
                Some(x) => x.1.push((r, rep)),
                None => out.filters.push((f, vec![(r, rep)])),
            }
        }
        let order = cfg.names();
        out.filters.sort_by_key(|(f, _)| order.iter().position(|n| n == f).unwrap_or(usize::MAX));
        for (f, rs) in &mut out.filters {
            let order = rule_order(f);
            rs.sort_by_key(|(r, _)| (order.iter().position(|n| r.starts_with(n)).unwrap_or(usize::MAX), rule_n(r)));
        }
        Ok(out)
    }

    /// Removals per rule, and each rule's measured values beside its threshold: the lower edges
    /// of the histogram bins holding the 10th, 50th and 90th percentiles.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "\nfilters: {} documents in, {} kept", self.docs, self.kept);
        let _ = writeln!(
            s,
            "  {:<46} {:>9} {:>9} {:>10}   {:>22}",
            "rule", "measured", "removed", "threshold", "value p10 / p50 / p90"
        );
        for (f, rules) in &self.filters {
            for (r, x) in rules {
                let q = |p| x.quantile(p).map_or_else(|| "-".into(), short);
                let t = x.threshold.map_or_else(|| "-".into(), |t| t.to_string());
                let name = format!("{f}.{r}");
                let (m, n) = (x.measured(), x.removed);
                let _ = writeln!(
                    s,
                    "  {name:<46} {m:>9} {n:>9} {t:>10}   {:>22}",
                    format!("{} / {} / {}", q(0.1), q(0.5), q(0.9))
                );
            }
        }
        for (k, n) in &self.lines_removed {
            let _ = writeln!(s, "  lines removed by {k}: {n}");
        }
        for (k, n) in &self.edited {
            let _ = writeln!(s, "  documents edited by {k}: {n}");
        }
        if self.url_missing > 0 {
            let _ = writeln!(s, "  url: {} documents without a URL, kept", self.url_missing);
        }
        for (k, n) in &self.pii_replaced {
            let _ = writeln!(s, "  pii: {n} {k} replaced");
        }
        s
    }
}

/// A histogram bin's edge in three significant digits or fewer.
fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The check order of a filter's rules (rule names or their prefixes).
fn rule_order(filter: &str) -> &'static [&'static str] {
    match filter {
        "gopher_repetition" => &[
            "empty",
            "dup_para_frac",
            "dup_para_char_frac",
            "dup_line_frac",
            "dup_line_char_frac",
            "top_",
            "duplicated_",
        ],
        "gopher_quality" => &[
            "gopher_short_doc",
            "gopher_long_doc",
            "gopher_below_avg_threshold",
            "gopher_above_avg_threshold",
            "gopher_too_many_hashes",
            "gopher_too_many_ellipsis",
            "gopher_too_many_bullets",
            "gopher_too_many_end_ellipsis",
            "gopher_below_alpha_threshold",
            "gopher_enough_stop_words",
        ],
        "c4" => &["lorem_ipsum", "curly_bracket", "too_few_sentences"],
        "language" => &["below_threshold"],
        "url" => &["domain", "subdomain", "url", "hard_blacklisted", "soft_blacklisted", "blacklisted_subword"],
        "fineweb" => &["empty", "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio"],
        _ => &[],
    }
}

/// The n of `top_3_gram` / `duplicated_5_n_grams` (0 for other rules), to order them by n.
fn rule_n(rule: &str) -> usize {
    rule.split('_').find_map(|p| p.parse().ok()).unwrap_or(0)
}

/// A rule's threshold in the config.
fn threshold(cfg: &FiltersConfig, filter: &str, rule: &str) -> Option<f64> {
    let n_of = |v: &[(usize, f64)]| v.iter().find(|(n, _)| *n == rule_n(rule)).map(|x| x.1);
    match filter {
        "gopher_quality" => {
            let g = cfg.gopher_quality.as_ref()?;
            Some(match rule {
                "gopher_short_doc" => g.min_doc_words as f64,
                "gopher_long_doc" => g.max_doc_words as f64,
                "gopher_below_avg_threshold" => g.min_avg_word_length,
                "gopher_above_avg_threshold" => g.max_avg_word_length,
                "gopher_too_many_hashes" | "gopher_too_many_ellipsis" => g.max_symbol_word_ratio,
                "gopher_too_many_bullets" => g.max_bullet_lines_ratio,
                "gopher_too_many_end_ellipsis" => g.max_ellipsis_lines_ratio,
                "gopher_below_alpha_threshold" => g.max_non_alpha_words_ratio,
                "gopher_enough_stop_words" => g.min_stop_words as f64,
                _ => return None,
            })
        }
        "gopher_repetition" => {
            let g = cfg.gopher_repetition.as_ref()?;
            match rule {
                "dup_para_frac" => Some(g.dup_para_frac),
                "dup_para_char_frac" => Some(g.dup_para_char_frac),
                "dup_line_frac" => Some(g.dup_line_frac),
                "dup_line_char_frac" => Some(g.dup_line_char_frac),
                r if r.starts_with("top_") => n_of(&g.top_n_grams),
                r if r.starts_with("duplicated_") => n_of(&g.dup_n_grams),
                _ => None,
            }
        }
        "c4" => (rule == "too_few_sentences").then(|| cfg.c4.as_ref().map(|c| c.min_num_sentences as f64)).flatten(),
        "c4_paragraph" => cfg.c4_paragraph.as_ref().map(|c| c.min_paragraph_len as f64),
        "language" => cfg.language.as_ref().map(|l| l.threshold),
        "url" => (rule == "soft_blacklisted").then(|| cfg.url.as_ref().map(|u| u.soft_word_threshold as f64)).flatten(),
        "fineweb" => {
            let f = cfg.fineweb.as_ref()?;
            match rule {
                "line_punct_ratio" => Some(f.line_punct_thr),
                "short_line_ratio" => Some(f.short_line_thr),
                "char_dup_ratio" => Some(f.char_duplicates_ratio),
                "list_ratio" => Some(f.new_line_ratio),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotone_and_invert() {
        let mut last = -1;
        for v in [0.0, 0.04, 0.05, 0.5, 0.99, 1.0, 1.9, 2.0, 3.0, 4.0, 50.0, 1e5] {
            let b = bin_of(v);
            assert!(b >= last, "{v}");
            assert!(bin_start(b) <= v + 1e-12, "{v} in bin {b} starting at {}", bin_start(b));
            last = b;
        }
        assert_eq!(bin_of(0.12), 2);
        assert_eq!(bin_of(1.0), 20);
        assert_eq!(bin_of(2.0), 24);
        assert_eq!(bin_of(f64::NAN), -1);
    }

    #[test]
    fn filters_run_in_order_and_stop_at_the_first_removal() {
        let cfg: FiltersConfig = toml::from_str("[gopher_quality]\n[fineweb]\n").expect("config");
        let v = apply(&cfg, "Hello world. This is a tiny document.");
        let (f, r) = v.removed.expect("removed");
        assert_eq!((f, r.rule.as_str(), r.value, r.threshold), ("gopher_quality", "gopher_short_doc", 7.0, 50.0));
        // FineWeb never ran on it.
        assert_eq!(v.measured.len(), 1);
        let cfg: FiltersConfig = toml::from_str("[fineweb]\nline_punct_thr = 0.5\n").expect("config");
        let v = apply(&cfg, "one line without a stop\nsecond line ends here.\nthird line without");
        let (f, r) = v.removed.expect("removed");
        assert_eq!((f, r.rule.as_str()), ("fineweb", "line_punct_ratio"));
        assert!((r.value - 1.0 / 3.0).abs() < 1e-12);
        assert!(toml::from_str::<FiltersConfig>("[gopher_quality]\nmin_words = 3\n").is_err());
        assert!(toml::from_str::<FiltersConfig>("input = \"ingest\"\n").expect("config").check().is_err());
    }
}
