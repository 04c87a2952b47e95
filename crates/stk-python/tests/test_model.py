"""StaticModel: model2vec parity on the bench corpus, threads, Arrow, pickling, fork."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading

import numpy as np
import pytest

import stk
from conftest import SHARED, assert_close, bench_sentences

POTION_F32 = SHARED / "models" / "potion-base-8M"


@pytest.fixture(scope="module")
def model(default_model_dir):
    return stk.StaticModel.from_pretrained(default_model_dir)


def test_properties(model, default_model_dir):
    assert model.dim == 256
    assert model.normalize is True
    assert model.semantics == "model2vec"
    assert os.path.samefile(model.path, default_model_dir)
    assert "dim=256" in repr(model)


@pytest.mark.parametrize("folder", [POTION_F32, SHARED / "models" / "potion-base-8M-f16"], ids=["f32", "f16"])
def test_encode_matches_model2vec_on_bench_corpus(folder):
    from model2vec import StaticModel as M2V

    assert folder.is_dir(), f"model missing: {folder}"
    sentences = bench_sentences()
    ours = stk.StaticModel.from_pretrained(folder).encode(sentences)
    theirs = M2V.from_pretrained(str(folder)).encode(sentences)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    # f16 tables: model2vec sums in the table dtype; golden tolerance 2e-3 (README).
    tol = 1e-4 if folder == POTION_F32 else 2e-3
    assert_close(ours, theirs, tol, f"stk vs model2vec on {folder.name}")


def test_sentence_transformers_semantics_matches_static_embedding(default_model_dir):
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    sentences = bench_sentences(2000)
    module = StaticEmbedding.load(str(default_model_dir))
    ours = stk.StaticModel.from_pretrained(
        default_model_dir, semantics="sentence-transformers", normalize=False
    ).encode(sentences)
    import torch

    with torch.no_grad():
        features = module.tokenize(sentences)
        theirs = module(features)["sentence_embedding"].float().numpy()
    assert_close(ours, theirs, 2e-3, "stk vs StaticEmbedding")


def test_single_string_and_empty_list(model):
    one = model.encode("Hello world")
    many = model.encode(["Hello world", "Rust is fast"])
    assert one.shape == (256,)
    np.testing.assert_array_equal(one, many[0])
    empty = model.encode([])
    assert empty.shape == (0, 256) and empty.dtype == np.float32


def test_batch_size_and_threads_do_not_change_values(default_model_dir):
    sentences = bench_sentences(3000)
    reference = stk.StaticModel.from_pretrained(default_model_dir, threads=1).encode(sentences)
    for threads, batch in [(2, 1), (None, 7), (3, 5000)]:
        m = stk.StaticModel.from_pretrained(default_model_dir, threads=threads)
        assert m.threads == threads
        np.testing.assert_array_equal(m.encode(sentences, batch_size=batch), reference)


def test_output_is_owned_by_numpy_without_copy(model):
    out = model.encode(["a", "b"])
    # The Rust buffer is handed over: numpy does not own a copy, the array's base holds it.
    assert out.base is not None and not out.flags.owndata
    assert out.flags.c_contiguous and out.flags.writeable


def test_encode_releases_the_gil(model):
    """Another Python thread keeps running while encode works."""
    sentences = bench_sentences() * 4
    ticks = 0
    stop = threading.Event()

    def count():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        before = ticks
        model.encode(sentences)
        during = ticks - before
    finally:
        stop.set()
        t.join()
    assert during > 1000, f"the other thread ran only {during} iterations during encode"


def test_encode_arrow(model):
    import pyarrow as pa

    sentences = bench_sentences(500)
    expected = model.encode(sentences)
    for array in (pa.array(sentences), pa.array(sentences, type=pa.large_string())):
        got = model.encode_arrow(array)
        assert got.type == pa.list_(pa.float32(), 256)
        np.testing.assert_array_equal(np.asarray(got.values).reshape(-1, 256), expected)
    sliced = model.encode_arrow(pa.array(sentences).slice(100, 50))
    np.testing.assert_array_equal(np.asarray(sliced.flatten()).reshape(-1, 256), expected[100:150])
    chunked = model.encode_arrow(pa.chunked_array([sentences[:200], sentences[200:]]))
    np.testing.assert_array_equal(
        np.asarray(chunked.combine_chunks().flatten()).reshape(-1, 256), expected
    )


def test_pickle_reloads_from_the_folder(model):
    clone = pickle.loads(pickle.dumps(model))
    assert clone.path == model.path and clone.dim == model.dim
    sentences = bench_sentences(100)
    np.testing.assert_array_equal(clone.encode(sentences), model.encode(sentences))
    st = stk.StaticModel.from_pretrained(model.path, semantics="sentence-transformers", normalize=False, threads=1)
    st_clone = pickle.loads(pickle.dumps(st))
    assert (st_clone.semantics, st_clone.normalize, st_clone.threads) == ("sentence-transformers", False, 1)
    np.testing.assert_array_equal(st_clone.encode(sentences), st.encode(sentences))


def test_no_path_loads_the_embedded_model_and_pickles(model):
    embedded = stk.StaticModel.from_pretrained()
    assert str(embedded.path) == "<embedded potion-base-8M-f16>" and embedded.dim == 256
    sentences = bench_sentences(100)
    np.testing.assert_array_equal(embedded.encode(sentences), model.encode(sentences))
    clone = pickle.loads(pickle.dumps(embedded))
    assert clone.path == embedded.path
    np.testing.assert_array_equal(clone.encode(sentences), embedded.encode(sentences))


def _encode_in_child(queue, model, sentences):
    queue.put(model.encode(sentences))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_process_encodes(model, method):
    """The parent has used its worker threads; a forked child (which inherits no threads) and a
    spawned one (which unpickles the model) still encode."""
    sentences = bench_sentences(2000)
    expected = model.encode(sentences)  # parent's pool is running
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_encode_in_child, args=(queue, model, sentences))
    child.start()
    try:
        got = queue.get(timeout=120)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, expected)


def test_os_fork_child_encodes(model):
    sentences = bench_sentences(500)
    expected = model.encode(sentences)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: encode, report, exit without running the parent's atexit/pytest code
        signal.alarm(60)  # a child that hangs (a dead worker pool) dies instead of hanging the suite
        try:
            ok = np.array_equal(model.encode(sentences), expected)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("config_max_length", [3, None, "absent"])
def test_max_length_defaults_to_the_config_as_model2vec(default_model_dir, tmp_path, config_max_length):
    """Not passing max_length takes the folder config's (else 512), as model2vec 0.10's
    from_pretrained; passing it overrides the config; pickling keeps the choice."""
    import json
    import shutil

    from model2vec import StaticModel as M2V

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("max_length", None)
    if config_max_length != "absent":
        config["max_length"] = config_max_length
    (folder / "config.json").write_text(json.dumps(config))
    long_text = " ".join(bench_sentences(40))
    texts = ["dog cat house tree river", long_text]
    reference = M2V.from_pretrained(str(folder))
    ours = stk.StaticModel.from_pretrained(str(folder))
    assert_close(ours.encode(texts), reference.encode(texts), 2e-3, f"config max_length {config_max_length}")
    assert_close(pickle.loads(pickle.dumps(ours)).encode(texts), ours.encode(texts), 0, "pickled")
    explicit = stk.StaticModel.from_pretrained(str(folder), max_length=2)
    assert_close(explicit.encode(texts), M2V.from_pretrained(str(folder), max_length=2).encode(texts), 2e-3, "explicit 2")
    if config_max_length == 3:
        assert not np.allclose(ours.encode(texts)[0], stk.StaticModel.from_pretrained(str(folder), max_length=None).encode(texts)[0])
