"""Models that are not the MLPerf Tiny IC01 ResNet8, trained here on real data so r8's whole
pipeline can be proven on them (seeded; TensorFlow's deterministic ops):

- ``cifar_cnn.h5``: a small depthwise-separable / MaxPool / Dense CNN on the 50k CIFAR-10 training
  images (Keras 3), a shape unlike ResNet8's, built the transfer-learning way: its conv stack is a
  model of its own (``backbone``) nested under an input normalization and a new head, so the
  whole pipeline (every backend, the gates) runs on a nested model;
- ``mnv2_cifar.h5``: a MobileNetV2-style CIFAR-10 net on which per-tensor int8 loses several pp
  (see :func:`train_mnv2`): the hard model of ``r8 search``;
- ``digits.h5`` and ``digits.npz``: a small CNN on scikit-learn's 8x8 grayscale digits (1,797 real
  images shipped inside its wheel, no download), split 80/20 stratified, as r8's ``--data`` file;
- ``cifar_resnet_torch.pt2``: a CIFAR-10 ResNet written and trained in PyTorch (not converted from
  Keras), saved as a ``torch.export`` program: the PyTorch-born model (see :func:`train_torch_resnet`).

    python suite/trained_models.py --out models/   # writes all five
"""

import argparse
from pathlib import Path

import numpy as np

SEED = 0
# the gates' thresholds per model, set from what each reaches (see suite/test_models.py)
THRESHOLDS = {"cifar_cnn": ["--min-top1", "0.65", "--max-drop-pp", "5", "--best-drop-pp", "0.5"],
              "digits": ["--min-top1", "0.95", "--max-drop-pp", "5", "--best-drop-pp", "1.0"]}
CIFAR_EPOCHS = 3


def _keras():
    from r8.frontends.keras.reference import import_tensorflow

    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    return keras


def train_cifar_cnn(out: Path, data) -> float:
    """Train on ``data.train`` (an r8 Dataset); returns the Keras test top-1."""
    keras = _keras()
    L = keras.layers
    features = keras.Input((32, 32, 3), name="features")
    x = features
    for i, width in enumerate((32, 64, 128)):
        x = L.Conv2D(width, 1 if i else 3, padding="same", use_bias=False, name=f"pw{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
        x = L.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x)
        x = L.ReLU(6.0, name=f"relu6_{i}")(x)
        x = L.MaxPooling2D(2, name=f"pool{i}")(x)
    backbone = keras.Model(features, x, name="backbone")
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = backbone(L.BatchNormalization(name="input_norm")(inputs))  # raw pixels 0..255 in, as ResNet8 takes them
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.3, name="drop")(x)
    outputs = L.Dense(10, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name="cifar_cnn")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.train.images.astype(np.float32), data.train.labels, batch_size=128, epochs=CIFAR_EPOCHS,
              verbose=0, shuffle=True)
    model.save(out)
    return float(model.evaluate(data.test.images.astype(np.float32), data.test.labels, verbose=0)[1])


# MobileNetV2's inverted residual blocks at half width on 32x32 (expansion, out channels, blocks, stride)
MNV2_BLOCKS = ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 32, 2, 1))
MNV2_EPOCHS = 3


