"""examples/ray_encode.py on a local Ray instance (2 CPUs) over 10,000 sentences: every output row
equals the single-process StaticModel.encode of its text, in input order."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

import stk
from conftest import REPO, bench_sentences


def test_ray_example_matches_single_process(tmp_path, default_model_dir):
    sentences = bench_sentences(10_000)
    assert len(sentences) == 10_000
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "embeddings"
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ray_encode.py"), "--input", str(texts),
         "--output", str(out), "--model", str(default_model_dir), "--num-cpus", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, f"ray_encode.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    table = pq.read_table(out)
    assert table.num_rows == 10_000
    assert table.column("text").to_pylist() == sentences
    got = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(10_000, -1)
    expected = stk.StaticModel.from_pretrained(default_model_dir).encode(sentences)
    np.testing.assert_array_equal(got, expected)
