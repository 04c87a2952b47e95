"""Type stubs of the native module ``stk._stk`` (see ``stk/__init__.py`` for the public API)."""

from os import PathLike
from typing import Any, Iterable, Literal, overload

import numpy as np
import numpy.typing as npt

__version__: str

class StaticModel:
    """A static embedding model (model2vec or sentence-transformers StaticEmbedding) loaded by stk."""

    @staticmethod
    def from_pretrained(
        path: str | PathLike[str] | None = None,
        *,
        normalize: bool | None = None,
        semantics: str | None = None,
        max_length: int | None = ...,
        threads: int | None = None,
    ) -> StaticModel:
        """Load a model2vec folder or a sentence-transformers folder.

        ``path=None`` loads the default model (potion-base-8M, f16 table). ``normalize``
        overrides the folder's setting; ``semantics`` is ``"model2vec"`` (model2vec's
        ``StaticModel.encode``) or ``"sentence-transformers"`` (``SentenceTransformer.encode``),
        by default the folder's own; ``max_length`` is model2vec's token limit: not passed, the
        folder config's ``max_length`` (else 512), as model2vec's ``from_pretrained``; ``None``: none;
        ``threads`` caps the worker threads (``None``: one per core).
        Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` for a broken one.
        """

    def encode(
        self,
        sentences: str | Iterable[str],
        batch_size: int = 1024,
        show_progress_bar: bool = False,
        *,
        truncate_dim: int | None = None,
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
    ) -> npt.NDArray[np.float32] | npt.NDArray[np.int8] | npt.NDArray[np.uint8]:
        """Embeddings ``[N, width]`` (``[width]`` for a single ``str``), computed without the GIL.

        ``truncate_dim`` keeps the first dimensions and ``precision`` quantizes as
        ``SentenceTransformer.encode`` does (int8/uint8 ranges from the embeddings of this call;
        binary/ubinary pack ``ceil(k/8)`` bytes a row): float32, int8 or uint8 arrays.
        """

    @overload
    def encode_as_sequence(
        self,
        sentences: str,
        *,
        max_length: int | None = None,
        batch_size: int = 1024,
        show_progress_bar: bool = False,
        use_multiprocessing: bool = True,
        multiprocessing_threshold: int = 10_000,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    def encode_as_sequence(
        self,
        sentences: Iterable[str],
        *,
        max_length: int | None = None,
        batch_size: int = 1024,
        show_progress_bar: bool = False,
        use_multiprocessing: bool = True,
        multiprocessing_threshold: int = 10_000,
    ) -> list[npt.NDArray[np.float32]]:
        """model2vec's ``encode_as_sequence``: each sentence's token embeddings ``[tokens, width]``.

        float32 always (model2vec answers in the table's dtype); ``max_length`` is this call's
        token limit and character cut (``None``: none, whatever the model's ``max_length``).
        The multiprocessing arguments are accepted and ignored: stk uses its thread pool.
        Only for model2vec semantics (``ValueError`` otherwise).
        """

    @overload
    def tokenize(self, sentences: str) -> list[int]: ...
    @overload
    def tokenize(self, sentences: Iterable[str]) -> list[list[int]]:
        """model2vec's ``tokenize``: token ids truncated to the model's ``max_length``, the
        unknown token dropped. Only for model2vec semantics (``ValueError`` otherwise)."""

    def encode_arrow(self, array: Any, batch_size: int = 1024) -> Any:
        """A pyarrow string array as a ``FixedSizeList<float32, dim>`` array (nulls are refused)."""

    def _encode_utf8(
        self, data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], batch_size: int = 1024
    ) -> npt.NDArray[np.float32]: ...
    @property
    def dim(self) -> int:
        """Width of each embedding."""

    @property
    def normalize(self) -> bool:
        """Whether embeddings are L2-normalized."""

    @property
    def semantics(self) -> str:
        """``"model2vec"`` or ``"sentence-transformers"``."""

    @property
    def path(self) -> str:
        """The folder the model was loaded from."""

    @property
    def threads(self) -> int | None:
        """Worker threads of ``encode`` (``None``: one per core)."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles as its folder and options; unpickling loads the folder again."""

class Module:
    """One sentence-transformers module folder run by stk (``accelerate`` uses it). Features are
    numpy arrays under sentence-transformers' names: ``input_ids``/``attention_mask`` int64
    ``[B, T]``, ``sentence_lengths`` int64 ``[B]``, ``token_embeddings`` float32 ``[B, T, D]``,
    ``token_weights_sum`` float32 ``[B]``, ``sentence_embedding`` float32 ``[B, D]``."""

    def __init__(self, class_name: str, folder: str | PathLike[str]) -> None: ...
    @property
    def reads_text(self) -> bool: ...
    def encode_texts(self, texts: list[str]) -> dict[str, np.ndarray]: ...
    def forward(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

def _load_pickled(
    path: str | None,
    normalize: bool | None,
    semantics: str | None,
    max_length: int | str | None,
    threads: int | None,
) -> StaticModel: ...
def pool(
    token_embeddings: np.ndarray,
    bf16: bool,
    attention_mask: npt.NDArray[np.int64] | None,
    modes: str,
    prompt_length: int | None,
    cu_seq_lens: npt.NDArray[np.int64] | None,
    token_weights_sum: npt.NDArray[np.float32] | None,
) -> tuple[np.ndarray, bool]: ...
def normalize(x: np.ndarray, bf16: bool) -> tuple[np.ndarray, bool]: ...
def weighted_layer_pooling(
    all_layer_embeddings: np.ndarray,
    layers_bf16: bool,
    layer_weights: np.ndarray,
    weights_bf16: bool,
    layer_start: int,
) -> tuple[np.ndarray, bool]: ...
