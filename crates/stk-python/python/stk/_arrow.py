"""Arrow side of ``StaticModel.encode_arrow`` (called from the native method)."""

from __future__ import annotations

from typing import Any

import numpy as np


def encode_arrow(model: Any, array: Any, batch_size: int = 1024) -> Any:
    """Encode a pyarrow string array (or chunked array) into ``FixedSizeList<float32, dim>``.

    The strings are read from the Arrow buffers in place; nulls are refused.
    """
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        chunks = [encode_arrow(model, c, batch_size) for c in array.chunks]
        return pa.chunked_array(chunks, type=pa.list_(pa.float32(), model.dim))
    if not isinstance(array, pa.Array):
        raise TypeError(f"encode_arrow takes a pyarrow string array, got {type(array).__name__}")
    if pa.types.is_string(array.type):
        offset_type = np.int32
    elif pa.types.is_large_string(array.type):
        offset_type = np.int64
    else:
        raise TypeError(f"encode_arrow takes a pyarrow string array, got type {array.type}")
    if array.null_count:
        raise ValueError(f"the array has {array.null_count} null values; fill or drop them first")
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    embeddings = model._encode_utf8(data, offsets.astype(np.int64), batch_size)
    values = pa.array(embeddings.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, model.dim)
