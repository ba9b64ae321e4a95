"""The Keras converter registry: one converter per layer type, registered by name (a name
registered twice is refused), and the config keys a converter may leave unread."""

from typing import Callable

from torch import nn

from r8.frontends.keras.reader import KerasLayer

Steps = list[tuple[str, nn.Module]]
CONVERTERS: dict[str, Callable[[KerasLayer, list[tuple]], Steps]] = {}
ACTIVATIONS = ("relu", "relu6", "softmax", "sigmoid", "tanh", "linear", "elu", "selu", "gelu", "swish", "silu", "softplus",
               "softsign", "exponential", "hard_sigmoid", "hard_silu", "hard_swish")


def registrar(registry: dict, what: str) -> Callable:
    """``@decorator(*names)`` that registers a converter under each name; a name registered twice
    is refused (here for Keras layer types, in :mod:`r8.frontends.tflite.ops` for TFLite ops)."""
    def decorator(*names: str):
        def register(fn):
            for name in names:
                if name in registry:
                    raise ValueError(f"{what} {name!r} has a converter already")
                registry[name] = fn
            return fn
        return register
    return decorator


converter = registrar(CONVERTERS, "Keras layer type")


def takes_constants(fn):
    """Marks a converter that reads the call's constant operands (``layer.constants``); every other
    converter is refused a call that has one."""
    fn.takes_constants = True
    return fn


# Config keys no converter reads, and why none can change an inference result. Any other key a
# converter leaves unread is refused by name (check_config_read): nothing is dropped silently.
IGNORED_CONFIG = {
    "name": "names the layer (r8 names the submodule after it)",
    "trainable": "whether training may update the weights",
    "dtype": "checked to be float32, the precision r8 computes in (a mixed-precision policy is refused)",
}
IGNORED_CONFIG_SUFFIXES = {
    "_initializer": "the weights' starting values before training; the file's trained weights are read",
    "_regularizer": "a penalty added to the training loss",
    "_constraint": "a projection applied to the weights after each training step",
}


def ignored_config(key: str) -> str | None:
    """Why an unread config key cannot change the result; None if it could."""
    return IGNORED_CONFIG.get(key) or next((why for end, why in IGNORED_CONFIG_SUFFIXES.items() if key.endswith(end)), None)


def dtype_name(value) -> str | None:
    """A dtype or dtype policy as Keras 2 (``"float32"``, ``{"class_name": "Policy", ...}``) or
    Keras 3 (``{"class_name": "DTypePolicy", "config": {"name": "float32"}}``) writes it."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    return value if isinstance(value, str) else None


def check_config_read(layer: KerasLayer, shapes: list[tuple]) -> None:
    """After a layer's converter ran on inputs of ``shapes``: every config key it did not read is on
    the justified list (:data:`IGNORED_CONFIG`), and the layer computes in float32. Keras 2 may
    declare a first layer's input shape in its config: it must be the input's."""
    for key in ("batch_input_shape", "batch_shape"):
        declared = layer.config.get(key)
        if declared is not None and (len(shapes) != 1 or not isinstance(declared, list) or len(declared) != len(shapes[0]) + 1
                                     or any(d is not None and d != s for d, s in zip(declared[1:], shapes[0]))):
            raise layer.error(f"declares its input shape {key}={declared!r}; it gets {shapes}")
    for key in layer.config.unread():
        if ignored_config(key) is None:
            value = dict.get(layer.config, key)
            raise layer.error(f"has {key}={value!r} in its config, which r8 does not convert")
    dtype = dict.get(layer.config, "dtype")
    if dtype is not None and dtype_name(dtype) != "float32":
        raise layer.error(f"has dtype {dtype_name(dtype) or dtype!r}; r8 converts float32 layers (a mixed-precision "
                          "policy computes in another precision)")


def uses(layer: KerasLayer, *keys: str) -> None:
    """Marks config keys a converter knowingly leaves unused (say why beside the call)."""
    for key in keys:
        layer.config.get(key)
