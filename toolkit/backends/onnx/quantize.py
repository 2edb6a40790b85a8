"""ONNX int8: static QDQ quantization of the float ONNX with ONNX Runtime's quantizer.

One implementation for both uses: the ``onnx`` ``int8`` target (for ONNX Runtime Mobile and QNN users) and the
int8 baseline ``skinkit bench`` times other int8 artifacts against. QuantizeLinear / DequantizeLinear pairs around
every quantized op (QDQ, the format ORT's CPU, XNNPACK and QNN execution providers fuse into int8 kernels), int8
weights with one symmetric scale per output channel, uint8 activations whose ranges are calibrated on the contract
inputs of the recipe's calibration images. I/O stay float32 in the device contract's layout and pixel range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.backends.onnx.qdq import weight_sources

# Min/max over every calibration image: every reference model's matrix recipe passes its gate with it (December 2026,
# 100 images). Percentile (99.999) passed the three it was tried on too, no better overall (acne_mobilenetv2 agreement
# 1.0 -> 0.99, acne_efficientnet_b0 0.99 -> 1.0, hydration_vit MAE drop 0.16 -> 0.08), and its histograms took 3-6x
# as long (acne_mobilenetv2, 64 images: 3.2 s -> 11.0 s).
CALIBRATION_METHOD = "MinMax"
ACTIVATION_TYPE = "QUInt8"  # ORT's choice for x86 and what QNN's HTP takes; ARM CPUs run it as well
WEIGHT_TYPE = "QInt8"  # symmetric, per output channel


def quantize_int8(float_path: Path, out_path: Path, calibration: np.ndarray, *,
                  input_range: tuple[float, float] | None = None, layers_only: bool = False) -> Path:
    """Write the QDQ int8 model of ``float_path`` to ``out_path``, calibrated on ``calibration`` (contract-shaped
    inputs, run one image at a time as exported). ``input_range``: the input's quantization range — the whole pixel
    range, not what the calibration images happened to reach, so a bright pixel never saturates (0-255 pixels then
    quantize exactly: scale 1, zero point 0). ``layers_only``: quantize the conv / linear / matmul layers with stored
    weights and keep every other op float (an instance segmenter's box decoding, suppression and RoIAlign sampling)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(float_path), load_external_data=False)
    graph = model.graph
    name = graph.input[0].name
    layers = [node.name for node, _, _ in weight_sources(model)] if layers_only else None

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(range(len(calibration)))

        def get_next(self):
            i = next(self.items, None)
            return None if i is None else {name: np.ascontiguousarray(calibration[i:i + 1], dtype=np.float32)}

    extra = {}
    if input_range:
        lo, hi = (np.float32(v) for v in input_range)
        extra["TensorQuantOverrides"] = {t: [{"rmin": lo, "rmax": hi}] for t in _input_views(graph)}
    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType[ACTIVATION_TYPE], weight_type=QuantType[WEIGHT_TYPE],
                    calibrate_method=CalibrationMethod[CALIBRATION_METHOD], nodes_to_quantize=layers, extra_options=extra)
    return out_path


_LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")


def _input_views(graph) -> list[str]:
    """The input and every tensor that is the input rearranged (an NHWC contract's transpose to the network's NCHW):
    the same pixel values, so the same quantization range; the quantizer places the first QuantizeLinear on one of them."""
    views = [graph.input[0].name]
    for node in graph.node:  # topological order
        if node.op_type in _LAYOUT_OPS and node.input and node.input[0] in views:
            views.append(node.output[0])
    return views
