"""Every golden case of kind pooling, normalize, weighted_layer_pooling and static, through the
Python API, within the golden tolerances (tests/golden/README.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import stk
from conftest import TOLERANCE, assert_close, golden_cases, resolve_model

TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MODULE_CASES = golden_cases("pooling", "normalize", "weighted_layer_pooling")
STATIC_CASES = golden_cases("static")


def test_golden_case_counts():
    kinds = [c[2]["kind"] for c in MODULE_CASES]
    assert kinds.count("pooling") >= 200
    assert kinds.count("normalize") >= 3
    assert kinds.count("weighted_layer_pooling") >= 2
    assert len(STATIC_CASES) >= 8


def as_kinds(tensor: torch.Tensor):
    """The input as a torch tensor and, where numpy has the dtype, as a numpy array."""
    kinds = [("torch", tensor)]
    if tensor.dtype != torch.bfloat16:
        kinds.append(("numpy", tensor.numpy()))
    return kinds


def run_module_case(case: dict, tensors: dict, x):
    kind = case["kind"]
    if kind == "normalize":
        return stk.normalize(x)
    if kind == "weighted_layer_pooling":
        return stk.weighted_layer_pooling(x, tensors["layer_weights"], case["layer_start"])
    prompt = None if case["include_prompt"] else case["prompt_length"]
    weights = tensors.get("token_weights_sum")
    if case["layout"] == "varlen":
        return stk.pool(
            x, modes=case["pooling_mode"], prompt_length=prompt,
            cu_seq_lens=tensors["cu_seq_lens_q"], token_weights_sum=weights,
        )
    return stk.pool(
        x, tensors.get("attention_mask"), modes=case["pooling_mode"], prompt_length=prompt,
        token_weights_sum=weights,
    )


INPUT_NAME = {"pooling": "token_embeddings", "normalize": "sentence_embedding",
              "weighted_layer_pooling": "all_layer_embeddings"}


@pytest.mark.parametrize("name,folder,case", MODULE_CASES, ids=[c[0] for c in MODULE_CASES])
def test_module_case(name, folder, case):
    tensors = load_file(folder / "tensors.safetensors")
    x = tensors[INPUT_NAME[case["kind"]]]
    expected = tensors["expected"]
    tol = TOLERANCE[str(x.dtype).removeprefix("torch.")]
    for kind, value in as_kinds(x):
        got = run_module_case(case, tensors, value)
        if kind == "torch":
            assert isinstance(got, torch.Tensor), f"{name}: torch in, {type(got)} out"
            if "expected_dtype" in case:
                assert got.dtype == TORCH_DTYPE[case["expected_dtype"]], f"{name}: {got.dtype}"
            got = got.float().numpy()
        else:
            assert isinstance(got, np.ndarray), f"{name}: numpy in, {type(got)} out"
        assert_close(got, expected.float().numpy(), tol, f"{name} ({kind} input)")


@pytest.mark.parametrize("name,folder,case", STATIC_CASES, ids=[c[0] for c in STATIC_CASES])
def test_static_case(name, folder, case):
    model_dir = resolve_model(case["model"])
    assert model_dir is not None, f"{name}: model {case['model']} is in neither models/ nor ../shared/models"
    model = stk.StaticModel.from_pretrained(
        model_dir, semantics=case["semantics"], normalize=case["normalize"],
        max_length=case.get("max_length", 512),
    )
    texts = json.loads((folder / "texts.json").read_text())
    expected = load_file(folder / "expected.safetensors")["expected"].numpy()
    got = model.encode(texts, batch_size=7)
    assert got.dtype == np.float32 and got.shape == (len(texts), model.dim)
    assert_close(got, expected, case["tolerance"], name)
    one = model.encode(texts[0])
    assert one.shape == (model.dim,)
    assert_close(one, expected[0], case["tolerance"], f"{name} (single str)")
