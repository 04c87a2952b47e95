"""stk.sentence_transformers.accelerate against plain sentence-transformers 6.2."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

from conftest import GOLDEN, SHARED, assert_close, bench_sentences, golden_cases
from stk.sentence_transformers import accelerate, accelerated_modules

POTION_F32 = SHARED / "models" / "potion-base-8M"
# Pipelines whose Pooling / Normalize stk takes over (the modules before them stay torch).
PIPELINES = [name for name, _, _ in golden_cases("pipeline")
             if {"Pooling", "Normalize"} & {m["type"].split(".")[-1] for m in
                                            json.loads((GOLDEN / name / "model" / "modules.json").read_text())}]


@pytest.fixture(scope="module")
def potion():
    assert POTION_F32.is_dir(), f"model missing: {POTION_F32}"
    return str(POTION_F32)


def test_static_model_matches_plain_sentence_transformers_on_bench_corpus(potion, tmp_path):
    sentences = bench_sentences()
    plain = SentenceTransformer(potion, device="cpu")
    expected = plain.encode(sentences, batch_size=1024)
    model = accelerate(SentenceTransformer(potion, device="cpu"))
    assert accelerated_modules(model) == ["0", "1"]
    got = model.encode(sentences, batch_size=1024)
    assert got.dtype == np.float32
    assert_close(got, expected, 1e-4, "accelerated vs plain sentence-transformers")

    # The saved folder has the plain type names and loads in plain sentence-transformers.
    model.save(str(tmp_path / "saved"))
    types = [m["type"] for m in json.loads((tmp_path / "saved" / "modules.json").read_text())]
    assert types == [
        "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding",
        "sentence_transformers.base.modules.normalize.Normalize",
    ]
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert accelerated_modules(reloaded) == []
    assert_close(reloaded.encode(sentences[:500]), expected[:500], 1e-5, "saved and reloaded")


def test_prompts_and_modified_weights(potion):
    model = accelerate(SentenceTransformer(potion, device="cpu"))
    plain = SentenceTransformer(potion, device="cpu")
    texts = bench_sentences(50)
    assert_close(model.encode(texts, prompt="query: "), plain.encode(texts, prompt="query: "), 1e-4, "prompt")
    # Weights changed in place after the first encode: stk picks up the new table.
    with torch.no_grad():
        model[0].embedding.weight.mul_(2.0)
        plain[0].embedding.weight.mul_(2.0)
    assert_close(model.encode(texts, normalize_embeddings=False), plain.encode(texts, normalize_embeddings=False), 1e-4, "new weights")


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_golden_case(name):
    folder = GOLDEN / name
    texts = json.loads((folder / "texts.json").read_text())
    expected = load_file(folder / "expected.safetensors")["expected"].numpy()
    model = accelerate(SentenceTransformer(str(folder / "model"), device="cpu"))
    assert accelerated_modules(model), f"{name}: nothing accelerated"
    assert_close(model.encode(texts), expected, 1e-4, name)


def test_gradients_fall_back_to_torch(potion):
    model = accelerate(SentenceTransformer(potion, device="cpu"))
    model.train()
    features = model.preprocess(["Hello world", "Rust is fast"])
    assert "input_ids" in features  # training tokenizes the torch way
    out = model(features)["sentence_embedding"]
    assert out.requires_grad and out.grad_fn is not None
    out.sum().backward()
    assert model[0].embedding.weight.grad is not None


def test_pooling_normalize_modules_directly():
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(0)
    tokens = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    for mode in Pooling.POOLING_MODES:
        plain = Pooling(8, pooling_mode=mode)
        fast = copy.deepcopy(plain)
        fast.__class__ = accelerate.__globals__["StkPooling"]
        want = plain({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]
        got = fast({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]
        assert_close(got.numpy(), want.numpy(), 1e-5, mode)
    norm = Normalize()
    fast = accelerate.__globals__["StkNormalize"]()
    x = torch.randn(4, 8)
    assert_close(fast({"sentence_embedding": x})["sentence_embedding"].numpy(),
                 norm({"sentence_embedding": x})["sentence_embedding"].numpy(), 1e-6, "normalize")
    # Pickled, an accelerated module is the plain sentence-transformers class.
    assert type(pickle.loads(pickle.dumps(fast))) is Normalize
