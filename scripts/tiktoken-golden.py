"""Golden GPT-2 (r50k_base) token ids for grist's tokenizer test, from Python tiktoken loaded
with the rank file that tiktoken-rs compiles in (works offline). Run by hand:
  python scripts/tiktoken-golden.py RANK_FILE DATA_DIR > pipeline/tests/golden/gpt2_tokens.json
Edge cases are synthetic strings (committed with their ids); real texts come from
../shared/data and only their ids are committed (the test reads the texts from there).
"""
import gzip
import json
import sys

import tiktoken
import tiktoken.load

PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ranks = tiktoken.load.load_tiktoken_bpe(sys.argv[1])
enc = tiktoken.Encoding("r50k_base", pat_str=PAT, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
data = sys.argv[2]

cases = [
    "Hello world",
    "\ufeffByte order mark at the start",
    "emoji 🎉👩‍👩‍👧 and flags 🇫🇷",
    "CRLF line\r\nendings\r\n\r\n",
    "long    whitespace" + " " * 40 + "runs\t\t\t\n\n\n\n",
    "Ünïcödé, ΟΔΟΣ, 東京, Привет, עברית",
    "the <|endoftext|> marker as ordinary text",
    "numbers 1234567890 3.14159 -42 1e10",
    "it's we've they're I'm you'll he'd",
    "",
]
real = []
with gzip.open(f"{data}/web/cc2019-30.jsonl.gz", "rt") as f:
    for i, line in enumerate(f):
        if i in (0, 1, 12, 240):
            real.append({"file": "web/cc2019-30.jsonl.gz", "line": i, "ids": enc.encode_ordinary(json.loads(line)["text"])})
with open(f"{data}/curated/moby-dick.txt", encoding="utf-8") as f:
    text = f.read()[:20000]
real.append({"file": "curated/moby-dick.txt", "chars": 20000, "ids": enc.encode_ordinary(text)})
print(json.dumps({"tiktoken": tiktoken.__version__, "cases": [{"text": t, "ids": enc.encode_ordinary(t)} for t in cases], "real": real}, ensure_ascii=False))
