"""StaticModel.encode(truncate_dim=, precision=): the sentence-transformers 6.2 cases of
tests/fixtures/encode_options (made by tools/make_encode_option_goldens.py), and bad options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import stk
from conftest import REPO, assert_close

FIXTURES = REPO / "tests" / "fixtures" / "encode_options"
DTYPES = {"float32": np.float32, "int8": np.int8, "binary": np.int8, "uint8": np.uint8, "ubinary": np.uint8}


def cases() -> list[dict]:
    doc = json.loads((FIXTURES / "cases.json").read_text())
    # StaticModel.encode has truncate_dim and precision; ranges always come from the call.
    return [c for c in doc["cases"] if not c["calibration"] and not c["normalize_embeddings"]]


@pytest.mark.parametrize("case", cases(), ids=lambda c: f"{c['model']}-{c['tensor']}")
def test_matches_sentence_transformers(case):
    texts = json.loads((FIXTURES / "texts.json").read_text())["texts"]
    model = stk.StaticModel.from_pretrained(REPO / "models" / case["model"], semantics="sentence-transformers")
    got = model.encode(texts, batch_size=7, truncate_dim=case["truncate_dim"], precision=case["precision"])
    # Integer outputs are stored as their bits in I8 tensors.
    want = load_file(str(FIXTURES / f"{case['model']}.safetensors"))[case["tensor"]].view(DTYPES[case["precision"]])
    assert got.dtype == want.dtype and got.shape == want.shape
    if case["precision"] == "float32":
        assert_close(got, want, 1e-5, case["tensor"])
    else:
        np.testing.assert_array_equal(got, want)


def test_one_text_and_bad_options(default_model_dir):
    model = stk.StaticModel.from_pretrained(default_model_dir)
    one = model.encode("Hello world", truncate_dim=20, precision="ubinary")
    assert one.dtype == np.uint8 and one.shape == (3,)
    assert model.encode(["a", "b"], truncate_dim=64).shape == (2, 64)
    for kwargs, message in [
        ({"truncate_dim": 0}, "truncate_dim 0 is out of range"),
        ({"truncate_dim": 257}, "expected 1..=256"),
        ({"precision": "fp8"}, "unknown precision"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.encode(["a", "b"], **kwargs)
    # As sentence-transformers: no int8 ranges from a single embedding.
    with pytest.raises(ValueError, match="single embedding"):
        model.encode("Hello world", precision="int8")
