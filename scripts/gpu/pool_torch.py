#!/usr/bin/env python3
"""sentence-transformers Pooling on the GPU, on the shapes `stk bench pool --device cuda` uses,
timed the same way (CUDA events after warm-up, fraction of the copy bandwidth measured in the
same process). Usage: pool_torch.py --shape 256x512x1024 --dtype bf16 --mode mean [--lengths full]
"""
import argparse

import torch
from common import DTYPES, copy_bytes_per_s, header, line, time_ms

MODE_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="256x512x1024")
    ap.add_argument("--dtype", default="bf16", choices=DTYPES)
    ap.add_argument("--mode", default="mean")
    # random: each sequence a random length in 1..=T, right-padded (as `stk bench pool`).
    ap.add_argument("--lengths", default="random", choices=["full", "random"])
    ap.add_argument("--normalize", action="store_true")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    a = ap.parse_args()

    from sentence_transformers import __version__ as st_version
    from sentence_transformers.models import Normalize, Pooling

    b, t, d = (int(v) for v in a.shape.split("x"))
    modes = a.mode.split(",")
    dtype = DTYPES[a.dtype]
    print(f"{header()}, sentence-transformers {st_version}")
    g = torch.Generator(device="cuda").manual_seed(7)
    x = torch.rand(b, t, d, device="cuda", dtype=torch.float32, generator=g).mul_(2).sub_(1).to(dtype)
    if a.lengths == "full":
        lens = torch.full((b,), t, device="cuda")
    else:
        lens = torch.randint(1, t + 1, (b,), device="cuda", generator=g)
    mask = (torch.arange(t, device="cuda")[None, :] < lens[:, None]).to(torch.int64)
    unknown = [m for m in modes if m not in MODE_FLAGS]
    if unknown:
        raise SystemExit(f"unknown pooling modes {unknown}")
    # Every flag explicitly: Pooling's own default turns mean on.
    pool = Pooling(d, **{flag: m in modes for m, flag in MODE_FLAGS.items()}).cuda()
    norm = Normalize()

    def run():
        f = pool({"token_embeddings": x, "attention_mask": mask})
        if a.normalize:
            f = norm(f)
        return f["sentence_embedding"]

    out = run()
    ms = time_ms(run, a.warmup, a.iters)
    real_rows = int(mask.sum().item())
    nbytes = real_rows * d * x.element_size() + out.numel() * out.element_size()
    copy = copy_bytes_per_s(x.numel() * x.element_size(), a.warmup, a.iters)
    label = f"torch Pooling {'+'.join(modes)} {a.dtype} [{b}, {t}, {d}] lengths={a.lengths}"
    print(line(label + (" +normalize" if a.normalize else ""), ms, nbytes, copy))


if __name__ == "__main__":
    main()
