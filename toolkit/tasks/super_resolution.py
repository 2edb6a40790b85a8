"""Super-resolution: one RGB image output in [0, 1] (N, 3, H, W; channel-last in the artifact like the
input); PSNR and SSIM against the high-resolution truth, PSNR against float."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.registry import Tolerance
from toolkit.tasks import measures
from toolkit.tasks.base import Task


class SuperResolution(Task):
    name = "super_resolution"
    headline = "psnr"

    reads_as = "an RGB image"
    default_output = "hr_image"
    # PSNR drops in dB, whatever the model.
    default_tolerances = {"fp32": Tolerance(min_cosine=0.99999, max_metric_drop=0.05),
                          "fp16": Tolerance(min_cosine=0.9999, max_metric_drop=0.3),
                          "int8": Tolerance(min_cosine=0.999, max_metric_drop=0.5),
                          "lowbit": Tolerance(min_cosine=0.998, max_metric_drop=1.0)}
    SYNTHETIC_MAX = 156  # the largest high-resolution crop the synthetic face (224 px, offset up to 68) gives

    def expected_shape(self, spec) -> tuple[int | None, ...]:
        return (3, *(spec.output_size or (None, None)))

    def synthetic_problem(self, spec) -> str | None:
        if spec.output_size and max(spec.output_size) > self.SYNTHETIC_MAX:
            return (f"the synthetic high-resolution crops are at most {self.SYNTHETIC_MAX} px, "
                    f"not {spec.output_size[0]}×{spec.output_size[1]}")
        return None

    def synthetic_example(self, spec, *, seed: int, split: str, index: int, labelled: bool = True):
        """A high-resolution crop centred on the face (mostly skin, with pores, lesions and wrinkles) and
        its area-downsampled input."""
        import cv2

        from toolkit.data.synthetic import make_sample

        hr_h, hr_w = spec.output_size
        sample = make_sample(seed, split, index, size=224)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 99, index]))
        oy, ox = 48 + int(rng.integers(-20, 21)), 48 + int(rng.integers(-20, 21))
        hr = sample.image[oy:oy + hr_h, ox:ox + hr_w]
        lr = cv2.resize(hr, spec.input_size[::-1], interpolation=cv2.INTER_AREA)
        skin = cv2.resize(sample.skin_mask[oy:oy + hr_h, ox:ox + hr_w], spec.input_size[::-1], interpolation=cv2.INTER_NEAREST)
        return sample, lr, hr, skin

    def folder_example(self, image, row: dict, *, spec, folder: Path, where: str):
        """The folder's image is the high-resolution truth; the input is its area-downsampled copy."""
        import cv2

        (h, w), (oh, ow) = spec.input_size, spec.output_size
        hr = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_AREA)
        return cv2.resize(hr, (w, h), interpolation=cv2.INTER_AREA), hr

    def folder_write(self, data, i: int, *, spec, folder: Path, name: str):
        return data.targets[i], []

    def loss(self, spec, model):
        import torch.nn.functional as F

        return lambda out, y: F.l1_loss(out, y)

    def targets_from(self, ref: np.ndarray) -> np.ndarray:
        """The float model's image, as the uint8 channel-last image a high-resolution target is."""
        return np.round(np.clip(np.transpose(ref, (0, 2, 3, 1)), 0.0, 1.0) * 255.0).astype(np.uint8)

    def targets_tensor(self, targets: np.ndarray):
        import torch

        return torch.from_numpy(targets).permute(0, 3, 1, 2).float() / 255.0

    def quick_metrics(self, out, targets, *, num_classes=0, output_names=()) -> dict[str, float]:
        hr = targets.astype(np.float64) / 255.0  # N x H x W x 3
        return {"psnr": measures.psnr(np.transpose(out, (0, 2, 3, 1)), hr)}

    def per_image(self, out, targets, ref, *, labels=(), probabilities=False) -> dict[str, np.ndarray]:
        n = len(out)
        sr = np.clip(np.transpose(out, (0, 2, 3, 1)).astype(np.float64), 0.0, 1.0)
        fl = np.clip(np.transpose(ref, (0, 2, 3, 1)).astype(np.float64), 0.0, 1.0)
        hr = targets.astype(np.float64) / 255.0

        def _psnr(a, b):
            mse = np.maximum(np.mean((a - b).reshape(n, -1) ** 2, axis=1), 1e-12)
            return 10.0 * np.log10(1.0 / mse)

        return {"psnr": _psnr(sr, hr)[:, None], "psnr_f": _psnr(sr, fl)[:, None],
                "ssim": np.array([[measures.ssim(sr[i], hr[i])] for i in range(n)]), "one": np.ones((n, 1))}

    def aggregate(self, sums, *, labels=(), output_names=()) -> dict[str, np.ndarray]:
        div = measures.ratio
        n = sums["one"][:, 0]
        return {"psnr": div(sums["psnr"][:, 0], n), "ssim": div(sums["ssim"][:, 0], n),
                "psnr_vs_float": div(sums["psnr_f"][:, 0], n)}
