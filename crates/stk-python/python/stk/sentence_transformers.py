"""A sentence-transformers drop-in: :func:`accelerate` makes a loaded ``SentenceTransformer`` run
its ``StaticEmbedding``, ``Pooling`` and ``Normalize`` modules on stk.

Each such module object is switched, in place, to an stk-backed subclass of its own class, so
its state (weights, tokenizer, config) is untouched, ``model.save(path)`` writes the usual
module type names (the subclasses carry their parent's name and module) and plain
sentence-transformers loads the folder. A module falls back to the parent's code whenever stk
cannot reproduce it: gradients are needed (training), the tensors are not on the CPU or not
float32/float16/bfloat16, or an input stk does not take (``cls_token_embeddings``) is present.
Other modules are left as they are.

Pickling or deep-copying an accelerated module gives the plain sentence-transformers module.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import torch

import stk
from sentence_transformers.base.modules import Normalize
from sentence_transformers.sentence_transformer.modules import Pooling, StaticEmbedding

__all__ = ["accelerate"]

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _plain_module(parent: type, state: dict[str, Any]) -> Any:
    module = parent.__new__(parent)
    module.__setstate__(state)
    return module


def _reduce_as_parent(self: Any, protocol: Any) -> Any:
    """Pickle (and deep-copy) an accelerated module as its plain sentence-transformers class."""
    # The cached stk model reads a removed temporary folder: it is rebuilt on demand instead.
    state = {k: v for k, v in self.__dict__.items() if k != "_stk_cache"}
    return (_plain_module, (type(self)._stk_parent, state))


def _accelerated(cls: type) -> type:
    """Make ``cls`` (a direct subclass) pose as its parent: the same name and module, so that
    ``SentenceTransformer.save`` writes the parent's type, and pickling gives the parent."""
    parent = cls.__bases__[0]
    cls._stk_parent = parent
    cls.__name__ = parent.__name__
    cls.__qualname__ = parent.__qualname__
    cls.__module__ = parent.__module__
    cls.__reduce_ex__ = _reduce_as_parent
    return cls


def _stk_can_read(x: Any) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and x.device.type == "cpu"
        and x.dtype in _FLOATS
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


@_accelerated
class StkStaticEmbedding(StaticEmbedding):
    """``StaticEmbedding`` whose inference tokenizes and embeds in stk (texts in, vectors out)."""

    def _stk_model(self) -> stk.StaticModel:
        weight = self.embedding.weight
        key = (weight.data_ptr(), weight._version, weight.dtype)
        cached = self.__dict__.get("_stk_cache")
        if cached is None or cached[0] != key:
            folder = tempfile.mkdtemp(prefix="stk-static-")
            try:
                StaticEmbedding.save(self, folder)
                # The table is memory-mapped: it stays readable after the folder is removed.
                model = stk.StaticModel.from_pretrained(
                    folder, semantics="sentence-transformers", normalize=False
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            cached = (key, model)
            self.__dict__["_stk_cache"] = cached
        return cached[1]

    def _needs_torch(self) -> bool:
        weight = self.embedding.weight
        return self.training or weight.device.type != "cpu" or (torch.is_grad_enabled() and weight.requires_grad)

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        if self._needs_torch() or not all(isinstance(t, str) for t in inputs):
            return super().preprocess(inputs, prompt=prompt, **kwargs)
        if prompt:
            inputs = self._prepend_prompt(inputs, prompt)
        return {"stk_texts": list(inputs)}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        texts = features.get("stk_texts")
        if texts is None:
            return super().forward(features, **kwargs)
        if self._needs_torch():
            features.update(super().preprocess(texts))
            return super().forward(features, **kwargs)
        embeddings = torch.from_numpy(self._stk_model().encode(texts))
        features["sentence_embedding"] = embeddings.to(self.embedding.weight.dtype)
        return features


@_accelerated
class StkPooling(Pooling):
    """``Pooling`` computed by ``stk.pool``."""

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        tokens = features["token_embeddings"]
        if not _stk_can_read(tokens) or "cls_token_embeddings" in features:
            return super().forward(features, **kwargs)
        prompt_length = None
        if not self.include_prompt and "prompt_length" in features:
            pl = features["prompt_length"]
            prompt_length = int(pl[0].item()) if isinstance(pl, torch.Tensor) else int(pl)
        modes = [self.pooling_mode] if isinstance(self.pooling_mode, str) else list(self.pooling_mode)
        weights = features.get("token_weights_sum")
        if "cu_seq_lens_q" in features:
            pooled = stk.pool(
                tokens.contiguous(), modes=modes, prompt_length=prompt_length or None,
                cu_seq_lens=features["cu_seq_lens_q"], token_weights_sum=weights,
            )
        else:
            mask = features.get("attention_mask")
            if mask is not None and mask.size(-1) != tokens.size(1):
                mask = None
            pooled = stk.pool(
                tokens.contiguous(), mask, modes=modes, prompt_length=prompt_length or None,
                token_weights_sum=weights,
            )
        features["sentence_embedding"] = pooled
        return features


@_accelerated
class StkNormalize(Normalize):
    """``Normalize`` computed by ``stk.normalize``."""

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        x = features.get(self.module_input_name)
        if x is None or not _stk_can_read(x) or x.ndim == 0:
            return super().forward(features)
        features[self.module_output_name] = stk.normalize(x.contiguous())
        return features


_ACCELERATED = {StaticEmbedding: StkStaticEmbedding, Pooling: StkPooling, Normalize: StkNormalize}


def accelerate(model: Any) -> Any:
    """Switch ``model``'s StaticEmbedding, Pooling and Normalize modules to stk, in place, and
    return ``model``. Modules of other types (and subclasses stk does not know) are unchanged."""
    for module in model.children():
        accelerated = _ACCELERATED.get(type(module))
        if accelerated is not None:
            module.__class__ = accelerated
    return model


def accelerated_modules(model: Any) -> list[str]:
    """Names of ``model``'s modules that run on stk (for checks and logs)."""
    return [name for name, m in model.named_children() if hasattr(type(m), "_stk_parent")]
