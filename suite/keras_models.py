"""Keras models the converter is tested on, each built by a function of the Keras package
(``keras`` = Keras 3, ``tf_keras`` = Keras 2), so one builder yields both ``.h5`` dialects.

Families: our own equivalents of the MLPerf Tiny reference models (not in ``R8_DATA_DIR``),
written after MLCommons' training scripts. Layer cases: one small model per layer type and
option, on odd, non-square inputs where padding or element order could go wrong.
"""

import numpy as np


# ---- MLPerf Tiny families
def resnet(k, widths=(16, 32, 64), input_shape=(32, 32, 3), classes=10):
    """MLPerf Tiny image classification: ResNet8 (resnet_v1_eembc) at any widths; one stage per width."""
    L = k.layers
    inputs = k.Input(input_shape)
    x = L.Conv2D(widths[0], 3, padding="same")(inputs)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    for i, w in enumerate(widths):
        stride = 1 if i == 0 else 2
        y = L.Conv2D(w, 3, strides=stride, padding="same")(x)
        y = L.Activation("relu")(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(w, 3, padding="same")(y))
        if stride != 1:
            x = L.Conv2D(w, 1, strides=stride, padding="same")(x)
        x = L.Activation("relu")(L.add([x, y]))
    x = L.AveragePooling2D(pool_size=int(min(x.shape[1:3])))(x)
    return k.Model(inputs, L.Dense(classes, activation="softmax")(L.Flatten()(x)))


def mobilenet_v1(k, alpha=0.25):
    """MLPerf Tiny visual wake words: MobileNetV1 (alpha 0.25) on 96x96x3, 2 classes."""
    L = k.layers
    inputs = k.Input((96, 96, 3))
    f = int(32 * alpha)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(f, 3, strides=2, padding="same", use_bias=False)(inputs)))
    for filters, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
                            (1024, 2), (1024, 1)]:
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = L.ReLU(max_value=6.0)(L.BatchNormalization()(x))
        x = L.Conv2D(int(filters * alpha), 1, padding="same", use_bias=False)(x)
        x = L.ReLU(max_value=6.0)(L.BatchNormalization()(x))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return k.Model(inputs, L.Dense(2, activation="softmax")(L.Flatten()(x)))


def autoencoder(k, dim=640):
    """MLPerf Tiny anomaly detection: a Dense/BatchNorm autoencoder on 640-dim vectors."""
    L = k.layers
    inputs = k.Input((dim,))
    x = inputs
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.Activation("relu")(L.BatchNormalization()(L.Dense(units)(x)))
    return k.Model(inputs, L.Dense(dim)(x))


def dscnn_kws(k):
    """MLPerf Tiny keyword spotting: DS-CNN on 49x10 MFCCs, 12 classes."""
    L = k.layers
    inputs = k.Input((49, 10, 1))
    x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same")(inputs)
    x = L.Dropout(0.2)(L.Activation("relu")(L.BatchNormalization()(x)))
    for _ in range(4):
        x = L.Activation("relu")(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
        x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(64, 1, padding="same")(x)))
    x = L.Dropout(0.4)(x)
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return k.Model(inputs, L.Dense(12, activation="softmax")(L.Flatten()(x)))


def dscnn_streaming(k):
    """MLPerf Tiny streaming wake word: a DS-CNN over time with (k, 1) 'valid' depthwise kernels
    (3, 5, 10, 15), Dropout, and a Flatten after a conv."""
    L = k.layers
    inputs = k.Input((52, 1, 40))  # time, 1, mel bins
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(32, (3, 1), padding="valid")(inputs)))
    for kernel in (5, 10, 15):
        x = L.DepthwiseConv2D((kernel, 1), padding="valid", use_bias=False)(x)
        x = L.Activation("relu")(L.BatchNormalization()(x))
        x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(32, 1)(x)))
        x = L.Dropout(0.1)(x)
    x = L.Flatten()(x)
    return k.Model(inputs, L.Dense(3, activation="softmax")(x))


# ---- common Keras image classifiers beyond the MLPerf Tiny set, at ImageNet-like resolution
def _hard_swish(k, x):
    """hard-swish: Keras 3's activation; from layers in Keras 2 (x * relu6(x + 3) / 6)."""
    L = k.layers
    if "hard_silu" in dir(k.activations):
        return L.Activation("hard_swish")(x)
    return L.Multiply()([x, L.Rescaling(1 / 6)(L.ReLU(6.0)(L.Rescaling(1.0, offset=3.0)(x)))])


