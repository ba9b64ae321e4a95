"""Facts about the conv / linear layers of a converted model (an ``fx.GraphModule`` whose module
names are the original file's layer names): the names ``r8 search`` keeps float (those and the
residual adds), the MACs that say what share of the work a float layer holds, and which conv each
BatchNorm follows (where an exporter folds one into the other)."""

import torch
from torch import fx, nn

LAYER_TYPES = (nn.Conv2d, nn.Linear)


def conv_of_batchnorm(model: fx.GraphModule) -> dict[str, str]:
    """BatchNorm module name -> the conv / linear module whose output it normalizes."""
    out = {}
    for node in model.graph.nodes:
        if node.op == "call_module" and isinstance(model.get_submodule(node.target), nn.modules.batchnorm._BatchNorm):
            source = node.args[0] if node.args else None
            if isinstance(source, fx.Node) and source.op == "call_module" \
                    and isinstance(model.get_submodule(source.target), LAYER_TYPES):
                out[node.target] = source.target
    return out


def layer_macs(model: fx.GraphModule) -> dict[str, int]:
    """Conv / linear module name -> multiply-accumulates per sample, in execution order."""
    from r8.frontends.convert import example_inputs

    macs: dict[str, int] = {}

    def hook(name):
        def record(module, args, out):
            per_output = module.in_features if isinstance(module, nn.Linear) else \
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs[name] = int(out[0].numel()) * per_output
        return record

    hooks = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
    with torch.no_grad():
        model(*example_inputs(model, 1))
    for h in hooks:
        h.remove()
    return macs


def float_units(model: fx.GraphModule) -> tuple[str, ...]:
    """What ``r8 search`` can keep float, in execution order: every conv / linear layer, and every
    residual add (no MACs). An add's int8 output range can carry the error the layers around it do
    not, so a model may miss its budget with every conv / linear layer float and meet it once its
    adds are float too. Read off the graph: no forward pass, as each mixed build asks again."""
    from r8.frontends.keras.layers.modules import Add

    return tuple(node.target for node in model.graph.nodes if node.op == "call_module"
                 and isinstance(model.get_submodule(node.target), (*LAYER_TYPES, Add)))
