"""A sentence-transformers drop-in: :func:`accelerate` makes a loaded ``SentenceTransformer`` run
its ``StaticEmbedding``, ``Pooling`` and ``Normalize`` modules on stk, and every other module stk
implements exactly: ``WordEmbeddings``, ``BoW``, ``WordWeights``, ``CNN``, ``LSTM``, ``Dense``,
``LayerNorm`` and ``WeightedLayerPooling``.

Each such module object is switched, in place, to an stk-backed subclass of its own class, so
its state (weights, tokenizer, config) is untouched, ``model.save(path)`` writes the usual
module type names (the subclasses carry their parent's name and module) and plain
sentence-transformers loads the folder. A module falls back to the parent's code whenever stk
cannot reproduce it: gradients are needed (training), the tensors are not on the CPU or not
float32/float16/bfloat16, or an input stk does not take (``cls_token_embeddings``) is present.
The modules stk runs from a folder (the text modules, WordWeights, CNN, LSTM, Dense, LayerNorm)
are saved once to a temporary folder with their own ``save`` and loaded by stk (again whenever
a parameter changes); they run on stk only with float32 CPU parameters and inputs, and a module
whose saved folder stk refuses (a Dense activation stk does not implement, say) stays on torch.
Other modules are left as they are.

Pickling or deep-copying an accelerated module gives the plain sentence-transformers module.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import numpy as np
import torch

import stk
from sentence_transformers.base.modules import Dense, Normalize
from sentence_transformers.sentence_transformer.modules import (
    CNN,
    LSTM,
    BoW,
    LayerNorm,
    Pooling,
    StaticEmbedding,
    WeightedLayerPooling,
    WordEmbeddings,
    WordWeights,
)

from stk import _stk

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
        if not _stk_can_read(tokens) or features.get("cls_token_embeddings") is not None:
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


class _StkFolderModule:
    """Mixin of the modules stk runs from a saved folder (``_stk.Module``). The loaded module is
    cached under the identity and version of every parameter, so in-place weight changes reload
    it; a folder stk refuses is remembered as ``None`` (the module then stays on torch)."""

    def _stk_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters())

    def _stk_module(self) -> Any:
        key = self._stk_key()
        cached = self.__dict__.get("_stk_cache")
        if cached is None or cached[0] != key:
            folder = tempfile.mkdtemp(prefix="stk-module-")
            try:
                type(self)._stk_parent.save(self, folder)
                try:
                    module = _stk.Module(type(self)._stk_parent.__name__, folder)
                except (ValueError, TypeError, OSError):
                    module = None  # stk does not implement this configuration: torch runs it
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            cached = (key, module)
            self.__dict__["_stk_cache"] = cached
        return cached[1]

    def _stk_params_ok(self) -> bool:
        params = list(self.parameters())
        return not self.training and all(
            p.device.type == "cpu" and p.dtype == torch.float32 and not (torch.is_grad_enabled() and p.requires_grad)
            for p in params
        )

    def _call_parent(self, features: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        parent_forward = type(self)._stk_parent.forward
        return parent_forward(self, features, **kwargs) if kwargs else parent_forward(self, features)


def _f32_cpu(x: Any) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


def _as_numpy(name: str, x: Any) -> np.ndarray | None:
    """A feature stk reads, as a contiguous numpy array of the dtype ``_stk.Module`` takes;
    ``None`` when it cannot be handed over (then torch runs the module)."""
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu":
        return None
    if name in ("input_ids", "attention_mask", "sentence_lengths"):
        return np.ascontiguousarray(x.detach().to(torch.int64).numpy())
    if not _f32_cpu(x):
        return None
    return np.ascontiguousarray(x.detach().numpy())


class _StkStepModule(_StkFolderModule):
    """A module that transforms features: the features it reads go to stk as numpy arrays,
    the ones stk writes come back as torch tensors."""

    _stk_reads: tuple[str, ...] = ()

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "cls_token_embeddings" in features and features["cls_token_embeddings"] is not None:
            return self._call_parent(features, kwargs)
        inputs = {}
        for name in self._stk_reads:
            if name in features and features[name] is not None:
                array = _as_numpy(name, features[name])
                if array is None:
                    return self._call_parent(features, kwargs)
                inputs[name] = array
        module = self._stk_module() if self._stk_params_ok() else None
        if module is None:
            return self._call_parent(features, kwargs)
        for name, value in module.forward(inputs).items():
            features[name] = torch.from_numpy(value)
        return features


class _StkTextModule(_StkFolderModule):
    """A module that reads text: ``preprocess`` passes the texts through and ``forward``
    tokenizes and embeds them in stk, leaving the features sentence-transformers' own
    ``preprocess`` + ``forward`` leave (padded ``input_ids``, ``attention_mask``,
    ``sentence_lengths``, and ``token_embeddings`` or ``sentence_embedding``)."""

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs: Any) -> Any:
        parent = type(self)._stk_parent
        if not self._stk_params_ok() or kwargs or not all(isinstance(t, str) for t in inputs):
            return parent.preprocess(self, inputs, prompt=prompt, **kwargs)
        if prompt:
            inputs = self._prepend_prompt(inputs, prompt)
        return {"stk_texts": list(inputs)}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        texts = features.pop("stk_texts", None)
        if texts is None:
            return self._call_parent(features, kwargs)
        module = self._stk_module() if self._stk_params_ok() else None
        if module is None:
            features.update(type(self)._stk_parent.preprocess(self, texts))
            return self._call_parent(features, kwargs)
        for name, value in module.encode_texts(texts).items():
            features[name] = torch.from_numpy(value)
        if "token_embeddings" in features:
            features["cls_token_embeddings"] = None
        return features


@_accelerated
class StkWordEmbeddings(WordEmbeddings, _StkTextModule):
    """``WordEmbeddings`` whose tokenizer and lookup run in stk."""

    preprocess = _StkTextModule.preprocess
    forward = _StkTextModule.forward


@_accelerated
class StkBoW(BoW, _StkTextModule):
    """``BoW`` whose tokenizer and bag-of-words vectors run in stk."""

    preprocess = _StkTextModule.preprocess
    forward = _StkTextModule.forward


@_accelerated
class StkWordWeights(WordWeights, _StkStepModule):
    """``WordWeights`` computed by stk."""

    _stk_reads = ("input_ids", "attention_mask", "sentence_lengths", "token_embeddings")
    forward = _StkStepModule.forward


@_accelerated
class StkCNN(CNN, _StkStepModule):
    """``CNN`` computed by stk."""

    _stk_reads = ("attention_mask", "sentence_lengths", "token_embeddings")
    forward = _StkStepModule.forward


@_accelerated
class StkLSTM(LSTM, _StkStepModule):
    """``LSTM`` computed by stk."""

    _stk_reads = ("attention_mask", "sentence_lengths", "token_embeddings")
    forward = _StkStepModule.forward


@_accelerated
class StkDense(Dense, _StkStepModule):
    """``Dense`` computed by stk (on the sentence embedding or the token embeddings, as its
    config says)."""

    _stk_reads = ("attention_mask", "sentence_lengths", "token_embeddings", "sentence_embedding")
    forward = _StkStepModule.forward


@_accelerated
class StkLayerNorm(LayerNorm, _StkStepModule):
    """``LayerNorm`` computed by stk."""

    _stk_reads = ("sentence_embedding",)
    forward = _StkStepModule.forward


@_accelerated
class StkWeightedLayerPooling(WeightedLayerPooling):
    """``WeightedLayerPooling`` computed by ``stk.weighted_layer_pooling``."""

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        layers = features.get("all_layer_embeddings")
        weights = self.layer_weights
        if (
            layers is None
            or self.training
            or not all(_stk_can_read(x) for x in layers)
            or len({(x.shape, x.dtype) for x in layers}) != 1
            or (torch.is_grad_enabled() and weights.requires_grad)
            or weights.device.type != "cpu"
        ):
            return super().forward(features)
        stacked = torch.stack(list(layers))
        features["token_embeddings"] = stk.weighted_layer_pooling(
            stacked, weights.detach(), self.layer_start
        )
        return features


_ACCELERATED = {
    StaticEmbedding: StkStaticEmbedding,
    Pooling: StkPooling,
    Normalize: StkNormalize,
    WordEmbeddings: StkWordEmbeddings,
    BoW: StkBoW,
    WordWeights: StkWordWeights,
    CNN: StkCNN,
    LSTM: StkLSTM,
    Dense: StkDense,
    LayerNorm: StkLayerNorm,
    WeightedLayerPooling: StkWeightedLayerPooling,
}


def accelerate(model: Any) -> Any:
    """Switch ``model``'s modules that stk implements (StaticEmbedding, Pooling, Normalize,
    WordEmbeddings, BoW, WordWeights, CNN, LSTM, Dense, LayerNorm, WeightedLayerPooling) to
    stk, in place, and return ``model``. Modules of other types (and subclasses stk does not
    know) are unchanged; a switched module falls back to its own code where stk cannot
    reproduce it (training, gradients, GPU tensors, other dtypes)."""
    for module in model.children():
        accelerated = _ACCELERATED.get(type(module))
        if accelerated is not None:
            module.__class__ = accelerated
    return model


def accelerated_modules(model: Any) -> list[str]:
    """Names of ``model``'s modules that run on stk (for checks and logs)."""
    return [name for name, m in model.named_children() if hasattr(type(m), "_stk_parent")]
