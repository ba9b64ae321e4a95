"""The artifact cache serves only what it built: a reused artifact's bytes are checked against
the sha256 its build recorded; a damaged artifact or key file means a rebuild, never an error or a
served file."""

import json

import pytest

from r8.cache import build_once


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("R8_CACHE_DIR", str(tmp_path))
    builds = []

    def build(tmp):
        builds.append(1)
        tmp.write_bytes(bytes(range(256)) * 64)  # 16 KiB, like a (tiny) model file

    return lambda: build_once("m/model.onnx", {"model": "abc"}, build), builds


def test_an_intact_artifact_is_reused(cache):
    get, builds = cache
    assert get().read_bytes() == get().read_bytes() and len(builds) == 1


def test_a_flipped_byte_is_rebuilt_not_served(cache):
    get, builds = cache
    path = get()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle: the file still has its size and format
    path.write_bytes(bytes(data))
    assert get().read_bytes() == bytes(range(256)) * 64 and len(builds) == 2


@pytest.mark.parametrize("damage", ["not-json", "empty", "a-list", "no-sha256"])
def test_a_damaged_key_file_means_a_rebuild(cache, damage):
    get, builds = cache
    path = get()
    key_file = path.with_name(path.name + ".key.json")
    record = json.loads(key_file.read_text())
    key_file.write_text({"not-json": "{key: ", "empty": "", "a-list": "[]",
                         "no-sha256": json.dumps({"key": record["key"]})}[damage])
    get()
    assert len(builds) == 2 and json.loads(key_file.read_text())["sha256"] == record["sha256"]


def test_a_truncated_artifact_is_rebuilt(cache):
    get, builds = cache
    path = get()
    path.write_bytes(path.read_bytes()[:100])
    assert get().stat().st_size == 256 * 64 and len(builds) == 2