def se_net(k):
    """Conv stages with squeeze-and-excitation: GlobalAveragePooling2D -> Dense -> Dense -> Multiply."""
    L = k.layers
    inputs = k.Input((96, 96, 3))
    x = inputs
    for width in (16, 32):
        x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(width, 3, strides=2, padding="same")(x)))
        se = L.Dense(width // 4, activation="relu")(L.GlobalAveragePooling2D()(x))
        se = L.Reshape((1, 1, width))(L.Dense(width, activation="sigmoid")(se))
        x = L.Multiply()([x, se])
    return k.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x)))


def inverted_residual(k):
    """MobileNetV3-like: expand 1x1, depthwise 3x3, project 1x1, residual add, hard-swish."""
    L = k.layers
    inputs = k.Input((96, 96, 3))
    x = _hard_swish(k, L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same")(inputs)))
    for stride, out in ((1, 16), (2, 24), (1, 24)):
        y = _hard_swish(k, L.BatchNormalization()(L.Conv2D(out * 4, 1)(x)))
        y = _hard_swish(k, L.BatchNormalization()(L.DepthwiseConv2D(3, strides=stride, padding="same")(y)))
        y = L.BatchNormalization()(L.Conv2D(out, 1)(y))
        x = L.Add()([x, y]) if stride == 1 and x.shape[-1] == out else y
    return k.Model(inputs, L.Dense(5, activation="softmax")(L.GlobalAveragePooling2D()(x)))


def separable_net(k):
    """Separable convolutions with a Cropping2D and max pooling, at 100x100."""
    L = k.layers
    inputs = k.Input((100, 100, 3))
    x = L.SeparableConv2D(16, 3, padding="same", activation="relu")(inputs)
    x = L.Cropping2D(((2, 2), (1, 3)))(x)
    x = L.MaxPooling2D(2)(L.SeparableConv2D(32, 3, strides=2, padding="same", depth_multiplier=2)(x))
    x = L.LeakyReLU(0.1)(L.BatchNormalization()(x))
    return k.Model(inputs, L.Dense(4, activation="softmax")(L.GlobalMaxPooling2D()(x)))


def _applications(name):
    """A ``keras.applications`` model (random weights: nothing is downloaded) at its default 224 px."""
    return lambda k: getattr(k.applications, name)(weights=None, input_shape=(224, 224, 3))


FAMILIES = {
    "resnet8": lambda k: resnet(k),
    "resnet8-wide-26-52-104": lambda k: resnet(k, (26, 52, 104)),
    "resnet10-four-stages": lambda k: resnet(k, (8, 16, 32, 64)),
    "resnet-two-stages-odd-input": lambda k: resnet(k, (12, 20), input_shape=(27, 23, 3)),
    "mobilenet-v1-vww": mobilenet_v1,
    "autoencoder-ad": autoencoder,
    "dscnn-kws": dscnn_kws,
    "dscnn-streaming-ww": dscnn_streaming,
    "se-net-96": se_net,
    "inverted-residual-hswish-96": inverted_residual,
    "separable-cropping-100": separable_net,
    # Keras 3 writes their hard-sigmoid, relu6(x + 3.0) * (1 / 6), as Add / Multiply with a constant operand
    "mobilenet-v3-small": _applications("MobileNetV3Small"),
    "mobilenet-v3-large": _applications("MobileNetV3Large"),
}
CLASSIFIERS = {"resnet8", "resnet8-wide-26-52-104", "resnet10-four-stages", "resnet-two-stages-odd-input",
               "mobilenet-v1-vww", "dscnn-kws", "dscnn-streaming-ww"}


# ---- one model per layer type and option
def _image(k, layers, shape=(7, 9, 3)):
    inputs = k.Input(shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return k.Model(inputs, x)


def _merge(k, merge):
    L = k.layers
    inputs = k.Input((5, 7, 3))
    branches = [L.Conv2D(4, 1)(inputs), L.Conv2D(4, 3, padding="same")(inputs), L.Conv2D(4, 2, padding="same")(inputs)]
    if merge == "concat-flat":
        return k.Model(inputs, L.Concatenate()([L.Flatten()(b) for b in branches]))
    layer = {"add": L.Add, "concat": L.Concatenate, "multiply": L.Multiply, "subtract": L.Subtract, "maximum": L.Maximum,
             "minimum": L.Minimum, "average": L.Average}[merge]()
    return k.Model(inputs, layer(branches[:2] if merge == "subtract" else branches))


def _math(k):
    """Elementwise functions on tensors and constants: ``keras.ops`` (Keras 3), ``tf.math`` (tf-keras
    makes them op layers)."""
    if hasattr(k, "ops"):
        return k.ops
    import tensorflow as tf

    return tf.math


def _with_constant(k, fn):
    """``fn(k, x)`` on a conv's (5, 7, 4) output: arithmetic with a constant operand, which Keras 3
    saves as the merge layer's class with the constant among the call's args (in order)."""
    inputs = k.Input((5, 7, 3))
    return k.Model(inputs, fn(k, k.layers.Conv2D(4, 3, padding="same")(inputs)))


def _hard_sigmoid_keras3(k):
    """keras.applications' MobileNetV3 hard-sigmoid: Conv2D, + 3.0, ReLU(6.0), * (1 / 6), Flatten."""
    inputs = k.Input((6, 6, 3))
    x = k.layers.Conv2D(4, 3)(inputs)
    return k.Model(inputs, k.layers.Flatten()(k.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)))


_CHANNELS = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
_HWC = np.random.default_rng(1).normal(0, 1, (5, 7, 4)).astype(np.float32)
CONSTANT_CASES = {
    "const-add-right": lambda k, x: x + 3.0,
    "const-add-left": lambda k, x: 3.0 + x,
    "const-subtract-right": lambda k, x: x - 3.0,
    "const-subtract-left": lambda k, x: 3.0 - x,
    "const-multiply-right": lambda k, x: x * (1.0 / 6.0),
    "const-multiply-left": lambda k, x: -2.0 * x,
    "const-divide-right": lambda k, x: x / 6.0,
    "const-divide-left": lambda k, x: 6.0 / k.layers.Activation("sigmoid")(x),
    "const-divide-function-right": lambda k, x: _math(k).divide(x, 4.0),  # Keras 3's Divide (x / y is TrueDivide)
    "const-maximum-right": lambda k, x: _math(k).maximum(x, 0.5),
    "const-maximum-left": lambda k, x: _math(k).maximum(0.5, x),
    "const-minimum-right": lambda k, x: _math(k).minimum(x, -0.25),
    "const-minimum-left": lambda k, x: _math(k).minimum(-0.25, x),
    "const-add-per-channel-right": lambda k, x: x + _CHANNELS,
    # a numpy array on the left would take the Keras tensor as its own operand: the function form
    "const-subtract-per-channel-left": lambda k, x: _math(k).subtract(_CHANNELS, x),
    "const-multiply-hwc-left": lambda k, x: _math(k).multiply(_HWC, x),  # an (H, W, C) constant: NCHW in torch
    "const-maximum-hwc-right": lambda k, x: _math(k).maximum(x, _HWC),
}


def _seq(k, layers, shape=(11, 3)):
    """A rank-3 (N, steps, channels) tensor through 1-D layers."""
    return _image(k, layers, shape)


def _adapted(layer, shape):
    """A Normalization layer adapted to random data (its mean and variance become weights)."""
    layer.adapt(np.random.default_rng(0).normal(2.0, 3.0, (16, *shape)).astype(np.float32))
    return layer


def _dense(k, layers, dim=6):
    inputs = k.Input((dim,))
    x = inputs
    for layer in layers:
        x = layer(x)
    return k.Model(inputs, x)


def _reshape(k):
    L = k.layers
    inputs = k.Input((4, 6, 2))
    x = L.Reshape((8, 6))(inputs)  # 4-D -> 3-D, in Keras element order
    x = L.Reshape((-1,))(x)
    x = L.Dense(30)(x)
    return k.Model(inputs, L.Conv2D(2, 3, padding="same")(L.Reshape((3, 5, 2))(x)))


LAYER_CASES = {
    "conv-same-k3-s1": lambda k: _image(k, [k.layers.Conv2D(4, 3, padding="same")]),
    "conv-same-k3-s2-odd": lambda k: _image(k, [k.layers.Conv2D(4, 3, strides=2, padding="same")]),
    "conv-same-k4-even-kernel": lambda k: _image(k, [k.layers.Conv2D(4, 4, padding="same")]),
    "conv-same-k2x5-s2x3": lambda k: _image(k, [k.layers.Conv2D(4, (2, 5), strides=(2, 3), padding="same")]),
    "conv-valid-k3x2-s2": lambda k: _image(k, [k.layers.Conv2D(4, (3, 2), strides=2, padding="valid")]),
    "conv-no-bias-relu": lambda k: _image(k, [k.layers.Conv2D(4, 3, use_bias=False, activation="relu")]),
    "conv-groups-2": lambda k: _image(k, [k.layers.Conv2D(4, 3, padding="same", groups=2)], shape=(6, 5, 4)),
    "depthwise-k3-same": lambda k: _image(k, [k.layers.DepthwiseConv2D(3, padding="same")]),
    "depthwise-mult2-s2-same": lambda k: _image(k, [k.layers.DepthwiseConv2D(3, strides=2, padding="same",
                                                                             depth_multiplier=2)]),
    "depthwise-k5x1-valid-relu6": lambda k: _image(k, [k.layers.DepthwiseConv2D((5, 1), activation="relu6")]),
    "batchnorm-image": lambda k: _image(k, [k.layers.BatchNormalization(epsilon=0.01)]),
    "batchnorm-no-center-no-scale": lambda k: _image(k, [k.layers.BatchNormalization(center=False, scale=False)]),
    "batchnorm-dense": lambda k: _dense(k, [k.layers.Dense(5), k.layers.BatchNormalization()]),
    "activation-relu": lambda k: _dense(k, [k.layers.Activation("relu")]),
    "activation-relu6": lambda k: _dense(k, [k.layers.Activation("relu6")]),
    "activation-sigmoid": lambda k: _dense(k, [k.layers.Activation("sigmoid")]),
    "activation-tanh": lambda k: _dense(k, [k.layers.Activation("tanh")]),
    "activation-linear": lambda k: _dense(k, [k.layers.Activation("linear")]),
    "activation-softmax-image": lambda k: _image(k, [k.layers.Activation("softmax")]),
    "relu-max-value-3": lambda k: _image(k, [k.layers.ReLU(max_value=3.0)]),
    "softmax-layer-over-rows": lambda k: _image(k, [k.layers.Softmax(axis=1)]),
    "add-three-inputs": lambda k: _merge(k, "add"),
    "concatenate-channels": lambda k: _merge(k, "concat"),
    "concatenate-flat": lambda k: _merge(k, "concat-flat"),
    "avgpool-valid": lambda k: _image(k, [k.layers.AveragePooling2D(2)]),
    "avgpool-same-odd": lambda k: _image(k, [k.layers.AveragePooling2D(2, padding="same")]),
    "avgpool-same-k3-s1": lambda k: _image(k, [k.layers.AveragePooling2D(3, strides=1, padding="same")]),
    "maxpool-valid-s1": lambda k: _image(k, [k.layers.MaxPooling2D(3, strides=1)]),
    "maxpool-same-odd": lambda k: _image(k, [k.layers.MaxPooling2D(2, padding="same")]),
    "global-avgpool": lambda k: _image(k, [k.layers.GlobalAveragePooling2D()]),
    "global-avgpool-keepdims": lambda k: _image(k, [k.layers.GlobalAveragePooling2D(keepdims=True)]),
    "flatten-after-conv": lambda k: _image(k, [k.layers.Conv2D(4, 3), k.layers.Flatten(), k.layers.Dense(3)]),
    "reshape-4d-3d-2d-4d": _reshape,
    "dropout": lambda k: _image(k, [k.layers.Dropout(0.5)]),
    "zeropadding-asymmetric": lambda k: _image(k, [k.layers.ZeroPadding2D(((1, 2), (0, 3)))]),
    "dense-softmax": lambda k: _dense(k, [k.layers.Dense(4, activation="softmax")]),
    # ---- beyond the MLPerf Tiny set
    "separable-conv-same-s2-mult2": lambda k: _image(k, [k.layers.SeparableConv2D(5, 3, strides=2, padding="same",
                                                                                  depth_multiplier=2, activation="relu")]),
    "conv-transpose-same-s2-k3": lambda k: _image(k, [k.layers.Conv2DTranspose(4, 3, strides=2, padding="same")]),
    "conv-transpose-valid-s2-k3": lambda k: _image(k, [k.layers.Conv2DTranspose(4, 3, strides=2)]),
    "conv-transpose-same-s3-k2": lambda k: _image(k, [k.layers.Conv2DTranspose(2, 2, strides=3, padding="same")]),
    "multiply-three": lambda k: _merge(k, "multiply"),
    "subtract": lambda k: _merge(k, "subtract"),
    "maximum": lambda k: _merge(k, "maximum"),
    "minimum": lambda k: _merge(k, "minimum"),
    "average": lambda k: _merge(k, "average"),
    "rescaling": lambda k: _image(k, [k.layers.Rescaling(1 / 127.5, offset=-1.0)]),
    "rescaling-per-channel": lambda k: _image(k, [k.layers.Rescaling([0.5, 2.0, -1.0], offset=[0.1, 0.0, 3.0])]),
    "normalization-adapted": lambda k: _image(k, [_adapted(k.layers.Normalization(), (7, 9, 3))]),
    "leaky-relu": lambda k: _image(k, [k.layers.LeakyReLU(0.1)]),
    "prelu-shared-hw": lambda k: _image(k, [k.layers.PReLU(shared_axes=[1, 2])]),
    "prelu-full": lambda k: _image(k, [k.layers.PReLU()]),
    "elu-layer": lambda k: _image(k, [k.layers.ELU(0.7)]),
    **{f"activation-{a}": (lambda a: lambda k: _dense(k, [k.layers.Dense(6), k.layers.Activation(a)]))(a)
       for a in ("swish", "gelu", "hard_sigmoid", "exponential", "softplus", "softsign", "selu", "elu")},
    "activation-hard-silu": lambda k: _dense(k, [k.layers.Dense(6), k.layers.Activation("hard_silu")]),
    "global-maxpool": lambda k: _image(k, [k.layers.GlobalMaxPooling2D()]),
    "global-maxpool-keepdims": lambda k: _image(k, [k.layers.GlobalMaxPooling2D(keepdims=True)]),
    "cropping-asymmetric": lambda k: _image(k, [k.layers.Cropping2D(((1, 2), (0, 3)))]),
    "upsampling-nearest": lambda k: _image(k, [k.layers.UpSampling2D((2, 3))]),
    "upsampling-bilinear": lambda k: _image(k, [k.layers.UpSampling2D(2, interpolation="bilinear")]),
    "permute": lambda k: _image(k, [k.layers.Permute((2, 3, 1)), k.layers.Conv2D(2, 1)]),
    "conv1d-same-s2": lambda k: _seq(k, [k.layers.Conv1D(4, 3, strides=2, padding="same", activation="relu")]),
    "conv1d-valid": lambda k: _seq(k, [k.layers.Conv1D(4, 5)]),
    "depthwise-conv1d": lambda k: _seq(k, [k.layers.DepthwiseConv1D(3, padding="same", depth_multiplier=2)]),
    "pooling1d": lambda k: _seq(k, [k.layers.MaxPooling1D(2, padding="same"), k.layers.AveragePooling1D(3, strides=1,
                                                                                                      padding="same")]),
    "global-pooling1d": lambda k: _seq(k, [k.layers.Conv1D(4, 3), k.layers.GlobalAveragePooling1D()]),
    "global-maxpool1d-keepdims": lambda k: _seq(k, [k.layers.GlobalMaxPooling1D(keepdims=True)]),
    "hard-sigmoid-const-operands": _hard_sigmoid_keras3,
    **{name: (lambda fn: lambda k: _with_constant(k, fn))(fn) for name, fn in CONSTANT_CASES.items()},
    "sequential-conv-dense": lambda k: k.Sequential([k.Input((6, 6, 2)), k.layers.Conv2D(3, 3, strides=2, padding="same"),
                                                      k.layers.Flatten(), k.layers.Dense(4, activation="tanh")]),
}


# ---- a model inside a model, a layer used twice (transfer learning, siamese, autoencoders)
def _backbone(k):
    """A keras.applications backbone without its top (random weights: nothing is downloaded)."""
    return k.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, include_top=False, weights=None)


