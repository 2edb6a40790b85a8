"""The device op table of Core AI programs."""

from __future__ import annotations

from toolkit.backends.base import OpSupport

# Apple publishes no Neural Engine op list for Core AI, and specialization to the Neural Engine runs only on
# macOS 27, so this table is derived: the ops of the Core ML Neural Engine table (toolkit.backends.coreml.ops)
# under their Core AI names (conv -> conv2d, real_div -> divide, matmul / linear -> batch_matmul, avg_pool ->
# sum_pool_2d, upsample / resize -> interpolate, squeeze -> shrink_dims, slice_by_* -> slice), each also in its
# broadcasting form. Constants and the load-time expansion of compressed weights run outside the graph.
ANE_OPS = OpSupport(
    "static, derived from the Core ML Neural Engine table (Apple publishes no Core AI list; shapes and sizes can "
    "still move an op off it)", frozenset("""
add sub mul divide maximum minimum pow sqrt rsqrt exp relu sigmoid tanh silu gelu erf softmax
broadcasting_add broadcasting_sub broadcasting_mul broadcasting_divide broadcasting_maximum broadcasting_minimum
broadcasting_pow broadcasting_batch_matmul batch_matmul conv2d conv_transpose2d
reduce_mean reduce_sum reduce_max reduce_min max_pool_2d sum_pool_2d interpolate
reshape transpose concat split slice expand_dims shrink_dims pad cast tile broadcast_to broadcast_in_dims
quantize dequantize
""".split()), outside_graph=("constant", "output", "lut_to_dense", "blockwise_shift_scale"))


def compute_units(ops: dict[str, int], precision_fp32: bool) -> dict:
    return ANE_OPS.eligibility(ops, float32=precision_fp32)
