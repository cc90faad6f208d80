"""Dumps spaCy's English tokenizer data into pipeline/data/spacy-en/ (grist's port of the
tokenizer, pipeline/src/text/spacy.rs, embeds it): the prefix, suffix, infix and URL patterns,
the special cases (each as its tokens' texts) and the sentencizer's punctuation. Run with spaCy
from PyPI (no model needed): python scripts/spacy-dump.py  (in a venv with spacy==3.8.18)."""
import json
import os

import spacy

out = os.path.join(os.path.dirname(__file__), "..", "pipeline", "data", "spacy-en")
nlp = spacy.blank("en")
nlp.add_pipe("sentencizer")
tok = nlp.tokenizer
pattern = lambda f: f.__self__.pattern if f is not None else None
json.dump(
    {
        "prefix": pattern(tok.prefix_search),
        "suffix": pattern(tok.suffix_search),
        "infix": pattern(tok.infix_finditer),
        "token_match": pattern(tok.token_match),
        "url_match": pattern(tok.url_match),
        "faster_heuristics": tok.faster_heuristics,
    },
    open(f"{out}/patterns.json", "w"),
    ensure_ascii=False,
    indent=1,
)
ORTH = spacy.attrs.ORTH
json.dump(
    {k: [d[ORTH] for d in v] for k, v in tok.rules.items()},
    open(f"{out}/special_cases.json", "w"),
    ensure_ascii=False,
    indent=0,
    sort_keys=True,
)
json.dump(sorted(nlp.get_pipe("sentencizer").punct_chars), open(f"{out}/sentencizer_punct_chars.json", "w"), ensure_ascii=False)
print("spaCy", spacy.__version__, "->", os.path.normpath(out))
