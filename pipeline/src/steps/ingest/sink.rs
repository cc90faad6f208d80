//! One unit's output: documents batched into its shard, removed records into its ledger,
//! with the accounting (and the admission rules: empty, too short, too large) in one place.

use super::*;

/// Accumulates one unit's documents and ledger entries.
pub(super) struct UnitSink {
    pub(super) schema: SchemaRef,
    pub(super) docs: DocWriter,
    pub(super) ledger: LedgerWriter,
    pub(super) batch: Vec<Doc>,
    pub(super) files: Vec<String>,
    pub(super) offsets: Vec<u64>,
    pub(super) metas: Vec<Meta>,
    pub(super) batch_bytes: usize,
    pub(super) manifest: Manifest,
    pub(super) strict: bool,
    pub(super) abort: Option<(u64, Arc<AtomicU64>)>,
    pub(super) webtext: Option<Arc<Webtext>>,
}

impl UnitSink {
    pub(super) fn keep(&mut self, mut doc: Doc, file: &str, offset: u64, meta: Meta) -> Result<(), StageError> {
        if let Some(w) = &self.webtext
            && w.from.contains(&doc.source)
            && let Some(key) = doc.url.as_deref().and_then(crate::text::urls::normalize)
            && w.keys.contains(&crate::text::urls::key_hash(&key))
        {
            doc.source = w.source.clone();
            self.manifest.count("webtext_matched", 1);
        }
        self.batch_bytes += doc.text.len();
        self.batch.push(doc);
        self.files.push(file.to_string());
        self.offsets.push(offset);
        self.metas.push(meta);
        self.manifest.accounting.docs_in += 1;
        self.manifest.accounting.docs_out += 1;
        if self.batch.len() >= BATCH_DOCS || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Ledgers a record that is bad input (fails the run under `strict`).
    pub(super) fn reject(
        &mut self,
        file: &InputFile,
        offset: u64,
        reason: &str,
        detail: String,
    ) -> Result<(), StageError> {
        let id = doc_id(&file.source, &file.rel, offset);
        self.reject_id(file, id, offset, reason, detail)
    }

    /// [`Self::reject`] for a record whose id is known (WARC records).
    pub(super) fn reject_id(
        &mut self,
        file: &InputFile,
        id: String,
        offset: u64,
        reason: &str,
        detail: String,
    ) -> Result<(), StageError> {
        if self.strict {
            return Err(StageError::Input {
                at: At::byte(file.loc.to_string(), offset),
                msg: format!("{reason}: {detail}\nhint: without `strict` such records go to the ledger"),
            });
        }
        self.filter_id(file, id, offset, reason, detail)
    }

    /// Ledgers a well-formed record that a rule removes (never an error).
    pub(super) fn filter_id(
        &mut self,
        file: &InputFile,
        id: String,
        offset: u64,
        reason: &str,
        detail: String,
    ) -> Result<(), StageError> {
        self.manifest.accounting.docs_in += 1;
        self.manifest.accounting.docs_ledger += 1;
        self.manifest.count(reason, 1);
        self.ledger.push(LedgerEntry {
            id,
            source: file.source.clone(),
            stage: STAGE.to_string(),
            reason: reason.to_string(),
            detail: Some(detail),
            location: Some(format!("{}@{offset}", file.rel)),
            ..LedgerEntry::default()
        })?;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), StageError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let extra: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(self.files.iter())),
            Arc::new(UInt64Array::from_iter_values(self.offsets.iter().copied())),
            Arc::new(StringArray::from_iter(self.metas.iter().map(|m| m.date.as_deref()))),
            Arc::new(StringArray::from_iter(self.metas.iter().map(|m| m.language.as_deref()))),
        ];
        let batch = doc_batch(&self.schema, &self.batch, extra)?;
        self.docs.write(&batch)?;
        if let Some((limit, written)) = &self.abort {
            let before = written.fetch_add(self.batch.len() as u64, Ordering::SeqCst);
            if before + self.batch.len() as u64 >= *limit {
                tracing::error!("{} reached: aborting as a kill would", env::TEST_ABORT_AFTER_DOCS);
                std::process::abort();
            }
        }
        self.batch.clear();
        self.files.clear();
        self.offsets.clear();
        self.metas.clear();
        self.batch_bytes = 0;
        Ok(())
    }
}

pub(super) enum ReadFailure {
    /// The input stream failed at this decompressed offset.
    Io(io::Error, u64),
    Stage(StageError),
}

impl From<StageError> for ReadFailure {
    fn from(e: StageError) -> Self {
        ReadFailure::Stage(e)
    }
}

/// Whitespace-separated words, counting no further than `limit` (the rule only needs to
/// know whether a text reaches `min_words`, and long documents are the common case).
pub(super) fn word_count(text: &str, limit: usize) -> usize {
    text.split_whitespace().take(limit).count()
}

/// Applies the rules every ingested text passes: not empty, at least `min_words` words.
pub(super) fn admit(
    text: String,
    url: Option<String>,
    file: &InputFile,
    offset: u64,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
) -> Result<(), StageError> {
    let id = doc_id(&file.source, &file.rel, offset);
    admit_id(Doc { id, source: file.source.clone(), url, text }, Meta::default(), file, offset, cfg, sink)
}

pub(super) fn admit_id(
    doc: Doc,
    meta: Meta,
    file: &InputFile,
    offset: u64,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
) -> Result<(), StageError> {
    if doc.text.len() as u64 > cfg.max_doc_bytes {
        return sink.filter_id(
            file,
            doc.id,
            offset,
            "too_large",
            format!("{} bytes > max_doc_bytes {}", doc.text.len(), cfg.max_doc_bytes),
        );
    }
    if doc.text.trim_start().is_empty() {
        return sink.filter_id(file, doc.id, offset, "empty", format!("{} bytes of whitespace", doc.text.len()));
    }
    let words = word_count(&doc.text, cfg.min_words);
    if words < cfg.min_words {
        return sink.filter_id(
            file,
            doc.id,
            offset,
            "too_short",
            format!("{words} words < min_words {}", cfg.min_words),
        );
    }
    sink.keep(doc, &file.rel, offset, meta)
}
