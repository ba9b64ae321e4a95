"""One ``predict(images) -> probabilities`` interface over every runtime.

``images`` is always a batch in the Keras layout (NHWC for images), uint8 pixels or float, as a
:class:`r8.data.Split` holds them; each runner does its own layout and dtype conversion, so
accuracy and speed are measured on identical inputs. Torch, Keras and TFLite runners also take a
tuple of such batches, one per input, for a model with several inputs (``r8 evaluate``).
"""

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from r8.core.batch import input_arrays
from r8.core.console import native_stderr_quiet
from r8.core.environment import threads as r8_threads
from r8.core.errors import R8Error


def model_input(images: np.ndarray, nchw: bool, integer: bool = False) -> np.ndarray:
    """NHWC images as the array a model takes: float32 in its layout, or the pixels themselves
    for a model with integer input (``r8.backends.ort.integer_input``). Other ranks pass as they are."""
    if integer:
        return np.ascontiguousarray(images)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2) if nchw and images.ndim == 4 else images,
                                dtype=np.float32)


def onnx_layout(dims: list, images_shape: tuple) -> str:
    """``nchw`` or ``nhwc``: which layout an ONNX input of ``dims`` (0 or a name where dynamic)
    takes NHWC images of ``images_shape`` in (r8's torch route: NCHW; tf2onnx's: NHWC)."""
    sample = tuple(images_shape[1:])
    if len(dims) != 4 or len(sample) != 3:
        return "nhwc"  # not an image: no layout change
    if tuple(dims[1:]) == sample and tuple(dims[1:]) != (sample[2], sample[0], sample[1]):
        return "nhwc"
    return "nchw" if dims[1] == sample[2] else "nhwc"


def torch_input(images: np.ndarray, nhwc: bool = False) -> torch.Tensor:
    """NHWC images as the float tensor a torch model takes: NCHW (r8's converter), or NHWC (the
    onnx2torch route, which keeps Keras's layout). Other ranks pass as they are."""
    x = torch.from_numpy(images)
    return (x if nhwc or x.dim() != 4 else x.permute(0, 3, 1, 2)).float()


