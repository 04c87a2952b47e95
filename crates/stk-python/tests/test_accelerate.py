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
# Every golden pipeline: stk implements each of their modules.
PIPELINES = [name for name, _, _ in golden_cases("pipeline")]


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
    plain = SentenceTransformer(str(folder / "model"), device="cpu")
    model = accelerate(SentenceTransformer(str(folder / "model"), device="cpu"))
    names = [n for n, _ in model.named_children()]
    assert accelerated_modules(model) == names, f"{name}: not every module switched to stk"
    got = model.encode(texts)
    assert_close(got, expected, 1e-4, name)
    assert_close(got, plain.encode(texts), 1e-4, f"{name} against plain sentence-transformers")
    assert_ran_on_stk(model)


def assert_ran_on_stk(model):
    """Every module stk runs from a folder loaded one (none fell back to torch)."""
    for name, module in model.named_children():
        if "_stk_key" in dir(type(module)):
            cached = module.__dict__.get("_stk_cache")
            assert cached is not None and cached[1] is not None, f"module {name} ({type(module).__name__}) ran on torch"


def word_embedding_model(extra):
    """The golden wordemb_mean model (WordEmbeddings, Pooling) followed by `extra` modules."""
    base = SentenceTransformer(str(GOLDEN / "wordemb_mean" / "model"), device="cpu")
    return SentenceTransformer(modules=[*base.children(), *extra], device="cpu")


def test_dense_and_layer_norm_match_plain_sentence_transformers():
    from sentence_transformers.base.modules import Dense
    from sentence_transformers.sentence_transformer.modules import LayerNorm

    torch.manual_seed(1)
    texts = json.loads((GOLDEN / "wordemb_mean" / "texts.json").read_text())
    dim = SentenceTransformer(str(GOLDEN / "wordemb_mean" / "model"), device="cpu").get_embedding_dimension()
    extra = [Dense(dim, 24, activation_function=torch.nn.Tanh()), LayerNorm(24), Dense(24, 8, bias=False)]
    plain = word_embedding_model(extra)
    with torch.no_grad():
        plain[3].norm.weight.uniform_(0.5, 1.5)
        plain[3].norm.bias.uniform_(-0.1, 0.1)
    expected = plain.encode(texts)
    model = accelerate(copy.deepcopy(plain))
    assert [type(m).__name__ for m in model.children()] == ["WordEmbeddings", "Pooling", "Dense", "LayerNorm", "Dense"]
    assert accelerated_modules(model) == ["0", "1", "2", "3", "4"]
    assert_close(model.encode(texts), expected, 1e-5, "Dense + LayerNorm")
    assert_ran_on_stk(model)


def test_module_stk_refuses_stays_on_torch():
    from sentence_transformers.base.modules import Dense

    torch.manual_seed(2)
    texts = ["a small test", "another one"]
    dim = SentenceTransformer(str(GOLDEN / "wordemb_mean" / "model"), device="cpu").get_embedding_dimension()
    # An activation stk does not implement: the folder is refused, the module runs on torch.
    plain = word_embedding_model([Dense(dim, 6, activation_function=torch.nn.Softplus())])
    expected = plain.encode(texts)
    model = accelerate(copy.deepcopy(plain))
    assert_close(model.encode(texts), expected, 1e-6, "fallback Dense")
    assert model[2].__dict__["_stk_cache"][1] is None


def test_weighted_layer_pooling_module():
    from sentence_transformers.sentence_transformer.modules import WeightedLayerPooling

    torch.manual_seed(3)
    plain = WeightedLayerPooling(16, num_hidden_layers=6, layer_start=2)
    with torch.no_grad():
        plain.layer_weights.uniform_(0.1, 2.0)
    fast = copy.deepcopy(plain)
    fast.__class__ = accelerate.__globals__["StkWeightedLayerPooling"]
    layers = [torch.randn(3, 5, 16) for _ in range(7)]
    with torch.no_grad():
        want = plain({"all_layer_embeddings": layers})["token_embeddings"]
        got = fast({"all_layer_embeddings": layers})["token_embeddings"]
    assert_close(got.numpy(), want.numpy(), 1e-5, "weighted layer pooling")
    assert type(pickle.loads(pickle.dumps(fast))) is WeightedLayerPooling


def test_folder_modules_pickle_and_save_as_plain(tmp_path):
    folder = GOLDEN / "wordemb_weights_mean_norm" / "model"
    texts = json.loads((GOLDEN / "wordemb_weights_mean_norm" / "texts.json").read_text())
    model = accelerate(SentenceTransformer(str(folder), device="cpu"))
    expected = model.encode(texts)
    plain_types = [type(m) for m in SentenceTransformer(str(folder), device="cpu").children()]
    assert [type(pickle.loads(pickle.dumps(m))) for m in model.children()] == plain_types
    model.save(str(tmp_path / "saved"))
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert accelerated_modules(reloaded) == []
    assert_close(reloaded.encode(texts), expected, 1e-5, "saved and reloaded")


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
