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
  urls DATA OUT.jsonl LISTS   the URLs of ../shared/data (crawl metadata, Reddit dumps) and
                              edge cases as {"url"} lines, and hand-made block lists made from
                              them in the folder LISTS (domains: every 25th registered domain
                              and every 10th other host; urls: every 40th URL)
  tld IN.jsonl OUT.jsonl      tldextract's registered_domain and fqdn of each {"url"} line
  urlfilter IN.jsonl LISTS OUT.jsonl
                              datatrove's URLFilter (no integrated lists) with the lists in the
                              folder LISTS (domains, urls: hand-made; banned_words.txt,
                              banned_subwords.txt, soft_banned_words.txt: copied from datatrove's
                              assets here, blank lines dropped), per URL
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


EDGE_URLS = [
    "http://www.ck/", "http://a.b.ck/", "HTTP://WWW.Example.COM/x", "http://xn--bcher-kva.de/",
    "http://user:pw@sub.example.co.uk:80/", "http://[::1]/", "http://1.2.3.4:80/", "http://localhost/",
    "//cdn.example.org/x", "example.com:8080/p", "http://example.com./", "https://a.b.c.kawasaki.jp/",
    "http://foo.github.io/", "ftp://files.example.co.jp/a", "mailto:joe@example.com",
    "http://192.168.0.1.example.com/", "http://EXAMPLE.co.UK", "http://ex ample.com/",
    "http://a.b.c.d.e.f.g.blogspot.co.uk/", "https://例え.テスト/", "http://www.city.kawasaki.jp/",
    "https://example.com/pornhubvideo", "https://example.com/free-porn-videos",
    "https://example.com/hot-sexy-girls", "https://example.com/PORN", "https://example.com/xxx-teen",
]


def urls(data, out, lists):
    import gzip
    import os
    import subprocess

    found = []
    for line in gzip.open(os.path.join(data, "web/cc2019-30.jsonl.gz"), "rt"):
        u = (json.loads(line).get("metadata") or {}).get("url")
        if u:
            found.append(u)
    for name, tool in (("RS_2005.zst", "zstd"), ("RS_v2_2005-06.xz", "xz"), ("RS_v2_2005-07.xz", "xz")):
        raw = subprocess.run([tool, "-dc", os.path.join(data, "reddit", name)], capture_output=True).stdout
        for line in raw.decode(errors="replace").splitlines():
            try:
                u = json.loads(line).get("url")
            except (ValueError, AttributeError):
                continue
            if isinstance(u, str) and u:
                found.append(u)
    found += EDGE_URLS
    with open(out, "w") as o:
        for u in found:
            o.write(json.dumps({"url": u}, ensure_ascii=False) + "\n")
    tld(out, out + ".tld")
    parts = [json.loads(l) for l in open(out + ".tld")]
    os.makedirs(lists, exist_ok=True)
    doms = sorted({p["registered_domain"] for p in parts if p["registered_domain"]})
    hosts = sorted({p["fqdn"] for p in parts if p["fqdn"] and p["fqdn"] != p["registered_domain"]})
    with open(os.path.join(lists, "domains"), "w") as o:
        o.write("# hand-made from ../shared/data's URLs\n" + "\n".join(doms[::25] + hosts[::10]) + "\n")
    with open(os.path.join(lists, "urls"), "w") as o:
        o.write("\n".join(found[::40]) + "\n")


def tld(inp, out):
    import os

    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    import tldextract

    ex = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    with open(inp) as f, open(out, "w") as o:
        for line in f:
            u = json.loads(line)["url"]
            r = ex(u)
            o.write(json.dumps({"url": u, "registered_domain": r.top_domain_under_public_suffix, "fqdn": r.fqdn}, ensure_ascii=False) + "\n")


def urlfilter(inp, lists, out):
    import os
    import shutil

    import datatrove
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter

    assets = os.path.join(os.path.dirname(datatrove.__file__), "assets")
    words = {}
    for name in ("banned_words", "banned_subwords", "soft_banned_words"):
        shutil.copy(os.path.join(assets, f"{name}.txt"), os.path.join(lists, f"{name}.txt"))
        words[name] = [l for l in open(os.path.join(lists, f"{name}.txt")) if l.strip()]
    read = lambda n: [l for l in open(os.path.join(lists, n)) if l.strip()]
    f = URLFilter(
        use_integrated_lists=False,
        extra_domains=read("domains"),
        extra_urls=read("urls"),
        banned_words=words["banned_words"],
        banned_subwords=words["banned_subwords"],
        soft_banned_words=words["soft_banned_words"],
    )
    with open(inp) as fi, open(out, "w") as o:
        for i, line in enumerate(fi):
            u = json.loads(line)["url"]
            o.write(json.dumps({"url": u, "verdict": verdict(f.filter(Document(text="", id=str(i), metadata={"url": u})))}) + "\n")


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
    {"truth": truth, "bench": bench, "export": export, "lid": lid, "lidbench": lidbench, "tld": tld, "urlfilter": urlfilter, "urls": urls}[cmd](*args)
