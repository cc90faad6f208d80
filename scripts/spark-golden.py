# Regenerates pipeline/tests/golden/spark_hashingtf.json with Spark itself:
#   python3 -m venv v && v/bin/pip install pyspark numpy && v/bin/python scripts/spark-golden.py > pipeline/tests/golden/spark_hashingtf.json
# (runs offline in local mode with Java 17).
import json, sys
from pyspark.sql import SparkSession
from pyspark.ml.feature import Tokenizer, HashingTF, NGram, SQLTransformer
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
texts = [
    "Hello World",
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse,",
    "  leading spaces and  double  spaces",
    "tabs\tand\nnewlines\r\nend\n\n",
    "Ünïcödé Straße ΣΊΣΥΦΟΣ ΟΔΟΣ",
    "日本語のテキスト 中文 한국어",
    "emoji 🎉 party 👩‍👩‍👧",
    "İstanbul DİYARBAKIR",
    "",
    "   ",
    "a\u00a0b c",
    "x\u000by\u000cz",
    "The State of the Union is strong. The State of the Union is strong!",
]
df = spark.createDataFrame([(t,) for t in texts], ["text"])
tok = Tokenizer(inputCol="text", outputCol="tokens")
tf = HashingTF(inputCol="tokens", outputCol="tf", numFeatures=1 << 18)
rows = tf.transform(tok.transform(df)).collect()
out = []
for r in rows:
    v = r["tf"]
    out.append({"text": r["text"], "tokens": list(r["tokens"]), "indices": [int(i) for i in v.indices], "values": [float(x) for x in v.values]})
bin_tf = HashingTF(inputCol="tokens", outputCol="tf", numFeatures=1 << 10, binary=True)
rows = bin_tf.transform(tok.transform(df)).collect()
for o, r in zip(out, rows):
    o["binary_1024_indices"] = [int(i) for i in r["tf"].indices]
# ngrams = 3: Tokenizer, NGram(2), NGram(3), concat, HashingTF over all the terms.
toks = tok.transform(df)
toks = NGram(n=2, inputCol="tokens", outputCol="bigrams").transform(toks)
toks = NGram(n=3, inputCol="tokens", outputCol="trigrams").transform(toks)
terms = SQLTransformer(statement="SELECT *, concat(tokens, bigrams) AS terms2, concat(tokens, bigrams, trigrams) AS terms3 FROM __THIS__").transform(toks)
tf2 = HashingTF(inputCol="terms2", outputCol="tf2", numFeatures=1 << 18)
tf3 = HashingTF(inputCol="terms3", outputCol="tf3", numFeatures=1 << 18)
rows = tf3.transform(tf2.transform(terms)).collect()
for o, r in zip(out, rows):
    o["bigrams"] = list(r["bigrams"])
    o["ngrams2_indices"] = [int(i) for i in r["tf2"].indices]
    o["ngrams2_values"] = [float(x) for x in r["tf2"].values]
    o["ngrams3_indices"] = [int(i) for i in r["tf3"].indices]
    o["ngrams3_values"] = [float(x) for x in r["tf3"].values]
print(json.dumps({"spark": spark.version, "cases": out}, ensure_ascii=False, indent=1))
spark.stop()