def train_mnv2(out: Path, data) -> float:
    """A MobileNetV2-style CIFAR-10 net made as torchvision makes MobileNetV2 (He fan-out
    initialization, BatchNorm epsilon 1e-5) and trained briefly at a high learning rate (Adam 2e-2).
    Some expansion channels die there (ReLU6 never fires): the depthwise conv after one sees zeros,
    its BatchNorm's running variance falls to ~0, and folding that BatchNorm into the conv
    multiplies the channel's weights by up to 1/sqrt(1e-5). Per-tensor int8 weights then give the
    live channels a level or two: MobileNetV2's per-tensor failure (Nagel et al., "Data-Free
    Quantization", 2019), here in a few CPU minutes. Returns the Keras test top-1."""
    keras = _keras()
    L = keras.layers
    def he_fan_out():  # a new instance per layer: Keras 3 gives one unseeded instance's values again
        return keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")

    def bn(name):
        return L.BatchNormalization(epsilon=1e-5, name=name)

    inputs = keras.Input((32, 32, 3), name="pixels")
    x = L.Rescaling(1 / 255, name="scale")(inputs)
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem", kernel_initializer=he_fan_out())(x)
    x = L.ReLU(6.0, name="stem_relu")(bn("stem_bn")(x))
    channels, i = 16, 0
    for expansion, width, blocks, first_stride in MNV2_BLOCKS:
        for j in range(blocks):
            stride = first_stride if j == 0 else 1
            y = x
            if expansion != 1:
                y = L.Conv2D(channels * expansion, 1, use_bias=False, name=f"b{i}_expand", kernel_initializer=he_fan_out())(y)
                y = L.ReLU(6.0, name=f"b{i}_expand_relu")(bn(f"b{i}_expand_bn")(y))
            y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"b{i}_dw",
                                  depthwise_initializer=he_fan_out())(y)
            y = L.ReLU(6.0, name=f"b{i}_dw_relu")(bn(f"b{i}_dw_bn")(y))
            y = bn(f"b{i}_project_bn")(L.Conv2D(width, 1, use_bias=False, name=f"b{i}_project",
                                         kernel_initializer=he_fan_out())(y))
            x = L.Add(name=f"b{i}_add")([x, y]) if stride == 1 and channels == width else y
            channels, i = width, i + 1
    outputs = L.Dense(10, activation="softmax", name="classes")(L.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, outputs, name="mnv2_cifar")
    steps = MNV2_EPOCHS * -(-len(data.train.labels) // 128)
    # the high rate kills channels early (a dead ReLU6 gets no gradient to revive it); decaying it gives a settled model
    rate = keras.optimizers.schedules.CosineDecay(2e-2, steps)
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.train.images.astype(np.float32), data.train.labels, batch_size=128, epochs=MNV2_EPOCHS,
              verbose=0, shuffle=True)
    model.save(out)
    return float(model.evaluate(data.test.images.astype(np.float32), data.test.labels, verbose=0)[1])


# A CIFAR-10 ResNet written in PyTorch: ResNet8's shape (a 3x3 stem, three stages of one residual block
# at 16 / 32 / 64 channels, global average pool, linear), with BatchNorm and raw pixels 0..255 in
TORCH_WIDTHS = (16, 32, 64)
TORCH_EPOCHS = 12
TORCH_BATCH = 256


def torch_resnet():
    """The untrained PyTorch-born model (seeded by the caller)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    class CifarResNet(nn.Module):
        def __init__(self, widths=TORCH_WIDTHS):
            super().__init__()
            # CIFAR-10's per-channel training-set mean and standard deviation, in pixels
            self.register_buffer("mean", torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1))
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
            self.stages = nn.Sequential(Block(widths[0], widths[0], 1), Block(widths[0], widths[1], 2),
                                        Block(widths[1], widths[2], 2))
            self.classes = nn.Linear(widths[2], 10)

        def forward(self, pixels):
            x = self.stages(self.stem((pixels - self.mean) / self.std))
            return torch.softmax(self.classes(x.mean((2, 3))), dim=1)

    return CifarResNet()


def _augmented(images, generator):
    """A batch of NCHW float pixels, each flipped at random and shifted up to 4 pixels (zero padded)."""
    import torch

    n = len(images)
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2, n), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(32)).view(n, 1, 32, 1)
    cols = (dx.view(n, 1) + torch.arange(32)).view(n, 1, 1, 32)
    return padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1), rows, cols]


def train_torch_resnet(out: Path, data) -> float:
    """Train :func:`torch_resnet` on ``data.train`` (SGD with Nesterov momentum, a one-cycle rate,
    label smoothing, flips and shifts; seeded, deterministic kernels) and save it as a
    ``torch.export`` program with a dynamic batch (``.pt2``). Returns its test top-1."""
    import torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(SEED)
    model = torch_resnet().to(memory_format=torch.channels_last)
    images = torch.from_numpy(data.train.images).permute(0, 3, 1, 2).float()
    labels = torch.from_numpy(data.train.labels.astype(np.int64))
    steps = TORCH_EPOCHS * -(-len(labels) // TORCH_BATCH)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}],
                                lr=0.2, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=steps, pct_start=0.25)
    model.train()
    for _ in range(TORCH_EPOCHS):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), TORCH_BATCH):
            idx = order[start:start + TORCH_BATCH]
            x = _augmented(images[idx], generator).contiguous(memory_format=torch.channels_last)
            probs = model(x)
            loss = torch.nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), labels[idx], reduction="none")
            smooth = -torch.log(probs.clamp_min(1e-12)).mean(1)  # label smoothing 0.1 on the softmax output
            (0.9 * loss + 0.1 * smooth).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
    model = model.eval().to(memory_format=torch.contiguous_format)
    program = torch.export.export(model, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, out)
    test = torch.from_numpy(data.test.images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        predicted = torch.cat([model(test[s:s + 1000]).argmax(1) for s in range(0, len(test), 1000)]).numpy()
    return float((predicted == data.test.labels).mean())


def write_digits_npz(out: Path) -> None:
    """scikit-learn's digits as r8's data file: uint8 8x8x1 images (0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target.astype(np.int64), test_size=0.2,
                                                        stratify=digits.target, random_state=SEED)
    np.savez(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             classes=np.array([str(d) for d in range(10)]))


