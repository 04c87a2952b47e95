"""Bad input gets a Python exception whose message names the problem, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stk

TOKENS = np.ones((2, 3, 4), dtype=np.float32)
MASK = np.ones((2, 3), dtype=np.int64)


@pytest.fixture(scope="module")
def model(default_model_dir):
    return stk.StaticModel.from_pretrained(default_model_dir)


def broken_folder(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors at all")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "config.json").write_text('{"normalize": true}')
    return tmp_path


BAD_LOADS = [
    ("missing folder", lambda tmp: stk.StaticModel.from_pretrained(tmp / "nope"), FileNotFoundError, "not found"),
    ("a file, not a folder", lambda tmp: stk.StaticModel.from_pretrained(__file__), ValueError, "not a model folder"),
    ("empty folder", lambda tmp: stk.StaticModel.from_pretrained(tmp), ValueError, "not a model folder"),
    ("broken safetensors", lambda tmp: stk.StaticModel.from_pretrained(broken_folder(tmp)), ValueError, "model.safetensors"),
    ("unknown semantics", lambda tmp: stk.StaticModel.from_pretrained(None, semantics="bert"), ValueError, "unknown semantics"),
    ("zero threads", lambda tmp: stk.StaticModel.from_pretrained(None, threads=0), ValueError, "threads"),
    ("path of wrong type", lambda tmp: stk.StaticModel.from_pretrained(42), TypeError, "path"),
    ("max_length of wrong type", lambda tmp: stk.StaticModel.from_pretrained(None, max_length="long"), TypeError, "max_length"),
    ("negative max_length", lambda tmp: stk.StaticModel.from_pretrained(None, max_length=-1), TypeError, "max_length"),
    ("module of unknown class", lambda tmp: stk._stk.Module("Transformer", tmp), ValueError, "Transformer"),
    ("module folder missing", lambda tmp: stk._stk.Module("CNN", tmp / "nope"), FileNotFoundError, "nope"),
]


@pytest.mark.parametrize("what,call,error,message", BAD_LOADS, ids=[b[0] for b in BAD_LOADS])
def test_bad_loads(tmp_path, what, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)


BAD_ENCODES = [
    ("non-string item", lambda m: m.encode(["ok", 3]), TypeError, r"sentences\[1\] is int, not str"),
    ("None item", lambda m: m.encode(["ok", None]), TypeError, r"sentences\[1\] is NoneType"),
    ("bytes", lambda m: m.encode(b"hello"), TypeError, "bytes"),
    ("not iterable", lambda m: m.encode(3.5), TypeError, "str or a list of str, got float"),
    ("zero batch size", lambda m: m.encode(["a"], batch_size=0), ValueError, "batch_size"),
    ("negative batch size", lambda m: m.encode(["a"], batch_size=-1), OverflowError, "negative"),
    ("arrow of ints", lambda m: m.encode_arrow(__import__("pyarrow").array([1, 2])), TypeError, "string array"),
    ("arrow with nulls", lambda m: m.encode_arrow(__import__("pyarrow").array(["a", None])), ValueError, "null"),
    ("arrow: a list", lambda m: m.encode_arrow(["a"]), TypeError, "pyarrow string array"),
    ("offsets out of range", lambda m: m._encode_utf8(np.zeros(2, np.uint8), np.array([0, 5])), ValueError, "outside"),
    ("invalid utf-8", lambda m: m._encode_utf8(np.array([0xFF], np.uint8), np.array([0, 1])), ValueError, "UTF-8"),
]


@pytest.mark.parametrize("what,call,error,message", BAD_ENCODES, ids=[b[0] for b in BAD_ENCODES])
def test_bad_encodes(model, what, call, error, message):
    with pytest.raises(error, match=message):
        call(model)


BAD_OPS = [
    ("list, not array", lambda: stk.pool([[1.0]]), TypeError, "numpy array or a torch tensor, got list"),
    ("int dtype", lambda: stk.pool(np.ones((2, 3, 4), np.int32)), TypeError, "float32, float16 or bfloat16"),
    ("float64 dtype", lambda: stk.normalize(np.ones((2, 4))), TypeError, "float32, float16 or bfloat16, got float64"),
    ("torch int dtype", lambda: stk.normalize(torch.ones(2, 4, dtype=torch.int64)), TypeError, "torch.int64"),
    ("rank 2 padded", lambda: stk.pool(np.ones((3, 4), np.float32)), ValueError, r"token_embeddings \[B, T, D\]"),
    ("non-contiguous", lambda: stk.pool(TOKENS.transpose(1, 0, 2)), ValueError, "not contiguous"),
    ("mask batch mismatch", lambda: stk.pool(TOKENS, np.ones((3, 3), np.int64)), ValueError, "attention_mask"),
    ("mask values", lambda: stk.pool(TOKENS, MASK * 2), ValueError, "0 or 1"),
    ("unknown mode", lambda: stk.pool(TOKENS, MASK, modes="median"), ValueError, "unknown pooling mode `median`"),
    ("modes of ints", lambda: stk.pool(TOKENS, MASK, modes=[1]), TypeError, "modes"),
    ("mask and cu_seq_lens", lambda: stk.pool(TOKENS, MASK, cu_seq_lens=[0, 3]), ValueError, "not both"),
    ("cu_seq_lens past the end", lambda: stk.pool(np.ones((5, 4), np.float32), cu_seq_lens=[0, 2, 7]), ValueError, "cu_seq_lens ends at 7"),
    ("cu_seq_lens decreasing", lambda: stk.pool(np.ones((5, 4), np.float32), cu_seq_lens=[0, 3, 2, 5]), ValueError, "decreases"),
    ("negative prompt length", lambda: stk.pool(TOKENS, MASK, prompt_length=-1), ValueError, "prompt_length"),
    ("cuda tensor", lambda: stk.normalize(torch.ones(2, 4, device="meta")), ValueError, "meta.*CPU"),
    ("layer weights count", lambda: stk.weighted_layer_pooling(np.ones((4, 1, 2, 3), np.float32), np.ones(2, np.float32), 1), ValueError, "layer_weights"),
    ("layer_start too large", lambda: stk.weighted_layer_pooling(np.ones((4, 1, 2, 3), np.float32), np.ones(1, np.float32), 4), ValueError, "layer_start 4"),
    ("big-endian", lambda: stk.normalize(np.ones((2, 4), ">f4")), TypeError, "byte order"),
]


@pytest.mark.parametrize("what,call,error,message", BAD_OPS, ids=[b[0] for b in BAD_OPS])
def test_bad_ops(what, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_at_least_fifteen_bad_inputs():
    assert len(BAD_LOADS) + len(BAD_ENCODES) + len(BAD_OPS) >= 15


def _golden_module(case, sub, cls):
    from conftest import GOLDEN

    return stk._stk.Module(cls, GOLDEN / case / "model" / sub)


BAD_FORWARDS = [
    ("int token embeddings", ("cnn_max", "1_CNN", "CNN"), {"token_embeddings": np.ones((1, 3, 4), np.int64)}, ValueError, "float32"),
    ("wrong width", ("cnn_max", "1_CNN", "CNN"), {"token_embeddings": np.ones((1, 3, 5), np.float32)}, ValueError, "5"),
    ("ids of rank 1", ("wordemb_weights_mean_norm", "1_WordWeights", "WordWeights"),
     {"input_ids": np.ones(3, np.int64), "token_embeddings": np.ones((1, 3, 4), np.float32)}, ValueError, r"\[B, T\]"),
    ("negative id", ("wordemb_weights_mean_norm", "1_WordWeights", "WordWeights"),
     {"input_ids": -np.ones((1, 3), np.int64), "token_embeddings": np.ones((1, 3, 4), np.float32)}, ValueError, "id -1"),
    ("negative length", ("cnn_max", "1_CNN", "CNN"),
     {"sentence_lengths": -np.ones(1, np.int64), "token_embeddings": np.ones((1, 3, 4), np.float32)}, ValueError, "negative"),
]


@pytest.mark.parametrize("what,module,features,error,message", BAD_FORWARDS, ids=[b[0] for b in BAD_FORWARDS])
def test_bad_module_forwards(what, module, features, error, message):
    with pytest.raises(error, match=message):
        _golden_module(*module).forward(features)