@contextmanager
def quantized_engine(engine: str | None):
    """Run with ``engine`` as the quantized kernel backend (a process-wide torch setting)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine or previous
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


@contextmanager
def ieee_fp32():
    """Full fp32 on CUDA: cuDNN convolutions default to TF32 (10-bit mantissa), which moved IC01's
    probabilities by 8e-3 on an H100 (4 of 10k argmaxes) against Keras."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def check_device(device: str) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda:N``), refused with a reason when this machine has no such device."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise R8Error(f"device {device!r}: no CUDA device here (torch {torch.__version__}, "
                      f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")
    if not device.startswith(("cpu", "cuda")):
        raise R8Error(f"device {device!r}: choose cpu or cuda")
    return torch.device(device)


class TorchRunner:
    """A torch module (fp32, or int8 with the quantized ``engine`` its kernels were built for),
    taking NCHW input, or NHWC with ``nhwc``; fp32 modules may run on ``device`` ``cuda``."""

    def __init__(self, module: torch.nn.Module, name: str = "torch", engine: str | None = None, nhwc: bool = False,
                 device: str = "cpu", threads: int = 0):
        self.device = check_device(device)
        self.module, self.name, self.engine, self.nhwc = module.to(self.device), name, engine, nhwc
        self.threads = threads  # torch's thread count is process-wide: set on each call (0: leave it)

    @staticmethod
    def default_threads() -> int:
        """The threads torch uses when the runner leaves them (``threads=0``)."""
        return torch.get_num_threads()

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode(), quantized_engine(self.engine), ieee_fp32():
            xs = (torch_input(x, self.nhwc).to(self.device) for x in input_arrays(images))
            return self.module(*xs).cpu().numpy()


class ExecuTorchRunner:
    """A ``.pte`` on ExecuTorch's runtime, taking contiguous NCHW input (r8's conversion; the program
    reads its input's memory in the dim order it was exported with, whatever the tensor's strides)
    in batches of at most ``max_batch`` (the program's dynamic batch bound). XNNPACK's thread pool is
    one per process and keeps its default size: resizing it between calls
    (``_unsafe_reset_threadpool``) aborted or hung the process, so ``threads`` other
    than 0 or that size is refused."""

    def __init__(self, path: str | os.PathLike, name: str = "executorch", threads: int = 0, max_batch: int = 1):
        from executorch.runtime import Runtime

        size = pool_threads()
        if threads and threads != size:
            raise R8Error(f"{path}: ExecuTorch's runner keeps XNNPACK's thread pool at its default size, "
                          f"{size} threads, not {threads}")
        with native_stderr_quiet():  # its CPU probe's log lines
            self.method = Runtime.get().load_program(Path(path)).load_method("forward")
        self.name, self.max_batch, self.threads = name, max_batch, size

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([self.method.execute((torch_input(images[s:s + self.max_batch]).contiguous(),))[0].numpy()
                               for s in range(0, len(images), self.max_batch)])


def pool_threads() -> int:
    """The size of ExecuTorch's XNNPACK thread pool in this process (its default: one per core)."""
    from executorch.extension.pybindings import portable_lib

    return portable_lib._threadpool_get_thread_count()


def reference_runner(path: str | os.PathLike, name: str = "keras"):
    """The original model in its own framework, what a conversion is checked against: Keras for
    an ``.h5`` or ``.keras``, LiteRT's float interpreter for a ``.tflite``, ONNX Runtime for an
    ``.onnx``, the program itself for a ``.pt2``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return TfliteRunner(path, name=name)
    if suffix == ".onnx":
        return OnnxRunner(path, name=name)
    if suffix == ".pt2":
        from r8.frontends.program import load_program

        return TorchRunner(load_program(path), name=name)
    return KerasRunner(path, name=name)


class KerasRunner:
    """The reference: the ``.h5`` loaded by Keras itself (needs tensorflow; tf-keras for Keras 2 files)."""

    def __init__(self, h5: str | os.PathLike, name: str = "keras"):
        from r8.frontends.keras.reference import load_keras_model  # optional: needs tensorflow

        self.model, self.name = load_keras_model(h5), name

    def predict(self, images: np.ndarray) -> np.ndarray:
        inputs = [x.astype(np.float32) for x in input_arrays(images)]
        # one input as itself: Keras 3 warns when a one-input model is called with a list
        return np.asarray(self.model(inputs if len(inputs) > 1 else inputs[0], training=False))


# ONNX Runtime's WeightBiasQuantization graph transformer quantizes the float weights of a Conv / Gemm
# that sits between a DequantizeLinear and a QuantizeLinear when it loads a model: a layer a QDQ file
# keeps float on purpose (ORT's nodes_to_exclude, NNCF's accuracy control) would run on int8 weights.
DISABLED_ORT_OPTIMIZERS = ["WeightBiasQuantization"]


def onnx_session(model: str | bytes, options=None):
    """An ONNX Runtime CPU session that runs the file as written (float layers stay float)."""
    import onnxruntime as ort

    options = options or ort.SessionOptions()
    options.intra_op_num_threads = options.intra_op_num_threads or r8_threads()  # 0 (unset, no R8_THREADS): ORT's default
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_ORT_OPTIMIZERS)


class OnnxRunner:
    """ONNX Runtime on the CPU; takes NCHW or NHWC models (read from the input shape)."""

    def __init__(self, path: str | os.PathLike, name: str = "onnxruntime", threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # a single chain of ops: parallelism is within ops
        self.session = onnx_session(str(path), options)
        self.name, self.threads = name, options.intra_op_num_threads  # as onnx_session left it
        inp = self.session.get_inputs()[0]
        self.input_name, self.dims, self.integer = inp.name, inp.shape, inp.type == "tensor(uint8)"
        self.nchw = {}  # sample shape -> whether the model takes it as NCHW: decided once, not per call

    def predict(self, images: np.ndarray) -> np.ndarray:
        sample = images.shape[1:]
        if sample not in self.nchw:
            self.nchw[sample] = onnx_layout(self.dims, images.shape) == "nchw"
        return self.session.run(None, {self.input_name: model_input(images, self.nchw[sample], self.integer)})[0]


class TfliteRunner:
    """A ``.tflite`` model on LiteRT's interpreter (``ai-edge-litert``, TF Lite's maintained
    successor), or on ``tf.lite`` where LiteRT is not installed (``interpreter`` picks one). int8
    models get their input quantized with the model's own (scale, zero point) (for the MLCommons
    int8 model: pixel - 128)."""

    def __init__(self, path: str | os.PathLike, name: str = "tflite", threads: int | None = None,
                 interpreter: str | None = None, reference_kernels: bool = False):
        if not Path(path).is_file():
            raise R8Error(f"{path}: file not found")
        self.engine = interpreter or ("litert" if importlib.util.find_spec("ai_edge_litert") else "tf.lite")
        if self.engine == "litert":
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        else:
            from r8.frontends.keras.reference import import_tensorflow

            Interpreter, OpResolverType = import_tensorflow().lite.Interpreter, import_tensorflow().lite.experimental.OpResolverType
        # reference_kernels: TFLite's plain C++ kernels (BUILTIN_REF), the ones TFLM shares, not XNNPACK
        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        with native_stderr_quiet():  # LiteRT announces its XNNPACK delegate on fd 2
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        self.engine += "-reference-kernels" if reference_kernels else ""
        self.name, self.batch, self.threads = name, None, threads or 0
        self.inputs = self.interpreter.get_input_details()  # in the subgraph's order (the data's, too)
        self.output = self.interpreter.get_output_details()[0]

    def predict(self, images) -> np.ndarray:
        arrays = input_arrays(images)
        if len(arrays) != len(self.inputs):
            raise R8Error(f"{self.name}: the model takes {len(self.inputs)} input(s), given {len(arrays)}")
        if self.batch != len(arrays[0]):
            for x, inp in zip(arrays, self.inputs):
                self.interpreter.resize_tensor_input(inp["index"], x.shape)
            with native_stderr_quiet():
                self.interpreter.allocate_tensors()
            self.batch = len(arrays[0])
        for x, inp in zip(arrays, self.inputs):
            # LiteRT copies a strided array slowly (14 us per call at batch 1): hand it C order
            x = integer_input(np.ascontiguousarray(x), inp["dtype"], *inp["quantization"])
            self.interpreter.set_tensor(inp["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        scale, zero = self.output["quantization"]
        return (y.astype(np.float32) - zero) * scale if self.output["dtype"] != np.float32 else y

    def raw(self, images: np.ndarray) -> np.ndarray:
        """The output tensor as the model computes it (int8 for an int8 model)."""
        self.predict(images)
        return self.interpreter.get_tensor(self.output["index"]).copy()


def integer_input(images: np.ndarray, dtype, scale: float, zero: int) -> np.ndarray:
    """uint8 pixels as an int8 model's input (a float model's: as float). int8 with scale 1, zero
    point -128 (pixel - 128, the MLCommons models) is the uint8 byte with its top bit flipped: no
    float round trip."""
    if dtype == np.int8 and (scale, zero) == (1.0, -128) and images.dtype == np.uint8:
        return (images ^ np.uint8(0x80)).view(np.int8)
    if dtype == np.float32:
        return images.astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.round(images.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)


class OpenVinoRunner:
    """OpenVINO on the CPU reading an ONNX file (fp32, or an int8 QDQ model it runs with int8
    kernels). Precision is pinned to f32: on CPUs with bf16 OpenVINO would otherwise lower fp32
    layers to bf16 and change the numbers. A float model of images takes the NHWC images as they
    are (uint8 pixels or float): OpenVINO's pre-processing converts them inside the compiled
    model (exact: every uint8 is a float32, and a transpose moves values), faster than numpy's
    conversion. The model is compiled on the first call, for that call's dtype and shape."""

    def __init__(self, path: str | os.PathLike, name: str = "openvino", threads: int = 0):
        # One stream: a tiny model gains nothing from parallel requests, and LATENCY alone may open more.
        self.config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.path, self.name, self.request, self.dtype, self.threads = path, name, None, None, threads

    def _compile(self, images: np.ndarray) -> None:
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        core = ov.Core()
        model = core.read_model(str(self.path))
        if model.inputs[0].get_element_type() != ov.Type.u8 and images.ndim == 4:
            dims = [d.get_length() if d.is_static else 0 for d in model.inputs[0].get_partial_shape()]
            ppp = PrePostProcessor(model)
            ppp.input().tensor().set_element_type(ov.Type.u8 if images.dtype == np.uint8 else ov.Type.f32)
            ppp.input().tensor().set_layout(ov.Layout("NHWC"))
            ppp.input().model().set_layout(ov.Layout(onnx_layout(dims, images.shape).upper()))
            model = ppp.build()
        self.request = core.compile_model(model, "CPU", self.config).create_infer_request()
        self.dtype = images.dtype

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.request is None or images.dtype != self.dtype:
            self._compile(images)
        self.request.infer({0: np.ascontiguousarray(images if images.ndim == 4 else images.astype(np.float32))})
        return self.request.get_output_tensor(0).data.copy()
