"""Token-level calls against model2vec 0.10 itself: ``encode_as_sequence`` and ``tokenize`` on
the committed models and on the folders model2vec wrote (tests/fixtures/model2vec)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import stk
from conftest import REPO, bench_sentences

FIXTURES = REPO / "tests" / "fixtures" / "model2vec"
COMMITTED = ["potion-base-8M-f16", "potion-base-8M-int8-vq2048-d128", "stk-unigram-8k-64d-int8"]
EDGE_TEXTS = [
    "",
    "   ",
    "[UNK] [CLS] hello [SEP] [PAD]",
    "naïve café, 東京タワー and emoji 🙂🙂",
    "x" * 5000,
    " ".join(["supercalifragilistic"] * 300),
]


def all_texts() -> list[str]:
    """Bench sentences, the edge cases above and the texts the model2vec fixtures were made with."""
    return bench_sentences(300) + EDGE_TEXTS + json.loads((FIXTURES / "texts.json").read_text())


def folders() -> list:
    found = [REPO / "models" / name for name in COMMITTED]
    found += sorted(p / "model" for p in FIXTURES.iterdir() if p.is_dir())
    assert all(f.is_dir() for f in found), found
    return found


def assert_same_sequences(ours, theirs, what: str) -> None:
    assert isinstance(ours, list) and len(ours) == len(theirs), what
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == np.float32, f"{what}, text {i}: dtype {a.dtype}"
        assert a.shape == b.shape, f"{what}, text {i}: shape {a.shape} != {b.shape}"
        # Table values widened to f32 and f32 weights: the same numbers (f64 tables: rounded).
        np.testing.assert_allclose(a, b.astype(np.float32), rtol=1e-6, atol=0, err_msg=f"{what}, text {i}")


@pytest.mark.parametrize("folder", folders(), ids=lambda p: p.parent.name if p.name == "model" else p.name)
def test_encode_as_sequence_matches_model2vec(folder):
    from model2vec import StaticModel as M2V

    texts = all_texts()
    ours = stk.StaticModel.from_pretrained(folder)
    theirs = M2V.from_pretrained(str(folder))
    for max_length in [None, 1, 7, 64]:
        got = ours.encode_as_sequence(texts, max_length=max_length, batch_size=97)
        want = theirs.encode_as_sequence(texts, max_length=max_length, use_multiprocessing=False)
        assert_same_sequences(got, want, f"{folder.name}, max_length {max_length}")
    one = ours.encode_as_sequence(texts[0])
    np.testing.assert_array_equal(one, ours.encode_as_sequence(texts[:1])[0])
    assert ours.encode_as_sequence([]) == []


@pytest.mark.parametrize("folder", folders(), ids=lambda p: p.parent.name if p.name == "model" else p.name)
@pytest.mark.parametrize("max_length", ["config", None, 3])
def test_tokenize_matches_model2vec(folder, max_length):
    from model2vec import StaticModel as M2V

    texts = all_texts()
    if max_length == "config":
        ours, theirs = stk.StaticModel.from_pretrained(folder), M2V.from_pretrained(str(folder))
    else:
        ours = stk.StaticModel.from_pretrained(folder, max_length=max_length)
        theirs = M2V.from_pretrained(str(folder), max_length=max_length)
    assert ours.tokenize(texts) == theirs.tokenize(texts), f"{folder.name}, max_length {max_length}"
    assert ours.tokenize(texts[3]) == theirs.tokenize([texts[3]])[0]


def test_sequence_rows_average_to_encode(default_model_dir):
    """Without normalization, the mean of a text's rows is its embedding (same ids, same sums)."""
    model = stk.StaticModel.from_pretrained(default_model_dir, normalize=False, max_length=16)
    texts = bench_sentences(50)
    rows = model.encode_as_sequence(texts, max_length=16)
    means = np.stack([r.mean(axis=0) if len(r) else np.zeros(model.dim, np.float32) for r in rows])
    np.testing.assert_allclose(means, model.encode(texts), rtol=1e-5, atol=1e-7)


def test_token_level_calls_refuse_other_semantics_and_bad_arguments(default_model_dir):
    st = stk.StaticModel.from_pretrained(default_model_dir, semantics="sentence-transformers")
    for call in (lambda: st.encode_as_sequence(["a"]), lambda: st.tokenize(["a"])):
        with pytest.raises(ValueError, match="model2vec semantics"):
            call()
    model = stk.StaticModel.from_pretrained(default_model_dir)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode_as_sequence(["a"], batch_size=0)
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        model.encode_as_sequence(["a", 3])
    with pytest.raises(TypeError, match="bytes"):
        model.tokenize(b"abc")
    with pytest.raises((TypeError, OverflowError)):
        model.encode_as_sequence(["a"], max_length=-1)
