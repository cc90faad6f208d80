"""MinHash signatures of datasketch and datatrove on grist's ingest output, for
`just bench-dedup` (scripts/bench-dedup.sh runs grist itself and prints the comparison).

Same settings as grist's `shingles` mode: word 5-grams, 112 hash functions (14 bands x 8).
datasketch: lowercase, whitespace words, MinHash(num_perm=112).update_batch of the encoded
5-grams. datatrove: MinhashDedupSignature with its default MinhashConfig (5-grams, 14 x 8,
its text simplification and spaCy word tokenizer), on the first DATATROVE_MB of text (it is
two orders of magnitude slower). CPU seconds of this process; prints one JSON object.

usage: bench_dedup.py SHARD_DIR DATATROVE_MB
"""

import glob
import json
import os
import sys
import tempfile
import time

import pyarrow.parquet as pq


def main():
    shard_dir, dt_mb = sys.argv[1], float(sys.argv[2])
    texts = []
    for path in sorted(glob.glob(os.path.join(shard_dir, "part-*.parquet"))):
        texts.extend(pq.read_table(path, columns=["text"]).column("text").to_pylist())
    mb = sum(len(t.encode()) for t in texts) / 1e6
    out = {"docs": len(texts), "text_mb": mb}

    from datasketch import MinHash

    t0 = time.process_time()
    for t in texts:
        words = t.lower().split()
        grams = {" ".join(words[i : i + 5]).encode() for i in range(len(words) - 4)}
        if grams:
            m = MinHash(num_perm=112)
            m.update_batch(list(grams))
    out["datasketch"] = {"cpu_seconds": time.process_time() - t0, "mb": mb, "docs": len(texts)}

    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    subset, size = [], 0
    for i, t in enumerate(texts):
        if size >= dt_mb * 1e6:
            break
        subset.append(Document(text=t, id=str(i)))
        size += len(t.encode())
    step = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
    t0 = time.process_time()
    step.run(iter(subset))
    out["datatrove"] = {"cpu_seconds": time.process_time() - t0, "mb": size / 1e6, "docs": len(subset)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
