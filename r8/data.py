"""The data a job evaluates and calibrates on, as a :class:`Dataset` value: CIFAR-10 (official
python layout, loaded and downloaded through torchvision) with the MLPerf Tiny perf sets, or a
user's ``.npz``; the EEMBC ``.bin`` format, and the reference model files' download."""

import hashlib
import os
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from r8.core import paths
from r8.core.batch import input_arrays, rows
from r8.core.cache import sha256
from r8.core.errors import R8Error


@cache
def torchvision_cifar10():
    """torchvision's CIFAR10 (its files, their md5, its URL and reader), imported on first use: the
    import takes seconds, which a command on other data (an .npz, a .tflite's own) never needs."""
    from torchvision.datasets import CIFAR10

    return CIFAR10


def cifar_files() -> list[list[str]]:
    """[file name, md5] of every file of CIFAR-10's python layout."""
    c = torchvision_cifar10()
    return c.train_list + c.test_list + [[c.meta["filename"], c.meta["md5"]]]


CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The MLCommons tiny reference files, as published (the same files as in R8_DATA_DIR/mlcommons):
# name -> (path under MLCOMMONS_URL, md5).
MLCOMMONS_URL = "https://github.com/mlcommons/tiny/raw/1afd2c98/benchmark/training/image_classification"
MLCOMMONS_FILES = {
    "pretrainedResnet.h5": ("trained_models/pretrainedResnet.h5", "f3f7f4864d6798030822cac7a95f8301"),
    "pretrainedResnet.tflite": ("trained_models/pretrainedResnet.tflite", "6ba6fa3ed68c479ef7be253ba3f0b789"),
    "pretrainedResnet_quant.tflite": ("trained_models/pretrainedResnet_quant.tflite",
                                      "2d6dd48722471313e4c4528249205ae3"),
    "perf_samples_idxs.npy": ("perf_samples_idxs.npy", "c806ed872903de072e7ac9541291b01c"),
    # IC02 (MLPerf Tiny v1.4 "ic2"): published as .tflite only
    "pretrainedResnet_large_float.tflite": ("trained_models/pretrainedResnet_large_float.tflite",
                                            "23bff114d95e31ffa026dd1708961679"),
    "pretrainedResnet_large_int8.tflite": ("trained_models/pretrainedResnet_large_int8.tflite",
                                           "a1557194b784a2a1842bf6896f30ce7e"),
}
PERF_SETS = {"perf200": "perf_samples_idxs.npy", "perf200_v0.5": "perf_samples_idxs_v0.5.npy"}
SUBSETS = ("test", *PERF_SETS)


