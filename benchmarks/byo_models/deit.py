"""DeiT-Tiny and DeiT-Small in plain PyTorch, at their published widths.

Touvron et al., "Training data-efficient image transformers & distillation through attention", ICML
2021 (arXiv:2012.12877), Table 1: a ViT (Dosovitskiy et al., ICLR 2021, arXiv:2010.11929) with
16 x 16 patches embedded to 192 dimensions by a strided convolution, a class token and learned
position embeddings, 12 pre-norm encoder blocks (LayerNorm, 3-head self-attention with a biased
qkv projection, LayerNorm, a 4x GELU MLP, each with a residual), a final LayerNorm and a linear head
on the class token. LayerNorm epsilon 1e-6. 5.7 M parameters with 1000 classes at 224 x 224. DeiT-S is
the same network at 384 dimensions with 6 heads (ViT-S/16): 22.1 M parameters.

Both are without the distillation token. Attention is written out (matmul, softmax,
matmul) by default; ``fused_attention=True`` calls ``F.scaled_dot_product_attention`` instead, as timm
does where it can (Core ML iOS18 programs then hold one fused attention op). The position
embeddings fix the input size: ``img_size`` must be a multiple of 16.

Use in a recipe as ``benchmarks/byo_models/deit.py:deit_tiny`` (or ``:deit_small``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, fused: bool = False):
        super().__init__()
        self.heads = heads
        self.fused = fused
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, fused_attention: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, fused_attention)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, img_size: int = 224, patch: int = 16, dim: int = 192, depth: int = 12, heads: int = 3, num_classes: int = 4,
                 fused_attention: bool = False):
        super().__init__()
        if img_size % patch:
            raise ValueError(f"img_size {img_size} is not a multiple of the patch size {patch}")
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, fused_attention=fused_attention) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def deit_tiny(num_classes: int = 4, img_size: int = 224, fused_attention: bool = False) -> VisionTransformer:
    """DeiT-Ti: patch 16, dim 192, depth 12, 3 heads, for ``img_size`` x ``img_size`` inputs."""
    return VisionTransformer(img_size=img_size, patch=16, dim=192, depth=12, heads=3, num_classes=num_classes,
                             fused_attention=fused_attention)


def deit_small(num_classes: int = 4, img_size: int = 224, fused_attention: bool = False) -> VisionTransformer:
    """DeiT-S (ViT-S/16): patch 16, dim 384, depth 12, 6 heads, for ``img_size`` x ``img_size`` inputs."""
    return VisionTransformer(img_size=img_size, patch=16, dim=384, depth=12, heads=6, num_classes=num_classes,
                             fused_attention=fused_attention)