def _backbone_functional(k):
    """The backbone inside a functional model with its own Rescaling input layer and a new head."""
    L = k.layers
    inputs = k.Input((64, 64, 3))
    x = _backbone(k)(L.Rescaling(1 / 127.5, offset=-1.0)(inputs))
    return k.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x)))


def _autoencoder_of_two(k):
    L = k.layers
    encoder = k.Sequential([k.Input((24,)), L.Dense(12, activation="relu"), L.BatchNormalization(), L.Dense(4)],
                           name="encoder")
    decoder = k.Sequential([k.Input((4,)), L.Dense(12, activation="relu"), L.Dense(24)], name="decoder")
    inputs = k.Input((24,))
    return k.Model(inputs, decoder(encoder(inputs)))


def _small_tower(k, name, shape=(12, 10, 3)):
    L = k.layers
    inputs = k.Input(shape)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(6, 3, strides=2, padding="same")(inputs)))
    return k.Model(inputs, L.GlobalAveragePooling2D()(L.Conv2D(8, 1)(x)), name=name)


def _siamese(k):
    """One tower applied to two inputs: its weights are held once, called twice."""
    L = k.layers
    tower = _small_tower(k, "tower")
    a, b = k.Input((12, 10, 3)), k.Input((12, 10, 3))
    return k.Model([a, b], L.Dense(1, activation="sigmoid")(L.Subtract()([tower(a), tower(b)])))


