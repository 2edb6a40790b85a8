"""The reference skin models; each architecture file registers its model's spec next to the network.

Widths are reduced from the published architectures so that each model trains on a 2-core CPU in
minutes and ships as a checkpoint of a few MB; the block structure (and so the conversion and
quantization behaviour) is the published one.
"""

from __future__ import annotations

from toolkit.models import efficientnet, maskrcnn, mobilenetv2, resnet, segmenter, srgan, unet, vit  # noqa: F401 (registers each spec)
