"""Training samples/s and inference galaxies/s per registered preset, and the default models'
inference throughput against the ConvNeXt-L preset on the earlier system's 9x120x120 input.

Every timing is the median of repeated runs, all taken in this one process, so the ratios
compare like with like on this (shared, noisy) machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mantis.models import create_model, list_models

EARLY_SIZE = 32  # default early-fusion grid: 1.0"/px, 32 px
LATE_SIZES = {"galex": 24, "ps1": 128, "unwise": 16}
LATE_BANDS = {"galex": 2, "ps1": 5, "unwise": 2}
N_Z = 400
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "models.json"


def build(name: str, *, early_chans: int = 18, early_size: int = EARLY_SIZE):
    if name.startswith("early_"):
        model = create_model(name, in_chans=early_chans, n_z=N_Z, size=early_size)

        def inputs(batch: int) -> dict[str, torch.Tensor]:
            return {"early": torch.randn(batch, early_chans, early_size, early_size)}
    else:
        chans = {s: 2 * b for s, b in LATE_BANDS.items()}
        model = create_model(name, in_chans=chans, n_z=N_Z, sizes=LATE_SIZES)

        def inputs(batch: int) -> dict[str, torch.Tensor]:
            return {
                s: torch.randn(batch, c, LATE_SIZES[s], LATE_SIZES[s]) for s, c in chans.items()
            }

    return model, inputs


def median_rate(step, n_items: int, repeats: int) -> float:
    step()  # warm-up: allocations and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return n_items / statistics.median(times)


def train_rate(model, inputs, batch: int, repeats: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, ebv = inputs(batch), torch.zeros(batch, 1)
    target = torch.randint(N_Z, (batch,))

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x, ebv), target).backward()
        optimizer.step()

    return median_rate(step, batch, repeats)


def infer_rate(model, inputs, batch: int, repeats: int) -> float:
    model.eval()
    x, ebv = inputs(batch), torch.zeros(batch, 1)

    @torch.no_grad()
    def step() -> None:
        torch.softmax(model(x, ebv), dim=1)

    return median_rate(step, batch, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name in list_models():
        large = name == "early_convnext_large"
        batch = 4 if large else args.batch
        model, inputs = build(name)
        n_params = sum(p.numel() for p in model.parameters())
        rows.append(
            {
                "model": name,
                "params_M": n_params / 1e6,
                "train_samples_per_s": train_rate(model, inputs, batch, args.repeats),
                "infer_galaxies_per_s": infer_rate(model, inputs, batch, args.repeats),
            }
        )
        print(f"{name:22s} {rows[-1]}", flush=True)
        del model

    # the earlier system's model on its own input against our defaults on theirs
    large, large_inputs = build("early_convnext_large", early_chans=9, early_size=120)
    small120, small120_inputs = build("early_small", early_chans=18, early_size=120)
    comparison = {
        "early_convnext_large@9x120x120": infer_rate(large, large_inputs, 4, args.repeats),
        "early_small@18x120x120": infer_rate(small120, small120_inputs, 16, args.repeats),
    }
    by_name = {r["model"]: r for r in rows}
    comparison["early_small@default"] = by_name["early_small"]["infer_galaxies_per_s"]
    comparison["late_small@default"] = by_name["late_small"]["infer_galaxies_per_s"]
    base = comparison["early_convnext_large@9x120x120"]
    ratios = {k: v / base for k, v in comparison.items()}

    print(f"\n{'model':24s} {'params (M)':>10s} {'train samples/s':>16s} {'infer gal/s':>12s}")
    for r in rows:
        print(
            f"{r['model']:24s} {r['params_M']:10.2f} {r['train_samples_per_s']:16.1f} "
            f"{r['infer_galaxies_per_s']:12.1f}"
        )
    print(f"\n{'inference':32s} {'galaxies/s':>10s} {'x ConvNeXt-L':>12s}")
    for key, value in comparison.items():
        print(f"{key:32s} {value:10.1f} {ratios[key]:12.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "repeats": args.repeats,
        "presets": rows,
        "inference_vs_convnext_large": {"galaxies_per_s": comparison, "ratio": ratios},
    }
    tmp = RESULTS.with_name(RESULTS.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(RESULTS)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
