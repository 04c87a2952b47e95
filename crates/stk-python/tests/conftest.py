"""Shared helpers of the stk Python test suite: where the repository, the golden cases and the
models are, and the golden comparison rule (tests/golden/README.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(os.environ.get("STK_REPO_ROOT", Path(__file__).resolve().parents[3]))
GOLDEN = REPO / "tests" / "golden"
SHARED = REPO.parent / "shared"
BENCH_CORPUS = SHARED / "bench" / "sentences.txt"
DEFAULT_MODEL = REPO / "models" / "potion-base-8M-f16"

TOLERANCE = {"f32": 1e-5, "float32": 1e-5, "f16": 2e-3, "float16": 2e-3, "bf16": 1.6e-2, "bfloat16": 1.6e-2}


def golden_cases(*kinds: str) -> list[tuple[str, Path, dict]]:
    """Every case folder of ``tests/golden`` whose kind is one of ``kinds``, sorted by name."""
    assert GOLDEN.is_dir(), f"golden cases missing: {GOLDEN}"
    cases = []
    for case_file in sorted(GOLDEN.glob("*/case.json")):
        case = json.loads(case_file.read_text())
        if case["kind"] in kinds:
            cases.append((case_file.parent.name, case_file.parent, case))
    return cases


def resolve_model(rel: str) -> Path | None:
    """A static case's model: the repository's ``models/`` first, then the shared folder."""
    for candidate in (REPO / rel, SHARED / rel):
        if candidate.is_dir():
            return candidate
    return None


def assert_close(got, expected, tol: float, what: str) -> None:
    """|got - expected| <= tol * max(1, |expected|) elementwise; inf and NaN must match exactly."""
    got = np.asarray(got, dtype=np.float32)
    expected = np.asarray(expected, dtype=np.float32)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != expected {expected.shape}"
    special = ~np.isfinite(expected) | ~np.isfinite(got)
    same_special = (got == expected) | (np.isnan(got) & np.isnan(expected))
    bad_special = special & ~same_special
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(np.where(special, 0, got - expected))
    bound = tol * np.maximum(1.0, np.abs(np.where(special, 0, expected)))
    bad = bad_special | (diff > bound)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise AssertionError(
            f"{what}: {int(bad.sum())} elements differ; first at {tuple(i)}: "
            f"got {got[tuple(i)]}, expected {expected[tuple(i)]} (tol {tol})"
        )


def bench_sentences(limit: int | None = None) -> list[str]:
    """The benchmark corpus (../shared/bench/sentences.txt), one sentence per line."""
    assert BENCH_CORPUS.is_file(), f"bench corpus missing: {BENCH_CORPUS}"
    lines = BENCH_CORPUS.read_text(encoding="utf-8").splitlines()
    return lines[:limit] if limit else lines


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    assert DEFAULT_MODEL.is_dir(), f"default model missing: {DEFAULT_MODEL}"
    return DEFAULT_MODEL
