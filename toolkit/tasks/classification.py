"""Classification: one logits output (N, classes); macro-F1, accuracy, per-class recall, calibration, agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import DataError
from toolkit.registry import DECISION_TOLERANCES
from toolkit.tasks import measures
from toolkit.tasks.base import Task

ECE_BINS = 15


class Classification(Task):
    name = "classification"
    headline = "macro_f1"
    agreement_label = "top-1 agreement with float"
    class_scores = True
    reads_as = "class scores over the labels"
    lower_is_better = ("calibration_error",)
    report_title = "Confusion matrices (rows: truth, columns: prediction)"
    default_tolerances = DECISION_TOLERANCES
    default_output = "logits"
    needs_labels = True

    def expected_shape(self, spec) -> tuple[int | None, ...]:
        return (len(spec.labels) or None,)

    def synthetic_problem(self, spec) -> str | None:
        from toolkit.data.synthetic import ACNE_GRADES

        if tuple(spec.labels) != ACNE_GRADES:
            return f"the synthetic images are labelled with the acne grades {', '.join(ACNE_GRADES)}, not {', '.join(spec.labels)}"
        return None

    def synthetic_target(self, sample, spec) -> int:
        return sample.acne_grade

    def stack_targets(self, targets: list) -> np.ndarray:
        return np.array(targets, np.int64)

    def targets_from(self, ref: np.ndarray) -> np.ndarray:
        return ref.argmax(-1).astype(np.int64)

    def folder_columns(self, spec) -> list[str]:
        return ["label"]

    def folder_target(self, row: dict, *, spec, folder: Path, where: str) -> int:
        raw = (row.get("label") or "").strip()
        if raw in spec.labels:
            return spec.labels.index(raw)
        if raw.isdigit() and int(raw) < len(spec.labels):
            return int(raw)
        raise DataError(f"{where}: label {raw!r} is not one of {', '.join(spec.labels)}", fix="use a class name or index")

    def folder_write(self, data, i: int, *, spec, folder: Path, name: str):
        return data.inputs[i], [spec.labels[int(data.targets[i])]]

    def loss(self, spec, model):
        import torch.nn.functional as F

        return lambda out, y: F.cross_entropy(out, y)

    def targets_tensor(self, targets: np.ndarray):
        import torch

        return torch.from_numpy(targets.astype(np.int64))

    def quick_metrics(self, out, targets, *, num_classes=0, output_names=()) -> dict[str, float]:
        pred = out.argmax(-1)
        return {"accuracy": measures.accuracy(pred, targets), "macro_f1": measures.macro_f1(pred, targets, num_classes)}

    def agreement(self, ref, out) -> float:
        return float(np.mean(ref.argmax(-1) == out.argmax(-1)))

    def per_image(self, out, targets, ref, *, labels=(), probabilities=False) -> dict[str, np.ndarray]:
        c = len(labels)
        pred, fpred = out.argmax(-1), ref.argmax(-1)
        prob = out if probabilities else measures.softmax(out.astype(np.float64))
        conf = prob.max(-1)
        correct = (pred == targets).astype(np.float64)
        bins = np.minimum((conf * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        onehot_bin = measures.onehot(bins, ECE_BINS)
        return {"pairs": measures.onehot(targets.astype(np.int64) * c + pred, c * c), "agree": (pred == fpred)[:, None] * 1.0,
                "bin_n": onehot_bin, "bin_conf": onehot_bin * conf[:, None], "bin_correct": onehot_bin * correct[:, None]}

    def aggregate(self, sums, *, labels=(), output_names=()) -> dict[str, np.ndarray]:
        div = measures.ratio
        c = len(labels)
        cm = sums["pairs"].reshape(-1, c, c)
        tp = np.einsum("rii->ri", cm)
        total = cm.sum((1, 2))
        rows, cols = cm.sum(2), cm.sum(1)
        denom = rows + cols
        f1 = div(2 * tp, denom)
        out = {"accuracy": div(tp.sum(1), total), "macro_f1": np.nanmean(np.where(denom > 0, f1, np.nan), axis=1),
               "agreement": div(sums["agree"][:, 0], total),
               "calibration_error": div(np.abs(sums["bin_correct"] - sums["bin_conf"]).sum(1), total)}
        recall = div(tp, rows)
        out.update({f"recall.{name}": recall[:, i] for i, name in enumerate(labels)})
        return out

    def extras(self, art_stats, float_stats, *, labels=()) -> dict:
        return {"confusion": {"artifact": confusion_matrix(art_stats, len(labels)),
                              "float": confusion_matrix(float_stats, len(labels)),
                              "changed": changed_predictions(float_stats, art_stats, len(labels))}}

    def report_lines(self, verification: dict, *, labels=()) -> list[str]:
        cm = (verification.get("confusion") or {}).get("artifact")
        if not cm:
            return []
        names = list(labels) or [str(i) for i in range(len(cm))]
        return ["| truth \\ prediction | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
                *(f"| {t} | " + " | ".join(str(v) for v in row) + " |" for t, row in zip(names, cm))]


def confusion_matrix(stats: dict[str, np.ndarray], num_classes: int) -> list[list[int]]:
    """Rows: ground truth; columns: prediction."""
    return stats["pairs"].sum(0).reshape(num_classes, num_classes).astype(int).tolist()


def changed_predictions(float_stats: dict[str, np.ndarray], art_stats: dict[str, np.ndarray], num_classes: int) -> list[list[int]]:
    """Rows: the float model's prediction; columns: the artifact's, per image (off the diagonal: a changed decision)."""
    c = num_classes
    before, after = float_stats["pairs"].argmax(1) % c, art_stats["pairs"].argmax(1) % c
    return np.bincount(before * c + after, minlength=c * c).reshape(c, c).astype(int).tolist()