def train_digits(out: Path, data) -> float:
    keras = _keras()
    L = keras.layers
    inputs = keras.Input((8, 8, 1), name="pixels")
    x = L.BatchNormalization(name="input_norm")(inputs)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv0")(x)
    x = L.Conv2D(32, 3, strides=2, padding="same", name="conv1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.train.images.astype(np.float32), data.train.labels, batch_size=32, epochs=40, verbose=0)
    model.save(out)
    return float(model.evaluate(data.test.images.astype(np.float32), data.test.labels, verbose=0)[1])


def one_layer_model(out: Path) -> Path:
    """A digits classifier of one Dense layer (untrained; seeded): too small to search."""
    keras = _keras()
    inputs = keras.Input((8, 8, 1), name="pixels")
    outputs = keras.layers.Dense(10, activation="softmax", name="classes")(keras.layers.Flatten(name="flatten")(inputs))
    keras.Model(inputs, outputs).save(out)
    return out


def _written_as(suffix: str, write):
    """A build for ``build_once`` whose writer insists on a file suffix (Keras's .h5, numpy's .npz)."""
    def build(tmp: Path):
        target = tmp.with_name(tmp.name + suffix)
        facts = write(target)
        target.rename(tmp)
        return facts
    return build


CIFAR_TRAINERS = {"cifar_cnn": train_cifar_cnn, "mnv2_cifar": train_mnv2}
# train_torch_resnet's model as trained on this project's 2-core AVX2 machine, committed: training takes
# about 20 CPU minutes, so the gate checks the model, and `slow` trains it again
# (test_torch_born.py::test_the_trainer_reproduces_the_committed_model).
TORCH_MODEL = Path(__file__).parent / "models" / "cifar_resnet_torch.pt2"
# train_mnv2's model as trained on the machine of the suite's measurements (AMD EPYC, AVX-512; Keras test top-1
# 63.19 %), committed: the gate checks the hard model without 1-2 CPU minutes of training, on the same weights on
# every CPU (which channels die depends on the CPU's float kernels). The suite trains it again under `slow`
# (test_hard_model.py::test_the_trainer_still_makes_a_hard_model) and checks the premise on what it trained.
HARD_MODEL = Path(__file__).parent / "models" / "mnv2_cifar.h5"


def cached(name: str) -> tuple[Path, str]:
    """(model file, --data) of a trained model, built once into R8_CACHE_DIR (the suite's)."""
    from r8.core.cache import build_once, sha256
    from r8.data import load_dataset

    inputs = {"trainer": sha256(Path(__file__))}
    if name == "torch_resnet":
        data = load_dataset("cifar10")
        train = _written_as(".pt2", lambda out: {"top1": train_torch_resnet(out, data)})
        return build_once("trained/cifar_resnet_torch.pt2", {**inputs, "data": data.sha256}, train), "cifar10"
    if name in CIFAR_TRAINERS:
        data = load_dataset("cifar10")
        train = _written_as(".h5", lambda out: {"keras_top1": CIFAR_TRAINERS[name](out, data)})
        return build_once(f"trained/{name}.h5", {**inputs, "data": data.sha256}, train), "cifar10"
    npz = build_once("trained/digits.npz", inputs, _written_as(".npz", write_digits_npz))
    train = _written_as(".h5", lambda out: {"keras_top1": train_digits(out, load_dataset(npz))})
    return build_once("trained/digits.h5", {**inputs, "data": sha256(npz)}, train), str(npz)


def main() -> None:
    from r8.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, train in CIFAR_TRAINERS.items():
        print(f"{name}: Keras test top-1 {train(args.out / f'{name}.h5', load_dataset('cifar10')):.2%}")
    print(f"cifar_resnet_torch: test top-1 {train_torch_resnet(args.out / TORCH_MODEL.name, load_dataset('cifar10')):.2%}")
    write_digits_npz(args.out / "digits.npz")
    print(f"digits: Keras test top-1 {train_digits(args.out / 'digits.h5', load_dataset(args.out / 'digits.npz')):.2%}")


if __name__ == "__main__":
    main()
