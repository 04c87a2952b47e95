"""stk: sentence-embedding kernels in Rust, for Python.

* :class:`StaticModel` encodes text with a model2vec or sentence-transformers static model
  (model2vec's ``StaticModel`` surface; the GIL is released and every core is used).
* :func:`pool`, :func:`normalize`, :func:`weighted_layer_pooling` run the sentence-transformers
  modules on numpy arrays or CPU torch tensors (float32, float16, bfloat16), reading contiguous
  inputs in place and returning the input's kind.
* :mod:`stk.sentence_transformers` swaps the modules of a loaded ``SentenceTransformer`` for
  stk-backed ones (:func:`stk.sentence_transformers.accelerate`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _stk
from ._stk import StaticModel, __version__

__all__ = ["StaticModel", "pool", "normalize", "weighted_layer_pooling", "__version__"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "device")


def _floats(x: Any, what: str) -> tuple[Any, bool, str]:
    """(numpy view of ``x`` without a copy, whether it holds bfloat16 bits, 'numpy' or 'torch')."""
    if isinstance(x, np.ndarray):
        return x, False, "numpy"
    if _is_torch(x):
        import torch

        if x.device.type != "cpu":
            raise ValueError(
                f"{what} is on {x.device}: stk's Python functions run on the CPU; "
                f"move it with .cpu() (the device-pointer path is not available yet)"
            )
        x = x.detach()
        if x.dtype == torch.bfloat16:
            return x.view(torch.int16).numpy(), True, "torch"
        if x.dtype not in (torch.float32, torch.float16):
            raise TypeError(f"{what}: expected dtype float32, float16 or bfloat16, got {x.dtype}")
        return x.numpy(), False, "torch"
    if hasattr(x, "__dlpack__"):
        return np.from_dlpack(x), False, "numpy"
    raise TypeError(f"{what} must be a numpy array or a torch tensor, got {type(x).__name__}")


def _ints(x: Any, what: str, dtype: Any) -> np.ndarray | None:
    """A small side input (mask, offsets, weights) as a contiguous numpy array of ``dtype``."""
    if x is None:
        return None
    if _is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"{what} is on {x.device}: stk's Python functions run on the CPU")
        x = x.detach().numpy()
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=dtype)


def _back(result: tuple[np.ndarray, bool], kind: str) -> Any:
    array, bf16 = result
    if kind == "torch":
        import torch

        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if bf16 else tensor
    return array


def pool(
    token_embeddings: Any,
    attention_mask: Any = None,
    *,
    modes: str | Sequence[str] = "mean",
    prompt_length: int | None = None,
    cu_seq_lens: Any = None,
    token_weights_sum: Any = None,
) -> Any:
    """sentence-transformers ``Pooling`` of token embeddings into sentence embeddings.

    Layouts (as ``stk pool``): padded ``[B, T, D]`` with an optional ``[B, T]`` 0/1
    ``attention_mask``, or varlen ``[N, D]`` / ``[1, N, D]`` with ``cu_seq_lens`` ``[B + 1]``.
    ``modes``: one of cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken, or a list of
    them (concatenated in that order, giving ``[B, len(modes) * D]``). ``prompt_length`` leaves
    out that many leading tokens; ``token_weights_sum`` ``[B]`` replaces the mean divisors.
    Returns the input's kind (numpy or torch) and dtype.
    """
    tokens, bf16, kind = _floats(token_embeddings, "token_embeddings")
    if isinstance(modes, str):
        names = modes
    else:
        modes = list(modes)
        if not all(isinstance(m, str) for m in modes):
            raise TypeError("modes must be a str or a list of str")
        names = ",".join(modes)
    if prompt_length is not None and (not isinstance(prompt_length, int) or prompt_length < 0):
        raise ValueError(f"prompt_length must be a non-negative int, got {prompt_length!r}")
    result = _stk.pool(
        tokens,
        bf16,
        _ints(attention_mask, "attention_mask", np.int64),
        names,
        prompt_length,
        _ints(cu_seq_lens, "cu_seq_lens", np.int64),
        _ints(token_weights_sum, "token_weights_sum", np.float32),
    )
    return _back(result, kind)


def normalize(x: Any) -> Any:
    """L2-normalize over the last dimension (sentence-transformers ``Normalize``)."""
    array, bf16, kind = _floats(x, "x")
    return _back(_stk.normalize(array, bf16), kind)


def weighted_layer_pooling(all_layer_embeddings: Any, layer_weights: Any, layer_start: int) -> Any:
    """sentence-transformers ``WeightedLayerPooling``: ``[L+1, B, T, D]`` → ``[B, T, D]``,
    the average of layers ``layer_start..L`` weighted by ``layer_weights`` (``L + 1 - layer_start``)."""
    layers, layers_bf16, kind = _floats(all_layer_embeddings, "all_layer_embeddings")
    weights, weights_bf16, _ = _floats(layer_weights, "layer_weights")
    if not isinstance(layer_start, int) or layer_start < 0:
        raise ValueError(f"layer_start must be a non-negative int, got {layer_start!r}")
    return _back(
        _stk.weighted_layer_pooling(layers, layers_bf16, weights, weights_bf16, layer_start), kind
    )