@dataclass(frozen=True)
class Split:
    name: str
    # (N, *input shape) uint8 or float32, Keras layout (NHWC), C-contiguous; for a model with
    # several inputs a tuple of such arrays, one per input
    images: np.ndarray | tuple
    labels: np.ndarray  # (N,) int64

    def take(self, name: str, idx: np.ndarray) -> "Split":
        return Split(name, rows(self.images, idx), self.labels[idx])


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training images (calibration is drawn from them) and test images (evaluation), with
    named subsets of the test images (CIFAR-10: the MLPerf Tiny perf sets)."""

    name: str
    sha256: str  # of the data: artifacts built from it are keyed by it
    train: Split
    test: Split
    classes: tuple = ()  # class names; empty: "0", "1", ...
    subsets: tuple = ()  # ((name, indices into test), ...)
    root: Path | None = None  # CIFAR-10's data root, which also holds the MLCommons calibration list
    source: str = "cifar10"  # what load_dataset was given: cifar10, or the .npz file's path

    def __eq__(self, other) -> bool:  # the same data is the same data set, whichever load made it
        return isinstance(other, Dataset) and (self.name, self.sha256) == (other.name, other.sha256)

    def __hash__(self) -> int:
        return hash((self.name, self.sha256))

    @property
    def key(self) -> str:
        return f"{self.name}-{self.sha256[:12]}"

    def split(self, name: str) -> Split:
        """``train``, ``test`` or one of the subsets of the test images."""
        subsets = dict(self.subsets)
        if name in ("train", "test"):
            return getattr(self, name)
        if name not in subsets:
            raise R8Error(f"data {self.name}: no subset {name!r}; choose from {('train', 'test', *subsets)}")
        return self.test.take(name, subsets[name])

    def class_names(self, num_classes: int) -> tuple:
        return self.classes if len(self.classes) == num_classes else tuple(map(str, range(num_classes)))

    def check(self, model) -> None:
        """Refuse data that does not fit ``model`` (an :class:`r8.model.Model`): naming both shapes,
        or the labels outside its class count."""
        for split in (self.train, self.test):
            arrays, shapes = input_arrays(split.images), model.input_shapes
            if len(arrays) != len(shapes):
                raise R8Error(f"data {self.name}: {split.name} holds {len(arrays)} input array(s); {model.path} takes "
                              f"{len(shapes)} input(s) (x_{split.name}_0 .. x_{split.name}_{len(shapes) - 1} in a data file)")
            for i, (x, shape) in enumerate(zip(arrays, shapes)):
                if x.shape[1:] != tuple(shape):
                    which = f" (input {i})" if len(shapes) > 1 else ""
                    channels_first = len(shape) == 3 and x.shape[1:] == (shape[2], shape[0], shape[1])
                    hint = (": they are channels-first (NCHW); r8's data sets hold images channels-last (NHWC) "
                            "for every model and feed each in its own layout" if channels_first else "")
                    raise R8Error(f"data {self.name}: {split.name} images{which} have shape {x.shape[1:]} per "
                                  f"sample; {model.path} takes {tuple(shape)} (NHWC){hint}")
            if split.labels.size and (split.labels.min() < 0 or split.labels.max() >= model.num_classes):
                raise R8Error(f"data {self.name}: {split.name} labels span {split.labels.min()}..{split.labels.max()}; "
                              f"{model.path} has {model.num_classes} classes (0..{model.num_classes - 1})")


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_dataset(spec: str | os.PathLike = "cifar10", root: str | os.PathLike | None = None) -> Dataset:
    """``cifar10`` (from ``root``, default R8_DATA_DIR) or an ``.npz`` with ``x_train``,
    ``y_train``, ``x_test``, ``y_test`` (uint8 or float images in the model's layout, integer
    labels; an optional ``classes`` array of names). A model with several inputs takes
    ``x_train_0``, ``x_train_1``, … (and ``x_test_0``, …) in its input order instead of ``x_train``
    (``x_test``). Object arrays are refused, never unpickled."""
    if str(spec) == "cifar10":
        return _cifar10(Path(root or paths.data_dir()).resolve())
    return _npz(Path(spec).resolve())


@cache
def _cifar10(root: Path) -> Dataset:
    subsets = tuple((name, perf_indices(name, root)) for name, f in PERF_SETS.items()
                    if (root / "mlcommons" / f).is_file())
    digest = hashlib.sha256(" ".join(md5 for _, md5 in cifar_files()).encode()).hexdigest()  # verified on load
    return Dataset("cifar10", digest, _load(root, True), _load(root, False), CLASSES, subsets, root)


def _npz(path: Path) -> Dataset:  # read anew each time: an edited file is never served from memory
    if not path.is_file():
        raise R8Error(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_ARRAYS if k not in f.files and not (k.startswith("x_") and f"{k}_0" in f.files)]
            if missing:
                raise R8Error(f"{path}: no array {', '.join(missing)} (has {', '.join(f.files) or 'none'}); "
                              f"a data file holds {', '.join(NPZ_ARRAYS)}")
            arrays = {k: _input_arrays(f, k) if k.startswith("x_") else f[k]
                      for k in (*NPZ_ARRAYS, *(("classes",) if "classes" in f.files else ()))}
    except ValueError as e:  # numpy's refusal of object arrays without allow_pickle
        raise R8Error(f"{path}: holds Python objects, which r8 never unpickles ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise R8Error(f"{path}: not a readable .npz ({e})") from None
    splits = {}
    for part in ("train", "test"):
        xs, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        for name, x in xs.items():
            if x.dtype != np.uint8 and x.dtype.kind != "f":
                raise R8Error(f"{path}: {name} has dtype {x.dtype}; r8 takes uint8 or float images")
            if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x) or x.ndim < 2:
                raise R8Error(f"{path}: y_{part} must be one integer label per sample of {name} "
                              f"({name} {x.shape} {x.dtype}, y_{part} {y.shape} {y.dtype})")
        images = tuple(np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32)) for x in xs.values())
        splits[part] = Split(part, images[0] if f"x_{part}" in xs else images, y.astype(np.int64))
    classes = tuple(str(c) for c in arrays.get("classes", ()))
    return Dataset(path.stem, sha256(path), splits["train"], splits["test"], classes, source=str(path))


def _input_arrays(f, key: str) -> dict:
    """``{key: array}``, or ``{key_0: ..., key_1: ...}`` for a model with several inputs."""
    if key in f.files:
        return {key: f[key]}
    names = []
    while f"{key}_{len(names)}" in f.files:
        names.append(f"{key}_{len(names)}")
    return {name: f[name] for name in names}


def verify_cifar10(root: str | os.PathLike) -> Path:
    """Check every CIFAR-10 file against the md5 torchvision knows; return the batches folder."""
    from torchvision.datasets.utils import calculate_md5

    folder = Path(root) / torchvision_cifar10().base_folder
    problems = []
    for name, md5 in cifar_files():
        f = folder / name
        if not f.is_file():
            problems.append(f"{f}: missing")
        elif (got := calculate_md5(str(f))) != md5:
            problems.append(f"{f}: md5 {got} != {md5} (truncated or corrupt, {f.stat().st_size} bytes)")
    if problems:
        raise R8Error("CIFAR-10 is not usable:\n  " + "\n  ".join(problems)
                      + f"\nSet R8_DATA_DIR or run `python -m r8 download` to fetch it into {root}.")
    return folder


@cache
def _load(root: Path, train: bool) -> Split:
    verify_cifar10(root)
    ds = torchvision_cifar10()(str(root), train=train, download=False)
    # torchvision's ``data`` is an NHWC view of NCHW memory: made C-contiguous, every runtime
    # pays its own layout conversion (a view in NCHW memory made NCHW runtimes' inputs free, and
    # cost LiteRT 14 us per call at batch 1 to copy the strided array)
    images = np.ascontiguousarray(ds.data)
    return Split("train" if train else "test", images, np.asarray(ds.targets, dtype=np.int64))


def load_split(split: str, root: str | os.PathLike | None = None) -> Split:
    """``train`` (50k), ``test`` (10k) or a perf set of the test images (see ``SUBSETS``)."""
    root = Path(root or paths.data_dir()).resolve()
    if split == "train":
        return _load(root, True)
    test = _load(root, False)
    if split == "test":
        return test
    if split not in PERF_SETS:
        raise R8Error(f"unknown subset {split!r}; choose from {('train', *SUBSETS)}")
    return test.take(split, perf_indices(split, root))


def perf_indices(name: str, root: Path) -> np.ndarray:
    f = root / "mlcommons" / PERF_SETS[name]
    try:
        idx = np.load(f)
    except (OSError, ValueError) as e:
        raise R8Error(f"{f}: cannot read perf-set indices ({e})") from None
    if idx.ndim != 1 or idx.min() < 0 or idx.max() >= 10_000:
        raise R8Error(f"{f}: not a list of test-set indices (shape {idx.shape})")
    return idx.astype(np.int64)


def _fetch(fetch, url: str, dest: Path, leftover: Path) -> None:
    """Run a torchvision download; on failure remove what it leaves behind and say what failed."""
    try:
        fetch()
    except Exception as e:  # torchvision raises RuntimeError, URLError or OSError alike
        leftover.unlink(missing_ok=True)
        raise R8Error(f"download of {url} into {dest} failed: {e}") from None


def download_cifar10(root: str | os.PathLike, url: str | None = None, md5: str | None = None) -> Path:
    """Fetch and extract CIFAR-10 (from ``url``, with ``md5``; default: torchvision's) unless a
    verified copy is already there."""
    from torchvision.datasets.utils import download_and_extract_archive

    root, c = Path(root), torchvision_cifar10()
    url, md5 = url or c.url, md5 or c.tgz_md5
    try:
        return verify_cifar10(root)
    except R8Error:
        pass
    _fetch(lambda: download_and_extract_archive(url, str(root), filename=c.filename, md5=md5,
                                                remove_finished=True), url, root, root / c.filename)
    return verify_cifar10(root)


def download_mlcommons(dest: str | os.PathLike, base_url: str = MLCOMMONS_URL) -> Path:
    """Fetch the reference model files and the perf-set indices into ``dest``; each is kept
    only if its md5 matches, and a verified copy already there is not fetched again."""
    from torchvision.datasets.utils import download_url

    dest = Path(dest)
    for name, (rel, md5) in MLCOMMONS_FILES.items():
        url = f"{base_url}/{rel}"
        _fetch(lambda: download_url(url, str(dest), filename=name, md5=md5), url, dest, dest / name)
    return dest
