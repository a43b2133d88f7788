"""Data sets as normalised float tensors held whole in memory (on the GPU when training there).

MNIST is small (60k x 784 floats, 188 MB), so decoding it once and slicing batches out of one
tensor (see ``batches.py``) replaces the tutorial's per-sample PIL -> ToTensor -> Normalize
pipeline, which costs more than the MLP itself. MNIST is read from an ``mnist.npz``
(x_train/y_train/x_test/y_test) or torchvision's raw IDX files; ``digits`` is scikit-learn's
bundled 8x8 set, so tests and quick searches need no download. As in the tutorial, validation
uses the test split.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import torch

from nasop_trainer import errors

NUM_CLASSES = 10
_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_NPZ_KEYS = tuple(_IDX_FILES)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: ``x`` float32 (n, input_dim), normalised; ``y`` int64 class labels (n,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A training and a validation split of flattened inputs."""

    name: str
    train: Split
    val: Split
    num_classes: int = NUM_CLASSES

    @property
    def input_dim(self) -> int:
        return int(self.train.x.shape[1])


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (the format of MNIST's raw files), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise errors.DataMissingError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise errors.DataMissingError(f"{path} is truncated: expected shape {shape}")
    return data.reshape(shape)


def _find_raw(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in _IDX_FILES.items():
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            return None
    return found


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        missing = [k for k in _NPZ_KEYS if k not in npz.files]
        if missing:
            hint = "an MNIST npz holds x_train, y_train, x_test, y_test"
            raise errors.DataMissingError(f"{path} lacks {', '.join(missing)}", hint=hint)
        return {k: npz[k] for k in _NPZ_KEYS}


def _find_mnist(data_dir: Path) -> dict[str, np.ndarray] | None:
    if data_dir.is_file():
        return _read_npz(data_dir)
    if (data_dir / "mnist.npz").is_file():
        return _read_npz(data_dir / "mnist.npz")
    for folder in (data_dir / "MNIST" / "raw", data_dir / "raw", data_dir):
        files = _find_raw(folder)
        if files is not None:
            return {key: read_idx(path) for key, path in files.items()}
    return None


def _download_mnist(data_dir: Path) -> None:
    """Fetches MNIST into ``data_dir/MNIST/raw`` with torchvision, the tutorial's downloader."""
    try:
        from torchvision import datasets  # type: ignore[import-not-found]  # optional
    except Exception as exc:  # not installed, or built against another torch
        raise errors.DataMissingError(
            f"--download needs torchvision, which cannot be imported ({type(exc).__name__})",
            hint=f"put mnist.npz or MNIST/raw/*-ubyte.gz in {data_dir}, or use --dataset digits",
        ) from None
    try:
        for train in (True, False):
            datasets.MNIST(str(data_dir), train=train, download=True)
    except Exception as exc:
        raise errors.DataMissingError(f"downloading MNIST into {data_dir} failed: {exc}") from None


def mnist_arrays(data_dir: Path, *, download: bool = False) -> dict[str, np.ndarray]:
    """Finds MNIST under ``data_dir`` (downloading it first if asked); keys as in mnist.npz."""
    arrays = _find_mnist(data_dir)
    if arrays is None and download:
        _download_mnist(data_dir)
        arrays = _find_mnist(data_dir)
    if arrays is None:
        raise errors.DataMissingError(
            f"MNIST not found in {data_dir} (looked for mnist.npz and MNIST/raw/*-ubyte[.gz])",
            hint="pass --data-dir DIR (or NASOP_DATA_DIR) where it is, add --download "
            "(needs torchvision), or use --dataset digits",
        )
    return arrays


def digits_arrays() -> dict[str, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, split fixed: the last 20% is the validation split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    n_train = len(y) - len(y) // 5
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
    }


def _to_tensor(
    x: np.ndarray, scale: float, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Flattened float inputs scaled to [0, 1], converted on ``device``.

    The compact raw array moves first (4x less to copy for uint8), then converts there.
    """
    raw = torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), -1))).to(device)
    return raw.to(dtype).div_(scale)


def _labels(y: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)


def load(
    name: str,
    data_dir: Path,
    *,
    download: bool = False,
    subset: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DataSet:
    """Loads a data set as normalised tensors on ``device``.

    Inputs are scaled to [0, 1] and standardised with the mean and standard deviation of the
    whole training split (for MNIST these are the tutorial's 0.1307 and 0.3081).

    Args:
        name: ``mnist`` or ``digits``.
        data_dir: where MNIST is (ignored for digits).
        download: fetch MNIST with torchvision when it is missing.
        subset: train on the first ``subset`` training samples only.
        device: where the tensors live.
        dtype: the inputs' float type (float64 for exactness checks).

    Raises:
        errors.DataMissingError: the data set is not there and cannot be downloaded.
    """
    if name == "mnist":
        arrays, scale = mnist_arrays(Path(data_dir), download=download), 255.0
    elif name == "digits":
        arrays, scale = digits_arrays(), 16.0
    else:
        raise errors.UsageError(f"unknown dataset {name!r}", hint="use mnist or digits")
    device = torch.device(device)
    x_train = _to_tensor(arrays["x_train"], scale, device, dtype)
    std, mean = torch.std_mean(x_train, correction=0)
    std = std if float(std) > 0 else torch.ones_like(std)
    x_val = _to_tensor(arrays["x_test"], scale, device, dtype)
    for x in (x_train, x_val):
        x.sub_(mean).div_(std)
    n = len(x_train) if subset is None else min(subset, len(x_train))
    if n < len(x_train):
        x_train = x_train[:n].clone()  # let the rest of the split be freed
    return DataSet(
        name=name,
        train=Split(x=x_train, y=_labels(arrays["y_train"][:n], device)),
        val=Split(x=x_val, y=_labels(arrays["y_test"], device)),
    )


__all__ = ["NUM_CLASSES", "DataSet", "Split", "digits_arrays", "load", "mnist_arrays", "read_idx"]
