"""Every bad input gets an R8Error naming the file and the problem, and nothing half-written."""

import json
import pickle
import shutil

import h5py
import numpy as np
import pytest
from file_facts import read_eembc_bins

from r8.cli import main
from r8.core.errors import R8Error
from r8.data import load_split, verify_cifar10
from r8.frontends.convert import convert


@pytest.fixture
def h5_copy(h5_path, tmp_path):
    """A writable copy of the real .h5 and a helper that edits its model_config."""
    path = tmp_path / "model.h5"
    shutil.copy(h5_path, path)

    def edit_config(change):
        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            layers = {layer["name"]: layer for layer in config["config"]["layers"]}
            change(config["config"]["layers"], layers)
            f.attrs["model_config"] = json.dumps(config)
    return path, edit_config


def _raises(path, *words):
    with pytest.raises(R8Error) as e:
        convert(path)
    for word in (str(path), *words):
        assert word in str(e.value)


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.h5", "file not found")


def test_unknown_suffix(tmp_path):
    """The reader is chosen by suffix (r8.frontends.convert.READERS); any other file is named."""
    path = tmp_path / "model.pb"
    path.write_bytes(b"\x08\x07")
    _raises(path, "model.pb: r8 reads .h5, .hdf5, .keras, .tflite, .onnx, .pt2 files, not .pb")