def siamese_classifier(k, classes: int = 3):
    """The siamese tower on two inputs with a softmax head: a classifier with two inputs, what
    ``r8 evaluate`` takes and the int8 jobs refuse."""
    L = k.layers
    tower = _small_tower(k, "tower")
    a, b = k.Input((12, 10, 3), name="left"), k.Input((12, 10, 3), name="right")
    return k.Model([a, b], L.Dense(classes, activation="softmax")(L.Subtract()([tower(a), tower(b)])))


def _three_deep(k):
    L = k.layers
    inner = k.Sequential([k.Input((8,)), L.Dense(8, activation="relu")], name="inner")
    x = k.Input((8,))
    middle = k.Model(x, L.Dense(6, activation="tanh")(inner(x)), name="middle")
    y = k.Input((8,))
    outer = k.Model(y, L.Dense(5)(middle(y)), name="outer")
    z = k.Input((8,))
    return k.Model(z, L.Dense(3, activation="softmax")(outer(z)))


def _siblings(k):
    """Two towers of one shape side by side: a mix-up of their weights would still run (their
    difference, so that a swap shows)."""
    L = k.layers
    inputs = k.Input((12, 10, 3))
    return k.Model(inputs, L.Subtract()([_small_tower(k, "left")(inputs), _small_tower(k, "right")(inputs)]))


