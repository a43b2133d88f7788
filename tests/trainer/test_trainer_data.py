"""Data sets in memory and the chunked batches cut from them (in-process, no Lightning)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from nasop_trainer import batches, data, errors


def _fake_mnist(n_train: int = 50, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _assert_same(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_digits_uses_a_fixed_last_fifth_for_validation() -> None:
    ds = data.load("digits", Path("unused"))
    assert (len(ds.train), len(ds.val), ds.input_dim, ds.num_classes) == (1438, 359, 64, 10)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert abs(float(ds.train.x.mean())) < 1e-4 and abs(float(ds.train.x.std()) - 1) < 1e-3
    again = data.load("digits", Path("unused"))
    assert torch.equal(ds.val.x, again.val.x)


def test_subset_keeps_the_first_samples_and_the_full_normalisation() -> None:
    full = data.load("digits", Path("unused"))
    small = data.load("digits", Path("unused"), subset=100)
    assert len(small.train) == 100 and len(small.val) == 359
    assert torch.equal(small.train.x, full.train.x[:100])
    assert len(data.load("digits", Path("unused"), subset=10**6).train) == 1438


def test_mnist_from_npz_file_or_its_folder(tmp_path: Path) -> None:
    arrays = _fake_mnist()
    np.savez(tmp_path / "mnist.npz", **arrays)
    _assert_same(data.mnist_arrays(tmp_path / "mnist.npz"), arrays)
    _assert_same(data.mnist_arrays(tmp_path), arrays)
    ds = data.load("mnist", tmp_path)
    assert (len(ds.train), len(ds.val), ds.input_dim) == (50, 20, 784)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_from_torchvision_raw_layout(tmp_path: Path, suffix: str) -> None:
    arrays = _fake_mnist()
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, stem in data._IDX_FILES.items():
        _write_idx(raw / (stem + suffix), arrays[key])
    _assert_same(data.mnist_arrays(tmp_path), arrays)


def test_missing_mnist_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(errors.DataMissingError) as caught:
        data.load("mnist", tmp_path / "nowhere")
    message = str(caught.value)
    assert "nowhere" in message and "--download" in message and "--dataset digits" in message
    assert "\n" not in message and caught.value.exit_code == 3


def test_npz_without_the_mnist_arrays_is_reported(tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(errors.DataMissingError, match="lacks y_train, x_test, y_test"):
        data.mnist_arrays(tmp_path)


def test_bad_idx_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(errors.DataMissingError, match="not an unsigned-byte IDX file"):
        data.read_idx(tmp_path / "bad")


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None,
    reason="torchvision is installed: --download would really download",
)
def test_download_without_torchvision_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(errors.DataMissingError, match="--download needs torchvision"):
        data.mnist_arrays(tmp_path, download=True)


def _split(n: int) -> data.Split:
    return data.Split(x=torch.arange(n, dtype=torch.float32).unsqueeze(1), y=torch.arange(n))


def _epoch(loader: batches.Chunks, batch_size: int) -> list[torch.Tensor]:
    return [y for chunk in loader for _, y in batches.mini_batches(chunk, batch_size)]


def test_chunks_hold_exactly_the_mini_batches_of_a_plain_loop() -> None:
    plain = batches.Chunks(_split(103), 10, shuffle=True, seed=7)
    chunked = batches.Chunks(_split(103), 10, shuffle=True, seed=7, per_chunk=4)
    assert (len(plain), len(chunked)) == (11, 3)
    for _ in range(2):  # two epochs: the permutation advances the same way in both
        a, b = _epoch(plain, 10), _epoch(chunked, 10)
        assert [len(y) for y in a] == [10] * 10 + [3]
        assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_each_epoch_is_a_new_seeded_permutation() -> None:
    first = batches.Chunks(_split(64), 8, shuffle=True, seed=1)
    epoch0, epoch1 = torch.cat(_epoch(first, 8)), torch.cat(_epoch(first, 8))
    assert sorted(epoch0.tolist()) == list(range(64)) and not torch.equal(epoch0, epoch1)
    again = batches.Chunks(_split(64), 8, shuffle=True, seed=1)
    assert torch.equal(torch.cat(_epoch(again, 8)), epoch0)
    other = batches.Chunks(_split(64), 8, shuffle=True, seed=2)
    assert not torch.equal(torch.cat(_epoch(other, 8)), epoch0)


def test_evaluation_order_is_the_split_order() -> None:
    loader = batches.Chunks(_split(10), 4, shuffle=False)
    assert torch.equal(torch.cat([y for _, y in loader]), torch.arange(10))


def test_batches_per_chunk() -> None:
    assert batches.batches_per_chunk(32, 4096) == 128
    assert batches.batches_per_chunk(5000, 4096) == 1


def test_ranks_split_each_epoch_into_equal_disjoint_shards() -> None:
    """Data-parallel: each rank steps the same number of times over its share of the epoch's
    permutation (the same on every rank), padded by wrapping as DistributedSampler does."""
    whole = batches.Chunks(_split(103), 10, shuffle=True, seed=7)
    shards = [
        batches.Chunks(_split(103), 10, shuffle=True, seed=7, per_chunk=2, rank=r, world=3)
        for r in range(3)
    ]
    assert [len(s) for s in shards] == [2, 2, 2] and [s.samples() for s in shards] == [35] * 3
    order = torch.cat(_epoch(whole, 10))
    seen = [torch.cat(_epoch(s, 10)) for s in shards]
    padded = torch.cat([order, order[:2]])
    for r, ys in enumerate(seen):
        assert torch.equal(ys, padded[r::3])
    assert sorted(set(torch.cat(seen).tolist())) == list(range(103))
    assert batches.Chunks(_split(10), 4, shuffle=False, rank=1, world=2).samples() == 10
