"""Activations: fused (``activation=``) and as layers (Activation, ReLU, Softmax, LeakyReLU, ELU,
PReLU)."""

from torch import nn

from r8.frontends.keras.layers.layout import check_option, torch_axis
from r8.frontends.keras.layers.modules import Affine, Exp, KerasPReLU, constant_in_torch_layout
from r8.frontends.keras.layers.registry import ACTIVATIONS, Steps, converter
from r8.frontends.keras.reader import KerasLayer


def activation(layer: KerasLayer, name, rank: int) -> nn.Module | None:
    """The torch module of a Keras activation by name (``None`` for linear)."""
    if name == "linear":
        return None
    modules = {"relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
               "softmax": lambda: nn.Softmax(dim=torch_axis(-1, rank)), "elu": nn.ELU, "selu": nn.SELU,
               "gelu": nn.GELU, "swish": nn.SiLU, "silu": nn.SiLU, "softplus": nn.Softplus, "softsign": nn.Softsign,
               "exponential": Exp, "hard_silu": nn.Hardswish, "hard_swish": nn.Hardswish,
               # Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3: relu6(x + 3) / 6 (torch's Hardsigmoid)
               "hard_sigmoid": nn.Hardsigmoid if not layer.keras_version.startswith("2.") else lambda: Affine(0.2, 0.5, 0, 1)}
    if not isinstance(name, str) or name not in modules:
        raise layer.error(f"has unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
    return modules[name]()


def with_activation(layer: KerasLayer, steps: Steps, rank: int) -> Steps:
    """A fused activation (``activation=`` of Conv2D/Dense) becomes its own step after the layer."""
    name = layer.config.get("activation", "linear")
    module = activation(layer, name, rank)
    return steps + [(f"{layer.name}_{name}", module)] if module is not None else steps


@converter("Activation")
def activation_layer(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    module = activation(layer, layer.config["activation"], len(shapes[0]) + 1)
    return [(layer.name, module or nn.Identity())]


@converter("ReLU")
def relu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    check_option(layer, "negative_slope", (0, 0.0, None), 0)
    check_option(layer, "threshold", (0, 0.0, None), 0)
    top = layer.config.get("max_value")
    module = nn.ReLU() if top is None else nn.ReLU6() if top == 6 else nn.Hardtanh(0.0, float(top))
    return [(layer.name, module)]


@converter("Softmax")
def softmax(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    return [(layer.name, nn.Softmax(dim=torch_axis(layer.config.get("axis", -1), len(shapes[0]) + 1)))]


@converter("LeakyReLU")
def leaky_relu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    slope = layer.config.get("negative_slope", layer.config.get("alpha", 0.3))  # Keras 3 / Keras 2 spelling
    return [(layer.name, nn.LeakyReLU(float(slope)))]


@converter("ELU")
def elu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    return [(layer.name, nn.ELU(float(layer.config.get("alpha", 1.0))))]


@converter("PReLU")
def prelu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    alpha, shared = layer.weight("alpha"), layer.config.get("shared_axes") or []
    if alpha.ndim != len(shapes[0]) or any(a not in (1, s) for a, s in zip(alpha.shape, shapes[0])) \
            or any(not isinstance(ax, int) or not 0 < ax <= alpha.ndim or alpha.shape[ax - 1] != 1 for ax in shared):
        raise layer.error(f"has alpha {alpha.shape} (shared_axes={shared}) for an input {shapes[0]}")
    return [(layer.name, KerasPReLU(constant_in_torch_layout(alpha, len(shapes[0]) + 1)))]
