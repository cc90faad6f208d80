"""Golden values for grist's `gpt3` dedup mode: Spark ML's Tokenizer + HashingTF +
MinHashLSH(numHashTables=10, seed=42) on a few texts, and approxSimilarityJoin's pairs.
Run by hand (pip install pyspark; Java 17):
  python scripts/spark-minhash-golden.py > pipeline/tests/golden/spark_minhash.json
"""
import json

from pyspark.ml.feature import HashingTF, MinHashLSH, Tokenizer
from pyspark.sql import SparkSession

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "the quick brown fox jumped over the lazy dog",
    "The Quick  Brown Fox\tjumps over the lazy dog!",
    "a completely different sentence about rivers and harbors",
    "Ünïcödé tëxt wïth ΟΔΟΣ and 東京 and emoji 🎉",
    "x",
    "one two three four five six seven eight nine ten eleven twelve",
    "one two three four five six seven eight nine ten eleven thirteen",
]

spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
df = spark.createDataFrame([(i, t) for i, t in enumerate(TEXTS)], ["id", "text"])
words = Tokenizer(inputCol="text", outputCol="words").transform(df)
feats = HashingTF(inputCol="words", outputCol="features").transform(words)
model = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=10, seed=42).fit(feats)
rows = model.transform(feats).orderBy("id").collect()
pairs = (
    model.approxSimilarityJoin(feats, feats, 0.6, distCol="dist")
    .where("datasetA.id < datasetB.id")
    .selectExpr("datasetA.id as a", "datasetB.id as b", "dist")
    .orderBy("a", "b")
    .collect()
)
print(
    json.dumps(
        {
            "spark": spark.version,
            "num_hash_tables": 10,
            "seed": 42,
            "threshold": 0.6,
            "cases": [{"text": r["text"], "hashes": [int(h[0]) for h in r["hashes"]]} for r in rows],
            "pairs": [[p["a"], p["b"], p["dist"]] for p in pairs],
        },
        indent=1,
        ensure_ascii=False,
    )
)
spark.stop()