def test_not_hdf5(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("this is not HDF5")
    _raises(path, "not a readable HDF5 file")


def test_weights_only_h5(tmp_path):
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("conv2d/kernel:0", data=np.zeros((3, 3, 3, 16)))
    _raises(path, "not a full Keras model")


def test_inbound_layer_missing(h5_copy):
    path, edit = h5_copy
    edit(lambda layers, by_name: by_name["conv2d_4"]["inbound_nodes"][0][0].__setitem__(0, "no_such_layer"))
    _raises(path, "'conv2d_4'", "reads ['no_such_layer']")


def test_unsupported_layer_type(h5_copy):
    path, edit = h5_copy
    edit(lambda layers, by_name: by_name["average_pooling2d"].update(class_name="Conv3D"))
    _raises(path, "'average_pooling2d' (Conv3D)", "unsupported type", "supported: InputLayer")


def test_unsupported_option(h5_copy):
    path, edit = h5_copy
    edit(lambda layers, by_name: by_name["conv2d_3"]["config"].update(dilation_rate=[2, 2]))
    _raises(path, "'conv2d_3' (Conv2D)", "unsupported dilation_rate=(2, 2)", "supported: (1, 1)")


def test_unsupported_activation(h5_copy):
    path, edit = h5_copy
    edit(lambda layers, by_name: by_name["activation"]["config"].update(activation="mish"))
    _raises(path, "'activation' (Activation)", "unsupported activation 'mish'", "relu6")


def test_inconsistent_graph(h5_copy):
    path, edit = h5_copy  # stride 1 in the residual branch: its add no longer matches the shortcut
    edit(lambda layers, by_name: by_name["conv2d_3"]["config"].update(strides=[1, 1]))
    _raises(path, "'add_1' (Add)", "different shapes")


def test_a_call_that_does_not_exist(h5_copy):
    """A layer reading the second call of a layer called once (shared layers convert: suite/test_convert_models.py)."""
    path, edit = h5_copy

    def second_call(layers, by_name):
        reader = next(spec for spec in layers if any(ref[0] == "conv2d_4" for node in spec["inbound_nodes"] for ref in node))
        ref = next(ref for ref in reader["inbound_nodes"][0] if ref[0] == "conv2d_4")
        ref[1] = 1
    edit(second_call)
    _raises(path, "reads ['conv2d_4@1']", "do not exist")


def test_weight_wrong_shape(h5_copy):
    path, _ = h5_copy
    with h5py.File(path, "r+") as f:
        group = f["model_weights/conv2d_4/conv2d_4"]
        del group["kernel:0"]
        group.create_dataset("kernel:0", data=np.zeros((3, 3, 32, 31), np.float32))
    _raises(path, "conv2d_4/kernel", "(3, 3, 32, 31)", "implies (3, 3, 32, 32)")


def test_weight_missing(h5_copy):
    path, _ = h5_copy
    with h5py.File(path, "r+") as f:
        group = f["model_weights/batch_normalization_2"]
        group.attrs["weight_names"] = [n for n in group.attrs["weight_names"] if b"gamma" not in n]
    _raises(path, "'batch_normalization_2' (BatchNormalization) has no weight 'gamma'")


def test_convert_cli_writes_nothing_on_error(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    out = tmp_path / "out" / "model.pt"
    assert main(["convert", "--model", str(bad), "-o", str(out)]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.rglob("*.pt"))


# ---- CIFAR-10 folders
@pytest.fixture
def cifar_copy(tmp_path):
    """A data root whose batches are links to the real ones, ready to be broken one by one."""
    from r8.core import paths

    src = paths.data_dir() / "cifar-10-batches-py"
    dst = tmp_path / "cifar-10-batches-py"
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).symlink_to(f)
    return tmp_path, dst


def _data_raises(root, *words):
    with pytest.raises(R8Error) as e:
        load_split("test", root)
    for word in words:
        assert word in str(e.value)


def test_cifar_truncated_batch(cifar_copy):
    root, folder = cifar_copy
    data = (folder / "test_batch").read_bytes()
    (folder / "test_batch").unlink()
    (folder / "test_batch").write_bytes(data[: len(data) // 2])
    _data_raises(root, str(folder / "test_batch"), "truncated or corrupt")


def test_cifar_wrong_shaped_batch(cifar_copy):
    root, folder = cifar_copy
    (folder / "test_batch").unlink()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((10000, 1024), np.uint8), "labels": [0] * 10000}, f)
    _data_raises(root, str(folder / "test_batch"), "md5")


def test_cifar_without_test_batch(cifar_copy):
    root, folder = cifar_copy
    (folder / "test_batch").unlink()
    _data_raises(root, str(folder / "test_batch"), "missing")


def test_cifar_empty_root(tmp_path):
    with pytest.raises(R8Error, match="data_batch_1: missing"):
        verify_cifar10(tmp_path)


def test_eembc_bin_wrong_size(tmp_path):
    (tmp_path / "y_labels.csv").write_text("a.bin,10,3\n")
    (tmp_path / "a.bin").write_bytes(bytes(3000))
    with pytest.raises(R8Error, match="a.bin: expected 3072 bytes, got 3000"):
        read_eembc_bins(tmp_path)


# ---- a model and a data set that do not fit r8 or each other: exit 2, the file named, nothing written
@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A tiny 8x8x1, 3-class Keras model, and one with two outputs."""
    from r8.frontends.keras.reference import import_tensorflow

    import_tensorflow()
    import keras

    folder = tmp_path_factory.mktemp("models")
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(folder / "one.h5")
    keras.Model(inputs, [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)]).save(folder / "two.h5")
    return folder


def _npz(path, **arrays):
    rng = np.random.default_rng(0)
    base = {"x_train": rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8), "y_train": np.arange(30) % 3,
            "x_test": rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8), "y_test": np.arange(12) % 3}
    np.savez(path, **{k: v for k, v in {**base, **arrays}.items() if v is not None})
    return path


def _refused(capsys, tmp_path, model, data, *words):
    out = tmp_path / "reports"
    code = main(["quantize", "--model", str(model), "--data", str(data), "--out", str(out), "--calibration-size", "30"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert not out.exists()  # refused before anything was written


def test_data_without_an_array(small_model, tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", y_test=None)
    _refused(capsys, tmp_path, small_model / "one.h5", data, str(data), "no array y_test")


def test_data_of_another_shape_names_both_shapes(small_model, tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", x_test=np.zeros((12, 8, 8, 3), np.uint8))
    _refused(capsys, tmp_path, small_model / "one.h5", data, "(8, 8, 3) per sample", "takes (8, 8, 1)",
             str(small_model / "one.h5"))


def test_labels_outside_the_class_count(small_model, tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", y_train=np.arange(30) % 4)
    _refused(capsys, tmp_path, small_model / "one.h5", data, "labels span 0..3", "3 classes")


def test_model_with_two_outputs_is_refused(small_model, tmp_path, capsys):
    _refused(capsys, tmp_path, small_model / "two.h5", _npz(tmp_path / "d.npz"), "2 outputs",
             "single-output classifiers")


class _Sentinel:
    """Unpickling this would create a file: the proof that r8 never unpickles data."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_data_with_pickled_objects_is_never_unpickled(small_model, tmp_path, capsys):
    sentinel = tmp_path / "unpickled"
    data = tmp_path / "d.npz"
    np.savez(data, **{"x_train": np.array([_Sentinel(sentinel)], dtype=object), "y_train": np.zeros(1, np.int64),
                      "x_test": np.zeros((1, 8, 8, 1), np.uint8), "y_test": np.zeros(1, np.int64)})
    _refused(capsys, tmp_path, small_model / "one.h5", data, str(data), "never unpickles")
    assert not sentinel.exists()
