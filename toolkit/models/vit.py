"""A skin-prior adaptive vision transformer for hydration and TEWL regression.

Tokens are pooled with attention whose logits carry a skin prior: a soft skin likelihood per patch,
computed in the graph from the patch's mean chroma (the YCbCr skin cluster), enters as ``log(prior)``.
Patches of hair, eyes or background thus barely contribute, whatever the face's position.
"""

from __future__ import annotations

import torch
from torch import nn

from toolkit.models._specs import IMAGENET_MEAN, IMAGENET_STD
from toolkit.registry import ModelSpec, OutputSpec, Tolerance, TrainingConfig, register_model


class SkinPrior(nn.Module):
    """Soft skin likelihood per patch from YCbCr chroma, on de-normalized [0, 1] RGB."""

    def __init__(self, patch: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.pool = nn.AvgPool2d(patch)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        # Cb, Cr rows of the BT.601 transform (offset 0.5 dropped: only distances matter).
        self.register_buffer("chroma", torch.tensor([[-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = self.pool(x * self.std + self.mean)  # (B, 3, h, w)
        b, _, h, w = rgb.shape
        rgb = rgb.flatten(2).transpose(1, 2)  # (B, N, 3)
        cbcr = rgb @ self.chroma.t()  # (B, N, 2)
        # Skin chroma clusters near Cb ≈ -0.08, Cr ≈ +0.08 across tones and lighting.
        d2 = ((cbcr[..., 0] + 0.08) / 0.07) ** 2 + ((cbcr[..., 1] - 0.08) / 0.07) ** 2
        return torch.exp(-0.5 * d2).clamp_min(1e-3)  # (B, N)


class Attention(nn.Module):
    """Multi-head self-attention written out (parameter names as ``nn.MultiheadAttention``'s).

    ``nn.MultiheadAttention`` switches to a fused kernel in eval mode, which TorchScript tracing cannot
    check and converters do not all know; plain matmul + softmax converts everywhere."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        # A constant, not computed from x.shape in forward(): graph tracers (torch.fx in the Core ML
        # quantizer) would otherwise see a traced float and try to observe it.
        self.scale = float((dim // heads) ** -0.5)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.out_proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(approximate="tanh"), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h)
        return x + self.mlp(self.norm2(x))


class SkinPriorViT(nn.Module):
    def __init__(
        self,
        num_outputs: int = 2,
        img_size: int = 224,
        patch: int = 16,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mean: tuple[float, ...] = (0.5, 0.5, 0.5),
        std: tuple[float, ...] = (0.25, 0.25, 0.25),
        output_scale: tuple[float, ...] = (1.0, 1.0),
        output_shift: tuple[float, ...] = (0.0, 0.0),
    ):
        super().__init__()
        n = (img_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, n, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.prior = SkinPrior(patch, mean, std)
        self.score = nn.Linear(dim, 1)
        self.head = nn.Linear(dim, num_outputs)
        # Targets are trained in standardized units; the graph returns physical units.
        self.register_buffer("out_scale", torch.tensor(output_scale))
        self.register_buffer("out_shift", torch.tensor(output_shift))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos
        tokens = self.norm(self.blocks(tokens))
        logits = self.score(tokens).squeeze(-1) + torch.log(self.prior(x))
        weights = torch.softmax(logits, dim=-1).unsqueeze(-1)
        pooled = (tokens * weights).sum(dim=1)
        return self.head(pooled) * self.out_scale + self.out_shift


def _hydration_vit() -> SkinPriorViT:
    # Standardize targets inside the graph: hydration ~ 55 ± 23 a.u., TEWL ~ 22 ± 7 g/m²/h.
    return SkinPriorViT(num_outputs=2, img_size=224, patch=16, dim=128, depth=4, heads=4,
                        mean=IMAGENET_MEAN, std=IMAGENET_STD, output_scale=(23.0, 7.0), output_shift=(55.0, 22.0))


register_model(ModelSpec(
    name="hydration_vit", task="regression", architecture="skin-prior adaptive ViT (patch 16, dim 128, depth 4)",
    factory=_hydration_vit, description="Skin hydration and transepidermal water loss from a face crop.",
    input_size=(224, 224),
    outputs=(OutputSpec("hydration", "skin hydration (corneometer-like)", "a.u."),
             OutputSpec("tewl", "transepidermal water loss", "g/m²/h")),
    # Absolute bounds: the outputs are physical quantities in fixed units, and their ranges differ (hydration
    # spans ~66 a.u., TEWL ~16 g/m²/h on the test split), so one relative bound would be loose on one, tight on the other.
    tolerances={
        "fp32": Tolerance(max_abs=0.01, min_cosine=0.99999, max_metric_drop=0.05),
        "fp16": Tolerance(max_abs=0.5, min_cosine=0.9999, max_metric_drop=0.2),
        "int8": Tolerance(min_cosine=0.995, max_metric_drop=1.0),
        "lowbit": Tolerance(min_cosine=0.99, max_metric_drop=2.0),
    },
    training=TrainingConfig(n_train=2400, n_val=300, epochs=6, batch_size=32, lr=1e-3),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="mae", higher_is_better=False,
))
