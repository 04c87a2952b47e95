#!/usr/bin/env python3
"""torch.nn.EmbeddingBag (mean) on the GPU, on the shapes `stk bench embedding-bag --device cuda`
uses, timed the same way (CUDA events after warm-up, fraction of the copy bandwidth measured in
the same process). Usage: embedding_bag_torch.py --rows 1000000 --dim 256 --dtype f16 --bags 16384 --tokens 32
"""
import argparse

import torch
from common import DTYPES, copy_bytes_per_s, header, line, time_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--dtype", default="f16", choices=list(DTYPES) + ["i8"])
    ap.add_argument("--bags", type=int, default=16384)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    a = ap.parse_args()
    print(header())
    if a.dtype == "i8":
        print("torch.nn.EmbeddingBag has no int8 tables: nothing to compare for i8")
        return
    dtype = DTYPES[a.dtype]
    g = torch.Generator(device="cuda").manual_seed(11)
    table = torch.rand(a.rows, a.dim, device="cuda", generator=g).mul_(2).sub_(1).to(dtype)
    bag = torch.nn.EmbeddingBag.from_pretrained(table, mode="mean", freeze=True)
    n = a.bags * a.tokens
    ids = torch.randint(0, a.rows, (n,), device="cuda", generator=g)
    offsets = torch.arange(0, n, a.tokens, device="cuda")

    def run():
        return bag(ids, offsets)

    out = run()
    ms = time_ms(run, a.warmup, a.iters)
    # Same accounting as stk: rows gathered, 4-byte ids, 8-byte offsets, the output.
    nbytes = n * a.dim * table.element_size() + n * 4 + (a.bags + 1) * 8 + out.numel() * out.element_size()
    copy = copy_bytes_per_s(table.numel() * table.element_size(), a.warmup, a.iters)
    mib = table.numel() * table.element_size() / (1 << 20)
    label = f"torch EmbeddingBag mean {a.dtype} table [{a.rows}, {a.dim}] ({mib:.0f} MiB), {a.bags} bags x {a.tokens} ids"
    print(line(label, ms, nbytes, copy))


if __name__ == "__main__":
    main()
