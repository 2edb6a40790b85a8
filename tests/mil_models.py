"""Small PyTorch modules that make coremltools emit a wide spread of MIL ops, for interpreter tests."""

import torch
import torch.nn.functional as F
from torch import nn


class OpZoo(nn.Module):
    """Convolutions with every padding kind, pooling, resampling, normalization, attention-style
    matmuls and the elementwise ops the reference models use, in one NCHW image → tensor graph."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv_same = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_stride = nn.Conv2d(8, 8, 5, stride=2, padding=2)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.bn = nn.BatchNorm2d(8)
        self.prelu = nn.PReLU(8)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.shuffle = nn.Conv2d(8, 16, 1)
        self.norm = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(16 + 4, 5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = (x / 255.0 - 0.5) / 0.25
        a = F.relu(self.conv_same(x))                               # 32x32
        b = F.silu(self.bn(self.conv_stride(a)))                    # 16x16
        b = F.leaky_relu(self.depthwise(b), 0.1) + torch.sigmoid(self.dilated(b))
        b = self.prelu(b)
        c = F.max_pool2d(b, 2)                                      # 8x8
        d = F.avg_pool2d(b, 3, stride=2, padding=1, count_include_pad=False)  # 8x8
        e = torch.cat([c, d], dim=1)[:, :8]
        e = F.interpolate(e, scale_factor=2, mode="bilinear", align_corners=False)  # 16x16
        f = F.interpolate(c, scale_factor=2, mode="nearest") + self.up(c) + e
        g = F.pixel_shuffle(self.shuffle(f), 2)                     # 4ch, 32x32
        g = torch.tanh(g).clamp(-0.9, 0.9)
        tokens = F.adaptive_avg_pool2d(self.shuffle(f), 4).flatten(2).transpose(1, 2)  # (1, 16, 16)
        t = self.norm(tokens)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(-2, -1) * 0.25, dim=-1)
        t = t + self.proj(F.gelu(attn @ v))
        pooled = torch.cat([t.mean(dim=1), g.mean(dim=(2, 3))], dim=-1)
        return self.head(pooled)


class Palette(nn.Module):
    """A conv net whose weights take 16 distinct values per tensor: 4-bit palettization is lossless."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.c1 = nn.Conv2d(3, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, 4)
        with torch.no_grad():
            levels = torch.linspace(-0.3, 0.3, 16)
            for m in (self.c1, self.c2, self.fc):
                m.weight.copy_(levels[torch.randint(0, 16, m.weight.shape)])

    def forward(self, x):
        x = x / 255.0
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        return self.fc(x.mean(dim=(2, 3)))
