"""Encode a text file or a parquet column with stk on Ray Data and write the embeddings as parquet.

    python examples/ray_encode.py --input texts.txt --output embeddings/ [--model DIR]
    python examples/ray_encode.py --input data.parquet --column text --output embeddings/

Each Ray worker holds one ``stk.StaticModel`` (a callable class given to ``map_batches``); the
batches travel as Arrow tables in and out, and the embeddings are a ``FixedSizeList<float32, D>``
column beside the text. Output rows keep the input order.

Locally this starts a Ray instance on this machine (``--num-cpus``). On a real cluster, start the
script on a node of it (or pass ``--address ray://HEAD:10001``) with the model folder reachable at
the same path on every node (a shared filesystem), since each worker loads it from its path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import ray

import stk


class Encoder:
    """One model per Ray actor: loaded once, then called on each Arrow batch."""

    def __init__(self, model_dir: str | None, column: str, threads: int | None):
        self.model = stk.StaticModel.from_pretrained(model_dir, threads=threads)
        self.column = column

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self.column)
        embeddings = self.model.encode_arrow(texts)
        return batch.append_column("embedding", embeddings)


def read_texts(path: str, column: str) -> ray.data.Dataset:
    if path.endswith(".parquet") or Path(path).is_dir():
        return ray.data.read_parquet(path, columns=[column])
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return ray.data.from_arrow(pa.table({column: pa.array(lines, type=pa.string())}))


def encode_dataset(
    dataset: ray.data.Dataset,
    model_dir: str | None,
    column: str = "text",
    actors: int = 2,
    threads_per_actor: int | None = 1,
    batch_size: int = 4096,
) -> ray.data.Dataset:
    """``dataset`` with an ``embedding`` column computed by stk on ``actors`` Ray actors, rows in
    input order (this sets Ray Data's ``preserve_order`` for the current context)."""
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    return dataset.map_batches(
        Encoder,
        fn_constructor_kwargs={"model_dir": model_dir, "column": column, "threads": threads_per_actor},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads_per_actor or 1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help=".txt (one text per line) or .parquet file/folder")
    parser.add_argument("--output", required=True, help="parquet output folder")
    parser.add_argument("--column", default="text", help="text column of a parquet input")
    parser.add_argument("--model", default=None, help="model folder (default: stk's default model)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--threads-per-actor", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance")
    parser.add_argument("--address", default=None, help="an existing Ray cluster (e.g. ray://HEAD:10001)")
    args = parser.parse_args()

    ray.init(address=args.address, num_cpus=None if args.address else args.num_cpus, include_dashboard=False)
    dataset = read_texts(args.input, args.column)
    model_dir = str(Path(args.model).resolve()) if args.model else None
    encoded = encode_dataset(dataset, model_dir, args.column, args.actors, args.threads_per_actor)
    encoded.write_parquet(args.output)
    print(f"wrote {encoded.count()} embeddings to {args.output}")


if __name__ == "__main__":
    main()
