"""Converters r8 adds to onnx2torch's registry for ops it converts at an older opset only, one
entry per op and version (onnx2torch's registry refuses a second). Each builds the module
onnx2torch builds for the op's previous version; a form that module cannot compute exactly is
refused in :func:`r8.frontends.onnx_file.node_problem` before conversion. Imported once, by
:mod:`r8.frontends.onnx_file`."""

from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

# Opset 18 moved these reductions' axes from an attribute to an input (torch.onnx writes ReduceMean-18
# for a global average pool); onnx2torch converts them up to opset 13.
REDUCE_AXES_AS_INPUT = {"ReduceL1": 18, "ReduceL2": 18, "ReduceLogSum": 18, "ReduceLogSumExp": 18, "ReduceMax": 18,
                        "ReduceMean": 18, "ReduceMin": 18, "ReduceProd": 18, "ReduceSumSquare": 18}


def reduce_with_constant_axes(node, graph) -> OperationConverterResult:
    """A reduction whose axes input is a constant (or absent: every axis), as onnx2torch's module
    of the same reduction with an ``axes`` attribute."""
    inputs = node.input_values
    axes = get_const_value(inputs[1], graph).tolist() if len(inputs) > 1 and inputs[1] else None
    module = OnnxReduceStaticAxes(node.operation_type, axes, node.attributes.get("keepdims", 1))
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(inputs=inputs[:1],
                                                                                 outputs=node.output_values))


for _op, _version in REDUCE_AXES_AS_INPUT.items():
    add_converter(operation_type=_op, version=_version)(reduce_with_constant_axes)
