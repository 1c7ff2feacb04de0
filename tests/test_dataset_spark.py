"""A run's captures exported as one Parquet dataset partitioned by capture (hive style), queried by DuckDB as
the docs print the query, and the same query in pyspark's local mode giving the same rows."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CAPTURES = [ROOT / "cassettes/captures/dynamo-1.6.1-mocker/capture.yaml",
            ROOT / "cassettes/captures/vllm-0.32-cpu/capture.yaml"]


def docs_sql(tag: str) -> str:
    page = (ROOT / "docs/how-to/analyse-a-training-run.md").read_text()
    return re.search(rf"```sql\n\s*-- {tag}:.*?\n(.*?)```", page, re.S).group(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    steps = []
    for k, src in enumerate(CAPTURES):
        dst = work / f"step{1200 + k}.yaml"
        shutil.copy(src, dst)
        steps.append(dst)
    # the second step as a rotated run's folder of segments: one capture all the same
    seg = work / "step1202"
    seg.mkdir()
    shutil.copy(CAPTURES[1], seg / "000000.yaml")
    out = work / "dataset"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "cassette", "export", *map(str, steps), str(seg),
                        "--dataset", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_the_dataset_is_partitioned_by_capture_hive_style(dataset):
    parts = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*.parquet"))
    assert parts == ["capture=step1200/part-0.parquet", "capture=step1201/part-0.parquet",
                     "capture=step1202/part-0.parquet"]


def duckdb_rows(dataset) -> list[tuple]:
    duckdb = pytest.importorskip("duckdb")
    sql = docs_sql("duckdb, a run").replace("'rl/dataset/**/*.parquet'", f"'{dataset}/**/*.parquet'")
    return [tuple(r) for r in duckdb.connect().execute(sql).fetchall()]


def spark_sql() -> str:
    """The docs' query as Spark runs it: the same text, the dataset named `run`."""
    return re.sub(r"FROM read_parquet\([^)]*\)", "FROM run", docs_sql("duckdb, a run"))


def test_duckdb_reads_the_run_as_one_table_with_its_capture_column(dataset):
    rows = duckdb_rows(dataset)
    by_capture = {c for c, *_ in rows}
    assert by_capture == {"step1200", "step1201", "step1202"}
    one = [r[1:] for r in rows if r[0] == "step1201"]
    assert one == [r[1:] for r in rows if r[0] == "step1202"]  # a file and its segment folder: the same rows
    assert all(turns >= 1 and 0 <= stitched <= turns for _, _, turns, stitched, _ in rows)


def test_spark_local_mode_gives_the_rows_duckdb_gives(dataset):
    if shutil.which("java") is None:
        pytest.skip("no Java runtime (apt-get install default-jre-headless): pyspark cannot start")
    pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'tito-harness[spark]')")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("tito-harness-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    try:
        spark.read.parquet(str(dataset)).createOrReplaceTempView("run")
        got = [(r[0], r[1], r[2], r[3], list(r[4])) for r in spark.sql(spark_sql()).collect()]
    finally:
        spark.stop()
    assert got == [(c, conv, t, s, list(k)) for c, conv, t, s, k in duckdb_rows(dataset)]
    assert pyspark.__version__
