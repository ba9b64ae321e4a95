"""CIFAR-10 splits, the MLPerf Tiny perf sets (npy and EEMBC .bin), and the download paths,
exercised against a loopback HTTP server only."""

import functools
import hashlib
import http.server
import tarfile
import threading

import numpy as np
import pytest
from file_facts import cifar_test_filenames, read_eembc_bins

from r8.core import paths
from r8.core.errors import R8Error
from r8.data import MLCOMMONS_FILES, download_cifar10, download_mlcommons, load_split


def test_splits_shape_and_balance(test_split):
    train = load_split("train")
    for split, n in ((train, 50_000), (test_split, 10_000)):
        assert split.images.shape == (n, 32, 32, 3) and split.images.dtype == np.uint8
        assert split.images.flags.c_contiguous  # NHWC in memory too: no runtime gets its layout for free
        assert np.array_equal(np.bincount(split.labels, minlength=10), np.full(10, n // 10))


@pytest.mark.parametrize("name", ["perf200", "perf200_v0.5"])
def test_perf_sets_are_test_images(name, test_split, report):
    subset = load_split(name)
    assert subset.images.shape == (200, 32, 32, 3)
    counts = np.bincount(subset.labels, minlength=10)
    report(f"{name} images per class", counts.tolist())
    # each perf image is a distinct test image
    assert len({img.tobytes() for img in subset.images}) == 200


def test_eembc_bins_equal_v05_test_images(test_split):
    names, images, labels = read_eembc_bins(paths.mlcommons_dir() / "perf_samples_v0.5")
    index = {name.replace(".png", ".bin"): i for i, name in enumerate(cifar_test_filenames())}
    idx = np.array([index[n] for n in names])
    assert np.array_equal(images, test_split.images[idx])
    assert np.array_equal(labels, test_split.labels[idx])
    assert sorted(idx) == sorted(np.load(paths.mlcommons_dir() / "perf_samples_idxs_v0.5.npy"))


# ---- downloads from a loopback server
@pytest.fixture
def serve(tmp_path):
    """``serve(directory)`` serves a folder on 127.0.0.1 and returns its base URL."""
    servers = []

    def start(directory):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"
    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="session")
def cifar_archive(tmp_path_factory):
    """A cifar-10-python.tar.gz packed from the real batches, and its md5."""
    path = tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(paths.data_dir() / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return path, hashlib.md5(path.read_bytes()).hexdigest()


def test_download_cifar10_verifies_and_loads(cifar_archive, serve, tmp_path):
    archive, md5 = cifar_archive
    root = tmp_path / "root"
    download_cifar10(root, url=f"{serve(archive.parent)}/{archive.name}", md5=md5)
    assert not (root / archive.name).exists()  # archive removed after extraction
    assert load_split("test", root).images.shape == (10_000, 32, 32, 3)


def test_download_cifar10_rejects_bad_checksum(cifar_archive, serve, tmp_path):
    archive, _ = cifar_archive
    url = f"{serve(archive.parent)}/{archive.name}"
    with pytest.raises(R8Error, match=f"download of {url}.*failed"):
        download_cifar10(tmp_path, url=url, md5="0" * 32)
    assert not list(tmp_path.iterdir())


def test_download_cifar10_skips_verified_copy():
    assert download_cifar10(paths.data_dir(), url="http://127.0.0.1:9/unreachable").is_dir()


@pytest.fixture
def mlcommons_mirror(tmp_path):
    """A folder laid out like the MLCommons repository, holding the real reference files."""
    mirror = tmp_path / "mirror"
    for name, (rel, _) in MLCOMMONS_FILES.items():
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).symlink_to(paths.mlcommons_dir() / name)
    return mirror


def test_download_mlcommons(serve, mlcommons_mirror, tmp_path):
    got = download_mlcommons(tmp_path / "dl", base_url=serve(mlcommons_mirror))
    for name in MLCOMMONS_FILES:
        assert (got / name).read_bytes() == (paths.mlcommons_dir() / name).read_bytes()


def test_download_mlcommons_rejects_wrong_file(serve, mlcommons_mirror, tmp_path):
    rel = MLCOMMONS_FILES["pretrainedResnet.h5"][0]
    (mlcommons_mirror / rel).unlink()
    (mlcommons_mirror / rel).write_bytes(b"not the model")
    with pytest.raises(R8Error, match="pretrainedResnet.h5.*failed"):
        download_mlcommons(tmp_path / "dl", base_url=serve(mlcommons_mirror))
    assert not (tmp_path / "dl" / "pretrainedResnet.h5").exists()
