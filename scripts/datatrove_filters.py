"""datatrove's heuristic filters, for grist's side-by-side checks (run in the venv that
scripts/check-datatrove.sh or scripts/bench-filters.sh creates: datatrove and spaCy from PyPI).

  truth  IN.jsonl OUT.jsonl   every filter on every text of IN ({"id", "text"} lines), each on
                              the original text: its verdict (true or [false, reason]), C4's
                              rewritten text, spaCy's words and sentence count, and the text
                              after PIIFormatter (a fresh one per text, as grist restarts its
                              placeholders' turn per document)
  bench  SHARD_DIR            FineWeb's chain (Gopher repetition, Gopher quality, C4 without the
                              terminal-punctuation rule, FineWeb quality) over the `text` column
                              of the parquet shards in SHARD_DIR, on one core: prints
                              documents, MB, kept, seconds as JSON
  export SHARD_DIR OUT.jsonl  the shards' id and text as JSON lines
  lidbench MODEL SHARD_DIR    the fasttext package over the shards' texts, keeping English
                              above 0.65 as datatrove's LanguageFilter(languages=["en"]), on one
                              core: documents, MB, kept, seconds as JSON
  lid MODEL IN.jsonl OUT.jsonl  the fasttext package's predictions (every label, k=-1) for each
                              text with newlines replaced by spaces, as datatrove's LanguageFilter
"""
import glob
import json
import sys
import time


def texts_of(shard_dir):
    import pyarrow.parquet as pq

    for p in sorted(glob.glob(f"{shard_dir}/part-*.parquet")):
        t = pq.read_table(p, columns=["id", "text"])
        yield from zip(t.column("id").to_pylist(), t.column("text").to_pylist())


def filters():
    from datatrove.pipeline.filters import (
        C4ParagraphFilter,
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return {
        "gopher_quality": GopherQualityFilter(),
        "gopher_repetition": GopherRepetitionFilter(),
        "c4_quality": C4QualityFilter(),
        "c4_quality_fineweb": C4QualityFilter(filter_no_terminal_punct=False),
        "c4_paragraph": C4ParagraphFilter(),
        "fineweb_quality": FineWebQualityFilter(),
    }


def verdict(r):
    return [bool(r[0]), r[1]] if isinstance(r, tuple) else bool(r)


def truth(inp, out):
    from datatrove.data import Document
    from datatrove.utils.text import split_into_sentences, split_into_words

    from datatrove.pipeline.formatters import PIIFormatter

    fs = filters()
    with open(inp) as f, open(out, "w") as o:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            rec = json.loads(line)
            text = rec["text"]
            row = {"id": rec.get("id", n)}
            row["words"] = split_into_words(text) if text else []
            row["n_sentences"] = len(split_into_sentences(text)) if text else 0
            for name, flt in fs.items():
                doc = Document(text=text, id=str(row["id"]))
                try:
                    row[name] = verdict(flt.filter(doc))
                except Exception as e:  # datatrove raises on some degenerate inputs
                    row[name] = ["EXCEPTION", f"{type(e).__name__}: {e}"]
                if name.startswith("c4_quality"):
                    row[name + "_text"] = doc.text
            row["pii"] = PIIFormatter().format(text)
            o.write(json.dumps(row, ensure_ascii=False) + "\n")


def bench(shard_dir):
    from datatrove.data import Document

    fs = filters()
    chain = [fs[n] for n in ("gopher_repetition", "gopher_quality", "c4_quality_fineweb", "fineweb_quality")]
    docs = list(texts_of(shard_dir))
    start = time.perf_counter()
    kept = 0
    for i, text in docs:
        doc = Document(text=text, id=i)
        if all(verdict(f.filter(doc)) is True for f in chain):
            kept += 1
    secs = time.perf_counter() - start
    mb = sum(len(t.encode()) for _, t in docs) / 1e6
    print(json.dumps({"documents": len(docs), "mb": mb, "kept": kept, "seconds": secs}))


def export(shard_dir, out):
    with open(out, "w") as o:
        for i, text in texts_of(shard_dir):
            o.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")


def lid(model, inp, out):
    import fasttext

    m = fasttext.load_model(model)
    with open(inp) as f, open(out, "w") as o:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            labels, scores = m.predict(rec["text"].replace("\n", " "), k=-1)
            o.write(json.dumps({"id": rec["id"], "labels": list(labels), "scores": [float(s) for s in scores]}) + "\n")


def lidbench(model, shard_dir):
    import fasttext

    m = fasttext.load_model(model)
    docs = [t for _, t in texts_of(shard_dir)]
    start = time.perf_counter()
    kept = 0
    for text in docs:
        labels, scores = m.predict(text.replace("\n", " "), k=-1)
        if dict(zip(labels, scores)).get("__label__en", 0.0) > 0.65:
            kept += 1
    secs = time.perf_counter() - start
    print(json.dumps({"documents": len(docs), "mb": sum(len(t.encode()) for t in docs) / 1e6, "kept": kept, "seconds": secs}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"truth": truth, "bench": bench, "export": export, "lid": lid, "lidbench": lidbench}[cmd](*args)
