#!/usr/bin/env python3
"""Build the model2vec fixtures of tests/fixtures/model2vec/ with model2vec itself.

Each fixture is a small model folder in one of the three layouts model2vec 0.10 loads, saved by
`StaticModel.save_pretrained` (float64 tables, as model2vec writes them whenever the vectors
are float64) and then rearranged into the sentence-transformers layouts where asked, plus
`expected.json`: what `StaticModel.from_pretrained(folder, **options).encode(texts)` returns for
each set of options. The fixtures vary what the stk tests must cover: the layout, `normalize`
true/false, the config's `max_length` (4, absent, null, 512), tokenizer.json with and without
its own truncation, a WordPiece tokenizer, a vocabulary-quantized table (F64 `weights`, int64
`mapping`) and an f16 table (model2vec answers in float16 for it).

Usage (model2vec 0.10.0 needs no torch):

    python3 -m venv target/venv && target/venv/bin/pip install model2vec==0.10.0
    target/venv/bin/python tools/make_model2vec_fixtures.py [OUT_DIR]

OUT_DIR defaults to tests/fixtures/model2vec. The output is deterministic (fixed seeds).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import model2vec
import numpy as np
from model2vec import StaticModel
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel, WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer, Whitespace

ABSENT = "absent"  # a config without the `max_length` key

WORDS = ["[PAD]", "the", "cat", "dog", "sat", "on", "mat", "and", "a", "[UNK]", "hello", "world"]
PIECES = WORDS + ["##s", "##ing", "run", "jump", "##ed", "h", "##e", "##llo"]

TEXTS = [
    "",
    "dog",
    "the cat sat on the mat",
    "dog dog dog cat cat the the mat sat on",
    "the zebra and the dog",
    # 600 unknown tokens, then a known one: the token cut counts the unknown ones.
    "? " * 600 + "dog",
    "Héllo wörld 日本 dog",
    "dogs jumped running hello",
    " ".join(["cat", "the", "dog", "mat"] * 40),
]


def word_level(truncation: dict | None) -> Tokenizer:
    tok = Tokenizer(WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return with_truncation(tok, truncation)


def word_piece(truncation: dict | None) -> Tokenizer:
    vocab = {w: i for i, w in enumerate(PIECES)}
    tok = Tokenizer(WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = BertNormalizer(lowercase=True)
    tok.pre_tokenizer = BertPreTokenizer()
    return with_truncation(tok, truncation)


def with_truncation(tok: Tokenizer, truncation: dict | None) -> Tokenizer:
    if truncation is not None:
        tok.enable_truncation(**truncation)
    return tok


# name: (layout, tokenizer, tokenizer.json truncation, config normalize, config max_length, kind)
FIXTURES = {
    "a_norm-false_ml4": ("a", word_level, None, False, 4, "plain"),
    "a_norm-true_ml512_tok-left8": ("a", word_level, {"max_length": 8, "direction": "left"}, True, 512, "plain"),
    "a_norm-false_ml-absent_tok-right3": ("a", word_level, {"max_length": 3}, False, ABSENT, "plain"),
    "a_norm-true_ml-null_tok-left8": ("a", word_level, {"max_length": 8, "direction": "left"}, True, None, "plain"),
    "b_norm-true_ml4": ("b", word_level, None, True, 4, "plain"),
    "b_norm-false_ml-absent_tok-left8": ("b", word_level, {"max_length": 8, "direction": "left"}, False, ABSENT, "plain"),
    "c_norm-true_ml-null": ("c", word_level, None, True, None, "plain"),
    "c_norm-false_ml4_tok-right3": ("c", word_level, {"max_length": 3}, False, 4, "plain"),
    "a_wordpiece_norm-false_ml4_tok-right5": ("a", word_piece, {"max_length": 5}, False, 4, "plain"),
    "a_vocab-quantized_norm-true_ml-absent": ("a", word_level, None, True, ABSENT, "quantized"),
    "a_f16_norm-false_ml4": ("a", word_level, None, False, 4, "f16"),
}

# The options each fixture is encoded with (from_pretrained keyword arguments); a fixture also
# runs with `normalize` flipped.
OPTIONS = [{}, {"max_length": None}, {"max_length": 2}, {"max_length": 0}]


def build_model(seed: int, tok: Tokenizer, normalize, max_length, kind) -> StaticModel:
    rng = np.random.default_rng(seed)
    n = tok.get_vocab_size()
    kwargs = {}
    if kind == "quantized":
        vectors = rng.normal(size=(5, 3))
        kwargs["token_mapping"] = rng.integers(0, 5, size=n).astype(np.int64)
        kwargs["weights"] = rng.uniform(0.5, 2.0, size=n)
    else:
        vectors = rng.normal(size=(n, 4))
        if kind == "f16":
            vectors = vectors.astype(np.float16)
    limit = 512 if max_length == ABSENT else max_length
    return StaticModel(vectors, tok, normalize=normalize, max_length=limit, **kwargs)


def save(model: StaticModel, tok: Tokenizer, folder: Path, layout: str, max_length) -> None:
    """Save with model2vec, then rearrange into `layout`."""
    model.save_pretrained(folder)
    # model2vec saves its copy of the tokenizer, whose truncation it has set to max_length;
    # the fixture keeps the tokenizer's own truncation setting (or none), as a source model's
    # tokenizer.json has it.
    tok.save(str(folder / "tokenizer.json"), pretty=False)
    (folder / "README.md").unlink()  # model2vec's model card template: not needed
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if max_length == ABSENT:
        del config["max_length"]
    if layout == "a":
        config_path.write_text(json.dumps(config, indent=4) + "\n")
        return
    # sentence-transformers layouts: the table is `embedding.weight`, the settings are in
    # config_sentence_transformers.json, and there is no config.json (which would win).
    config_path.unlink()
    (folder / "modules.json").unlink()
    tensors = load_file(folder / "model.safetensors")
    tensors["embedding.weight"] = tensors.pop("embeddings")
    table_dir = folder / "0_StaticEmbedding" if layout == "c" else folder
    table_dir.mkdir(exist_ok=True)
    save_file(tensors, folder / "model.safetensors")
    if layout == "c":
        shutil.move(folder / "model.safetensors", table_dir / "model.safetensors")
        shutil.move(folder / "tokenizer.json", table_dir / "tokenizer.json")
    st_config = {"__version__": {"model2vec": model2vec.__version__}, "prompts": {}, "default_prompt_name": None}
    st_config.update(config)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=4) + "\n")


def expected_runs(folder: Path, normalize: bool) -> list[dict]:
    runs = []
    for options in OPTIONS + [{"normalize": not normalize}]:
        model = StaticModel.from_pretrained(folder, **options)
        out = model.encode(TEXTS)
        runs.append({"options": options, "dtype": str(out.dtype), "expected": out.astype(np.float64).tolist()})
    return runs


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/model2vec")
    if model2vec.__version__ != "0.10.0":
        sys.exit(f"model2vec 0.10.0 is needed, found {model2vec.__version__}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "texts.json").write_text(json.dumps(TEXTS, ensure_ascii=False, indent=1) + "\n")
    for seed, (name, (layout, make_tokenizer, truncation, normalize, max_length, kind)) in enumerate(FIXTURES.items()):
        case = out / name
        if case.exists():
            shutil.rmtree(case)
        folder = case / "model"
        tok = make_tokenizer(truncation)
        model = build_model(seed, tok, normalize, max_length, kind)
        save(model, tok, folder, layout, max_length)
        expected = {
            "generator": "tools/make_model2vec_fixtures.py",
            "model2vec": model2vec.__version__,
            "layout": layout,
            "config_normalize": normalize,
            "config_max_length": max_length,
            "runs": expected_runs(folder, normalize),
        }
        (case / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        print(f"{name}: {sum(f.stat().st_size for f in case.rglob('*') if f.is_file())} bytes")


if __name__ == "__main__":
    main()