def _dense_twice(k):
    L = k.layers
    inputs, shared = k.Input((6,)), L.Dense(6, activation="tanh", name="shared")
    return k.Model(inputs, L.Dense(2)(shared(shared(inputs))))


NESTED_CASES = {
    "nested-mobilenet-v2-in-sequential": lambda k: k.Sequential(
        [k.Input((64, 64, 3)), _backbone(k), k.layers.GlobalAveragePooling2D(), k.layers.Dense(10, activation="softmax")]),
    "nested-mobilenet-v2-functional-rescaling": _backbone_functional,
    "nested-autoencoder-two-sequentials": _autoencoder_of_two,
    "nested-siamese-shared-tower": _siamese,
    "nested-three-deep": _three_deep,
    "nested-sibling-towers": _siblings,
    "shared-dense-called-twice": _dense_twice,
}
LAYER_CASES.update(NESTED_CASES)


KERAS3_ONLY = {"activation-hard-silu"}  # tf-keras has no hard_silu activation


def randomize(model, rng: np.random.Generator) -> None:
    """Random biases and BatchNorm parameters and statistics (so BN is no identity); kernels keep
    Keras's own random initialisation."""
    for layer in model.layers:
        values = []
        for w in layer.weights:
            name, shape = w.name.split("/")[-1].split(":")[0], tuple(w.shape)
            if name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape))
            elif name in ("beta", "moving_mean", "bias"):
                values.append(rng.normal(0, 0.2, shape))
            else:
                values.append(np.asarray(w.numpy()))
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])


def random_inputs(model, rng: np.random.Generator, n: int = 16) -> list[np.ndarray]:
    """N(0, 1) inputs: with random weights, raw-pixel-scale inputs would saturate the softmax."""
    return [rng.normal(0, 1, (n, *x.shape[1:])).astype(np.float32) for x in model.inputs]
