"""stk's Python package against the Python references, in one process on the bench corpus.

    python benches/python/bench_encode.py [--threads N] [--repeat R] [--out FILE]

1. Encoding the bench corpus (../shared/bench/sentences.txt, 4 times = 51,920 sentences) with
   potion-base-8M: ``stk.StaticModel.encode`` vs model2vec 0.10 ``StaticModel.encode`` vs
   sentence-transformers 6.2 ``SentenceTransformer`` (StaticEmbedding + Normalize), batch 1024.
2. Token embeddings of the bench corpus (once, 12,980 sentences): ``StaticModel.encode_as_sequence``
   of stk vs model2vec (``use_multiprocessing=False``: model2vec's threads would not share the
   thread count), values checked equal first.
3. Mean pooling of ``[64, 256, 768]`` float32 token embeddings (ragged mask): ``stk.pool`` vs
   sentence-transformers ``Pooling`` on torch.

Every system gets the same thread count (stk ``threads=N``, ``torch.set_num_threads(N)``,
``RAYON_NUM_THREADS=N`` for the tokenizers crate under model2vec and sentence-transformers).
Runs alternate between the systems and the best of ``--repeat`` runs is reported, so the ratios
compare like with like on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def best_of(runs: dict[str, callable], repeat: int) -> dict[str, float]:
    """Best wall time of each callable, running them in alternation ``repeat`` times."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default=str(SHARED / "models" / "potion-base-8M"))
    parser.add_argument("--out", default=None, help="also write the results (JSON) here")
    args = parser.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import torch
    from model2vec import StaticModel as M2V
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    import stk

    torch.set_num_threads(args.threads)
    sentences = (SHARED / "bench" / "sentences.txt").read_text(encoding="utf-8").splitlines() * 4

    ours = stk.StaticModel.from_pretrained(args.model, threads=args.threads)
    m2v = M2V.from_pretrained(args.model)
    st = SentenceTransformer(args.model, device="cpu")
    encode = best_of(
        {
            "stk": lambda: ours.encode(sentences, batch_size=1024),
            "model2vec": lambda: m2v.encode(sentences, batch_size=1024),
            "sentence-transformers": lambda: st.encode(sentences, batch_size=1024),
        },
        args.repeat,
    )

    corpus = sentences[: len(sentences) // 4]
    for got, want in zip(ours.encode_as_sequence(corpus), m2v.encode_as_sequence(corpus, use_multiprocessing=False)):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    sequence = best_of(
        {
            "stk": lambda: ours.encode_as_sequence(corpus),
            "model2vec": lambda: m2v.encode_as_sequence(corpus, use_multiprocessing=False),
        },
        args.repeat,
    )

    rng = np.random.default_rng(0)
    b, t, d = 64, 256, 768
    tokens = torch.from_numpy(rng.standard_normal((b, t, d), dtype=np.float32))
    lengths = torch.from_numpy(rng.integers(1, t + 1, size=b))
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(torch.int64)
    pooling = Pooling(d, pooling_mode="mean")

    def st_pool():
        with torch.inference_mode():
            return pooling({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]

    np.testing.assert_allclose(stk.pool(tokens, mask).numpy(), st_pool().numpy(), rtol=1e-5, atol=1e-5)
    pool = best_of({"stk.pool": lambda: stk.pool(tokens, mask), "Pooling": st_pool}, args.repeat * 4)

    n = len(sentences)
    gb = tokens.numel() * 4 / 1e9
    result = {
        "threads": args.threads,
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "encode_sentences": n,
        "encode_sentences_per_s": {k: n / v for k, v in encode.items()},
        "encode_ratio_vs_model2vec": encode["model2vec"] / encode["stk"],
        "encode_ratio_vs_sentence_transformers": encode["sentence-transformers"] / encode["stk"],
        "sequence_sentences": len(corpus),
        "sequence_sentences_per_s": {k: len(corpus) / v for k, v in sequence.items()},
        "sequence_ratio_vs_model2vec": sequence["model2vec"] / sequence["stk"],
        "pool_mean_shape": [b, t, d],
        "pool_gb_per_s": {k: gb / v for k, v in pool.items()},
        "pool_ratio_vs_sentence_transformers": pool["Pooling"] / pool["stk.pool"],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
