"""``skinkit train MODEL``: train a reference model on synthetic data, on the CPU, in minutes.

The checkpoint (safetensors) and a JSON card with the seed, the command and the held-out float
metrics are written side by side; the same command and seed reproduce them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from toolkit._io import output_error
from toolkit.progress import step as reporting_step
from toolkit.registry import ModelSpec
from toolkit.tasks import get_task

WEIGHTS_DIR = Path(__file__).parent / "models" / "weights"


def evaluate(model, spec: ModelSpec, data, batch_size: int = 32) -> dict[str, float]:
    import torch

    from toolkit.load.contract import to_network_input
    from toolkit.outputs import name_outputs

    task = get_task(spec.task)
    names = tuple(o.name for o in spec.outputs)
    model.eval()
    batches = []
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            batches.append(name_outputs(model(to_network_input(data.inputs[i:i + batch_size], spec)), names))
    outputs = {n: np.concatenate([b[n].numpy() for b in batches]) for n in names}
    return task.quick_metrics(task.read(outputs, spec), data.targets, num_classes=len(spec.labels), output_names=names)


def train(spec: ModelSpec, *, out_dir: Path = Path("trained"), seed: int | None = None, threads: int | None = None,
          epochs: int | None = None, n_train: int | None = None, progress=None, checkpoint: Path | None = None,
          command: str | None = None) -> dict:
    """Train ``spec``'s network from scratch; the weights go to ``checkpoint`` (default ``out_dir/<name>.safetensors``)
    with a JSON card beside them. The shipped weights (``WEIGHTS_DIR``) are written only when named."""
    import torch
    from safetensors.torch import save_file

    from toolkit.load.contract import to_network_input
    from toolkit.tasks.data import task_data

    cfg = spec.training
    seed = cfg.seed if seed is None else seed
    epochs = cfg.epochs if epochs is None else epochs
    n_train = cfg.n_train if n_train is None else n_train
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    t0 = time.perf_counter()
    train_set = task_data(spec, n_train, split="train", seed=seed)
    test_set = task_data(spec, cfg.n_val, split="test", seed=seed)
    t_data = time.perf_counter() - t0

    model = spec.factory()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = epochs * ((n_train + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    task = get_task(spec.task)
    loss_fn = task.loss(spec, model)
    targets = task.targets_tensor(train_set.targets)
    gen = torch.Generator().manual_seed(seed)
    history = []
    batches = (n_train + cfg.batch_size - 1) // cfg.batch_size
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen).numpy()
        total = 0.0
        with reporting_step("train", f"epoch {epoch + 1}/{epochs}", total=batches, unit="batches") as step:
            for b in range(0, n_train, cfg.batch_size):
                idx = order[b:b + cfg.batch_size]
                x = to_network_input(train_set.inputs[idx], spec)
                loss = loss_fn(task.training_outputs(model, x), targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                step.advance(message=f"loss {total / min(b + len(idx), n_train):.4f}")
            history.append(total / n_train)
            step.finish(f"loss {history[-1]:.4f}")
        if progress:
            progress(epoch + 1, epochs, history[-1])
    metrics = evaluate(model, spec, test_set)
    elapsed = time.perf_counter() - t0

    checkpoint = checkpoint or out_dir / f"{spec.name}.safetensors"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = checkpoint.with_name(f".{checkpoint.name}.tmp")
    try:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp), metadata={"model": spec.name, "seed": str(seed)})
        os.chmod(tmp, 0o644)
        os.replace(tmp, checkpoint)
    except OSError as exc:
        raise output_error(checkpoint.parent, exc) from None
    card = {
        "model": spec.name,
        "architecture": spec.architecture,
        "command": f"{command or f'skinkit train {spec.name}'} --seed {seed}",
        "seed": seed,
        "data": {"generator": "toolkit.data.synthetic", "train": {"split": "train", "n": n_train},
                 "held_out": {"split": "test", "n": cfg.n_val}, **_masking(spec)},
        "training": {"epochs": epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": "AdamW + one-cycle",
                     "loss_per_epoch": [round(v, 5) for v in history]},
        "held_out_float_metrics": {k: round(v, 5) for k, v in metrics.items()},
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "seconds": {"data": round(t_data, 1), "total": round(elapsed, 1)},
        "torch": torch.__version__,
    }
    checkpoint.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _masking(spec: ModelSpec) -> dict:
    """What the card says of a masked-input spec's data (nothing for a spec that sees whole photos)."""
    from toolkit.data.masking import JITTERED_SPLITS, KEY, MAX_JITTER_PX, masked_fill

    fill = masked_fill(spec)
    if fill is None:
        return {}
    return {KEY: {"fill": fill.tolist(), "mask": "the generator's skin mask at input resolution (nearest)",
                  "jitter": f"{', '.join(JITTERED_SPLITS)} split: erosion or dilation by 0-{MAX_JITTER_PX} px "
                            "(elliptical kernel, seeded per image); held-out split: the exact mask"}}
