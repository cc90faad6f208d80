"""A synthetic near-duplicate corpus made from real text, for scripts/dedup-memory.sh.

Words come from real documents in ../shared/data (cc2019-30 and the cc_net head files);
document i is 60-140 words drawn at random from that word stream (real vocabulary and word
frequencies; consecutive windows would overlap and make the corpus one big near-duplicate at
this size), and every 20th document is a near copy of an earlier one (1 word replaced, so
5-gram Jaccard about 0.9). Writes JSON lines with `id` and `text`.

usage: dedup_corpus.py DATA_DIR N OUT.jsonl
"""

import gzip
import json
import random
import sys


def main():
    data, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    words = []
    for name in ["web/cc2019-30.jsonl.gz", "web/cc_en_head-0091.jsonl.gz", "web/cc_en_head-0174.jsonl.gz"]:
        with gzip.open(f"{data}/{name}", "rt") as f:
            for line in f:
                words.extend(json.loads(line).get("text", "").split())
    rng = random.Random(20200528)
    kept = []
    with open(out, "w") as f:
        for i in range(n):
            if i % 20 == 19 and kept:
                base = list(rng.choice(kept))
                for _ in range(1):
                    base[rng.randrange(len(base))] = rng.choice(words)
                doc = base
            else:
                doc = rng.choices(words, k=rng.randint(60, 140))
                if len(kept) < 1000:
                    kept.append(doc)
                else:
                    kept[rng.randrange(1000)] = doc
            f.write(json.dumps({"id": f"d{i}", "text": " ".join(doc)}) + "\n")


if __name__ == "__main__":
    main()
