#!/usr/bin/env python3
"""Build tests/fixtures/encode_options/ with sentence-transformers itself.

For each committed potion model (`models/potion-base-8M-f16`, `models/potion-base-8M-int8-vq2048-d128`,
loaded as `SentenceTransformer(folder)`: StaticEmbedding then Normalize) and each option set
(truncate_dim, normalize_embeddings), this records what `SentenceTransformer.encode` returns for
every precision, over the first TEXTS golden texts of tests/golden/static_potion-base-8M-f16:

* `<key>`: f32 `[N, k]`, `encode(texts, truncate_dim=k, normalize_embeddings=n)` (precision
  float32): the input of the quantization, compared with a tolerance;
* `<key>_<precision>` for int8, uint8, binary, ubinary: `encode(..., precision=p)`, the ranges
  of int8/uint8 taken from the whole call as sentence-transformers does;
* `<key>_cal`: f32 embeddings of the next TEXTS golden texts (the calibration set), and
  `<key>_<int8|uint8>_cal`: `quantize_embeddings(<key>, p, calibration_embeddings=<key>_cal)`.

int8 and binary are stored as I8; uint8 and ubinary as their bits in I8 tensors too (stk's
safetensors reader has no U8; the tests read them back `as u8`). `cases.json` lists every case.

The f16 model is run with `.float()`: its f16 table upcast to f32 exactly and the mean taken in
f32, which is what stk computes (without it sentence-transformers computes in f16, whose
rounding moves int8 buckets by more than one).

Usage: /work/venv/bin/python tools/make_encode_option_goldens.py [OUT_DIR]
(sentence-transformers 6.2, numpy 2.x, torch; run on x86-64: numpy's float-to-int8 casts of
NaN are platform-specific). The output is deterministic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import sentence_transformers
import torch
from safetensors.numpy import save_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.util.quantization import quantize_embeddings

ROOT = Path(__file__).resolve().parent.parent
TEXTS = 32
# (model folder, [(truncate_dim, normalize_embeddings)]): two truncations per model (one not
# a multiple of 8 for the f16 model: binary rows end in a padded byte), the second also with
# normalize_embeddings.
MODELS = [
    ("potion-base-8M-f16", [(128, False), (100, False), (100, True)]),
    ("potion-base-8M-int8-vq2048-d128", [(64, False), (32, False), (32, True)]),
]
PRECISIONS = ["int8", "uint8", "binary", "ubinary"]


def key(k: int, normalize: bool) -> str:
    return f"t{k}" + ("n" if normalize else "")


def as_i8(a: np.ndarray) -> np.ndarray:
    assert a.dtype in (np.int8, np.uint8), a.dtype
    return np.ascontiguousarray(a).view(np.int8)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests/fixtures/encode_options"
    out.mkdir(parents=True, exist_ok=True)
    golden = json.loads((ROOT / "tests/golden/static_potion-base-8M-f16/texts.json").read_text())
    texts, calibration_texts = golden[:TEXTS], golden[TEXTS : 2 * TEXTS]
    (out / "texts.json").write_text(
        json.dumps({"texts": texts, "calibration_texts": calibration_texts}, indent=1, ensure_ascii=False)
        + "\n"
    )
    cases = []
    for name, options in MODELS:
        model = SentenceTransformer(str(ROOT / "models" / name), device="cpu").float()
        tensors: dict[str, np.ndarray] = {}
        for k, normalize in options:
            base = key(k, normalize)

            def encode(texts: list[str], precision: str = "float32") -> np.ndarray:
                return model.encode(
                    texts, truncate_dim=k, normalize_embeddings=normalize, precision=precision
                )

            tensors[base] = encode(texts).astype(np.float32)
            tensors[base + "_cal"] = encode(calibration_texts).astype(np.float32)
            case = {"model": name, "truncate_dim": k, "normalize_embeddings": normalize}
            cases.append({**case, "precision": "float32", "calibration": False, "tensor": base})
            for precision in PRECISIONS:
                tensors[f"{base}_{precision}"] = as_i8(encode(texts, precision))
                cases.append(
                    {**case, "precision": precision, "calibration": False, "tensor": f"{base}_{precision}"}
                )
            for precision in ("int8", "uint8"):
                calibrated = quantize_embeddings(
                    tensors[base], precision, calibration_embeddings=tensors[base + "_cal"]
                )
                tensors[f"{base}_{precision}_cal"] = as_i8(calibrated)
                cases.append(
                    {**case, "precision": precision, "calibration": True, "tensor": f"{base}_{precision}_cal"}
                )
        save_file(tensors, str(out / f"{name}.safetensors"))
    (out / "cases.json").write_text(
        json.dumps(
            {
                "generator": "tools/make_encode_option_goldens.py",
                "sentence_transformers": sentence_transformers.__version__,
                "numpy": np.__version__,
                "torch": torch.__version__,
                "texts": TEXTS,
                "cases": cases,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
