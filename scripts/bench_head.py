"""What the density head refit buys, and what the images add to the photometry.

Takes a trained early- or late-fusion checkpoint (its head reading aperture photometry) and
its dataset, and scores on the validation and test splits (density mean, `point_metrics`):

* **as trained**: the checkpoint's own head, as `mantis train` left it before any refit;
* **refit**: the head refit on the frozen encoder's features (`mantis.models.refit_head`, the
  settings of ``model.head_refit`` or ``--epochs``);
* **photometry alone**: a freshly initialised head of the same shape, trained the same way on
  the same objects with the image features set to zero, so that it sees only the photometry
  and E(B-V): an MLP photo-z on the kNN baseline's features. The gap between it and **refit**
  is what the pixels add beyond their aperture photometry.

Usage: ``python scripts/bench_head.py CHECKPOINT DATASET [--epochs 32]``; writes
``bench/results/head.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _scores(module, datamodule, split: str) -> dict[str, float]:
    import torch

    from mantis.evaluate import point_metrics

    means, truths = [], []
    with torch.no_grad():
        for batch in datamodule.split_dataloader(split):
            probs = module.predict_log_probs(batch["image"], batch["valid"], batch["ebv"]).exp()
            means.append((probs * module.centres.double()).sum(dim=1))
            truths.append(batch["z"])
    metrics = point_metrics(torch.cat(means).numpy(), torch.cat(truths).numpy())
    return {k: round(float(metrics[k]), 4) for k in ("nmad", "outlier_rate_015", "bias_median")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument(
        "--epochs", type=int, default=None, help="refit epochs (default: the checkpoint's)"
    )
    args = parser.parse_args(argv)
    for label, path in (("checkpoint", args.checkpoint), ("dataset", args.dataset)):
        if not path.is_file():
            print(f"bench_head: {label} {str(path)!r} does not exist", file=sys.stderr)
            return 2

    import torch

    from mantis.data import MantisDataModule
    from mantis.models import load_predictor, read_checkpoint, refit_head

    torch.manual_seed(0)
    stored = read_checkpoint(args.checkpoint)
    settings = dict(stored["hyper_parameters"].get("head_refit") or {})
    settings = {"lr": 3e-3, "weight_decay": 1e-4, "seed": 0, **settings}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if not settings.get("epochs"):
        settings["epochs"] = 32
    module = load_predictor(args.checkpoint).module.eval()
    if module.net.photometry is None:
        print("bench_head: the checkpoint's head reads no photometry", file=sys.stderr)
        return 2
    datamodule = MantisDataModule(str(args.dataset), fusion=module.spec["fusion"])
    datamodule.setup()
    result: dict[str, dict] = {"settings": settings}
    # a head already refit by training is first taken back to the trained one
    if (stored["mantis"].get("head_refit") or {}).get("kept"):
        print("bench_head: the checkpoint's head was already refit; 'as trained' is that head")
    for name in ("as trained", "refit", "photometry alone"):
        if name == "photometry alone":
            zeros = module.net.image_features
            module.net.image_features = lambda inputs, f=zeros: torch.zeros_like(f(inputs))
            for layer in module.net.head.modules():
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
        if name != "as trained":
            result[name] = {"refit": refit_head(module, datamodule, **settings)}
        else:
            result[name] = {}
        result[name] |= {s: _scores(module, datamodule, s) for s in ("val", "test")}
        print(f"{name:18s} val {result[name]['val']}  test {result[name]['test']}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "head.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
