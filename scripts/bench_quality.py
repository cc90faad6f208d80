"""The quality classifier of scikit-learn and Spark ML on grist's ingest output, for
`just bench-quality` (scripts/bench-quality.sh runs grist itself and prints the comparison).

Reads the same Parquet document shards grist trains on, labels them by the same positive and
negative sources, holds out 10% of documents (by md5 of the id; grist draws its own 10%), and
measures for each tool: training seconds (features + fit) and held-out ROC AUC, and scoring
throughput over every document (features + probability) in MB of text per second on one core.
Prints one JSON object.

usage: bench_quality.py SHARD_DIR POSITIVES NEGATIVES  (sources comma-separated)
"""

import glob
import hashlib
import json
import os
import sys
import time

import pyarrow.parquet as pq


def load(shard_dir, positives, negatives):
    ids, texts, labels = [], [], []
    for path in sorted(glob.glob(os.path.join(shard_dir, "part-*.parquet"))):
        t = pq.read_table(path, columns=["id", "source", "text"]).to_pydict()
        for i, s, x in zip(t["id"], t["source"], t["text"]):
            if s in positives or s in negatives:
                ids.append(i)
                texts.append(x)
                labels.append(1 if s in positives else 0)
    held = [int(hashlib.md5(i.encode()).hexdigest()[:8], 16) / 2**32 < 0.1 for i in ids]
    return ids, texts, labels, held


def bench_sklearn(texts, labels, held):
    import numpy as np
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    vec = HashingVectorizer(
        n_features=2**18, alternate_sign=False, norm=None, lowercase=True, tokenizer=str.split, token_pattern=None
    )
    tr = [i for i, h in enumerate(held) if not h]
    ho = [i for i, h in enumerate(held) if h]
    t0, c0 = time.perf_counter(), time.process_time()
    x = vec.transform([texts[i] for i in tr])
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    clf.fit(x, np.array([labels[i] for i in tr]))
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    p = clf.predict_proba(vec.transform([texts[i] for i in ho]))[:, 1]
    auc = roc_auc_score([labels[i] for i in ho], p)
    t0, c0 = time.perf_counter(), time.process_time()
    clf.predict_proba(vec.transform(texts))
    score_s, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "train_seconds": train_s,
        "train_cpu_seconds": train_cpu,
        "holdout_auc": auc,
        "score_seconds": score_s,
        "score_cpu_seconds": score_cpu,
        "iterations": int(clf.n_iter_[0]),
    }


def jvm_cpu(spark):
    """CPU seconds (user + system, all JVM threads: tasks, JIT, GC) of Spark's JVM so far."""
    pid = spark.sparkContext._gateway.proc.pid
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_spark(shard_dir, positives, negatives, n_train):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import HashingTF, Tokenizer
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(os.path.join(shard_dir, "part-*.parquet")).select("id", "source", "text")
    df = df.where(F.col("source").isin(list(positives | negatives)))
    df = df.withColumn("label", F.col("source").isin(list(positives)).cast("double"))
    df = df.withColumn("held", (F.conv(F.substring(F.md5("id"), 1, 8), 16, 10).cast("double") / 2**32) < 0.1)
    df = df.cache()
    df.count()
    pos = df.where("label = 1 and not held").count()
    neg = df.where("label = 0 and not held").count()
    df = df.withColumn("w", F.when(F.col("label") == 1, neg / max(pos, 1)).otherwise(1.0))
    train, hold = df.where("not held"), df.where("held")
    lr = LogisticRegression(maxIter=100, regParam=1.0 / max(n_train, 1), weightCol="w")
    pipe = Pipeline(stages=[Tokenizer(inputCol="text", outputCol="words"), HashingTF(inputCol="words", outputCol="features"), lr])
    t0, c0 = time.perf_counter(), jvm_cpu(spark)
    model = pipe.fit(train)
    train_s, train_cpu = time.perf_counter() - t0, jvm_cpu(spark) - c0
    auc = BinaryClassificationEvaluator(metricName="areaUnderROC").evaluate(model.transform(hold))
    t0, c0 = time.perf_counter(), jvm_cpu(spark)
    model.transform(df).select("probability").write.format("noop").mode("overwrite").save()
    score_s, score_cpu = time.perf_counter() - t0, jvm_cpu(spark) - c0
    spark.stop()
    return {
        "train_seconds": train_s,
        "train_cpu_seconds": train_cpu,
        "holdout_auc": auc,
        "score_seconds": score_s,
        "score_cpu_seconds": score_cpu,
    }


def main():
    shard_dir, positives, negatives = sys.argv[1], set(sys.argv[2].split(",")), set(sys.argv[3].split(","))
    ids, texts, labels, held = load(shard_dir, positives, negatives)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    out = {"docs": len(ids), "text_mb": mb, "holdout_docs": sum(held)}
    out["sklearn"] = bench_sklearn(texts, labels, held)
    out["spark"] = bench_spark(shard_dir, positives, negatives, len(ids) - sum(held))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
