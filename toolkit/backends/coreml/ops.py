"""The device op tables of Core ML programs."""

from __future__ import annotations

from toolkit.backends.base import OpSupport

# MIL ops the Neural Engine executes (float16 only). Everything else, and every op of a float32
# program, falls back to the GPU or CPU, splitting the graph. Constants and the classifier's label
# lookup run outside the graph.
ANE_OPS = OpSupport("static: op types the Neural Engine executes (shapes and sizes can still move an op off it)", frozenset("""
add sub mul real_div maximum minimum pow sqrt rsqrt exp relu relu6 clip sigmoid sigmoid_hard tanh silu gelu prelu
leaky_relu softmax conv conv_transpose linear matmul batch_norm instance_norm layer_norm l2_norm reduce_mean reduce_sum
reduce_max reduce_min max_pool avg_pool upsample_nearest_neighbor upsample_bilinear resize_bilinear pixel_shuffle
pixel_unshuffle reshape transpose concat split slice_by_index slice_by_size squeeze expand_dims pad cast tile
quantize dequantize
""".split()), outside_graph=("const", "classify"), outside_prefixes=("constexpr_",))


def compute_units(ops: dict[str, int], precision_fp32: bool) -> dict:
    return ANE_OPS.eligibility(ops, float32=precision_fp32)
