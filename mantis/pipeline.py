"""The whole chain on the simulated sky (what `make train` runs) or on a user's catalogue.

simulate the spec-z catalogue → serve the sky on loopback → fetch → build → train the early- and
late-fusion models → calibrate each on the validation split → evaluate each on the held-out split
(with baselines and survey ablations) → predict the held-out split into a prediction file.
With a ``catalog`` section instead of ``sky``, the user's table is read and split
(`mantis.pipeline_catalog`) and the cutouts come from the configured endpoints (the real
services by default); the rest of the chain is the same.
Every step is resumable on its own (the fetch skips finished cutouts, the build resumes from the
last chunk, training resumes from ``last.ckpt``), so a second run reuses everything it can.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mantis.config import cache_root, config_file, config_hash, load_settings, load_yaml
from mantis.exceptions import ConfigError, FetchError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PipelineConfig", "run_pipeline"]


class PipelineConfig(dict):
    """A validated pipeline configuration (shipped: ``default``, ``smoke``).

    ``source`` is the file it was read from; the training configs under ``models`` are
    resolved to files (a path as given, beside the pipeline file, or a shipped name such as
    ``train/early``), and so is ``catalog.path`` of a catalogue run, whose ``endpoints`` entry
    becomes ``endpoint`` (one base URL, or None) and ``endpoints`` (the validated settings).
    """

    source: Path
    endpoint: str | None = None  # a catalogue run: one base URL for every service
    endpoints: dict[str, Any] | None = None  # a catalogue run: the validated endpoints

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        """Read and validate a pipeline configuration file or shipped name.

        Raises
        ------
        ConfigError
            One line naming the file and the key that is unknown, missing or not allowed, or
            a training config that does not exist.
        """
        source = config_file(path)
        config = cls(load_settings("pipeline", source))
        config.source = source
        for model_name, model_config in config["models"].items():
            given, beside = Path(model_config), source.parent / model_config
            try:
                found = next((p for p in (given, beside) if p.is_file()), None)
                found = found or config_file(model_config)
            except ConfigError:
                raise ConfigError(
                    f"model {model_name!r}: training config {model_config!r} does not exist "
                    f"(as a path, beside {str(source)!r}, or shipped) [in {source}]"
                ) from None
            config["models"][model_name] = str(found)
        if "catalog" in config:
            from mantis.pipeline_catalog import catalog_source, fetch_endpoints

            config["catalog"]["path"] = str(catalog_source(config["catalog"], source))
            config.endpoint, config.endpoints = fetch_endpoints(config.get("endpoints"), source)
        return config

    @property
    def run_dir(self) -> Path:
        """Folder that receives everything this run leaves behind."""
        return Path(self["paths"]["runs"]) / self["name"]

    @property
    def cache_dir(self) -> Path:
        """Cutout cache shared by every run of the same sky (``<cache root>/cutouts`` default).

        Sky runs only: a catalogue run's cache depends on the catalogue
        (`mantis.pipeline_catalog.catalog_cache_dir`).
        """
        sky = self["sky"]
        name = sky["config"]
        is_path = Path(name).suffix in (".yaml", ".yml")
        raw = load_yaml(config_file(name if is_path else f"sky/{name}"))
        key = config_hash({"sky": raw, "seed": sky["seed"]})
        root = (
            Path(self["paths"]["cache"]) if "cache" in self["paths"] else cache_root() / "cutouts"
        )
        return root / f"{Path(name).stem if is_path else name}-{key}"


class _Timer:
    """Wall-clock seconds per step, written to ``timings.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        print(f"   {name}: {self.seconds[name]:.1f} s", flush=True)
        _write_json(self.path, self.seconds)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)


def _simulate_catalog(config: PipelineConfig, run_dir: Path) -> Path:
    from mantis.sky import Universe, write_catalog

    catalog_path = run_dir / "catalog.parquet"
    if not catalog_path.exists():
        universe = Universe.from_config(config["sky"]["config"], seed=config["sky"]["seed"])
        write_catalog(universe, catalog_path)
    return catalog_path


def _fetch(
    config: PipelineConfig,
    catalog_path: Path,
    cache_dir: Path,
    base_url: str | None,
    endpoints: dict[str, Any] | None = None,
) -> dict[str, int]:
    from mantis.catalog import read_catalog
    from mantis.fetch import fetch_catalog

    catalog = read_catalog(catalog_path)
    fetch_settings = config.get("fetch", {})
    summary = None
    for _attempt in range(2):  # one more pass picks up transient failures
        summary = fetch_catalog(
            catalog,
            cache_dir=cache_dir,
            endpoint=base_url,
            endpoints=endpoints,
            concurrency=fetch_settings.get("concurrency"),
            progress=fetch_settings.get("progress", True),
        )
        print(summary.format(), flush=True)
        if summary.ok:
            return {
                "requests": sum(summary.requests.values()),
                "products_skipped": sum(summary.skipped.values()),
            }
    raise FetchError(f"fetching left {summary.n_failed} products failed after two passes")


def _sky_inputs(config: PipelineConfig, run_dir: Path, timer: _Timer) -> tuple[Path, Path, dict]:
    """Simulate the catalogue and fetch its cutouts from the sky served on loopback."""
    from mantis.sky import running_server

    with timer.step("simulate catalogue"):
        catalog_path = _simulate_catalog(config, run_dir)
    server = config.get("server", {})
    with (
        timer.step("serve sky and fetch cutouts"),
        running_server(
            config=config["sky"]["config"],
            seed=config["sky"]["seed"],
            latency_ms=server.get("latency_ms", 0),
            fail_rate=server.get("fail_rate", 0.0),
        ) as base_url,
    ):
        fetched = _fetch(config, catalog_path, config.cache_dir, base_url)
    return catalog_path, config.cache_dir, fetched


def _catalog_inputs(
    config: PipelineConfig, catalog: pd.DataFrame, run_dir: Path, timer: _Timer
) -> tuple[Path, Path, dict]:
    """Keep the split catalogue in the run, then fetch its cutouts from the endpoints."""
    from mantis.pipeline_catalog import catalog_cache_dir, write_run_catalog
    from mantis.stack import SPLITS

    catalog_path = run_dir / "catalog.parquet"
    write_run_catalog(catalog, catalog_path)
    counts = catalog["split"].value_counts()
    print("   split: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS), flush=True)
    cache_dir = catalog_cache_dir(
        catalog, config.endpoints or {}, config.endpoint, config["paths"].get("cache")
    )
    with timer.step("fetch cutouts"):
        fetched = _fetch(config, catalog_path, cache_dir, config.endpoint, config.endpoints)
    return catalog_path, cache_dir, fetched


def _predict_split(checkpoint: Path, dataset_path: Path, split: str, out: Path) -> Path:
    """Write the densities of one split of the dataset as a `mantis predict` file."""
    import pandas as pd

    from mantis.predict import DatasetSource, predict_catalog
    from mantis.stack import DatasetReader

    objects = dataset_path.with_name(f"{split}_objects.parquet")
    if not objects.exists():  # the dataset's objects never change within a run
        with DatasetReader(dataset_path) as reader:
            table = pd.DataFrame(reader.catalog(["id", "ra", "dec", "z", "split"]))
        tmp = objects.with_name(objects.name + ".tmp")
        table[table["split"] == split].drop(columns="split").to_parquet(tmp, index=False)
        tmp.replace(objects)
    predict_catalog(
        objects, out, checkpoint=checkpoint, source=DatasetSource(str(dataset_path)),
        progress=False,
    )  # fmt: skip
    return out


def run_pipeline(config_path: str | Path) -> dict[str, Any]:
    """Run the whole chain described by a pipeline configuration.

    Parameters
    ----------
    config_path : str or Path
        A pipeline file, or the name of a shipped one (``'default'``, ``'smoke'``).

    Returns
    -------
    dict
        Metrics of the evaluated split per model (and ablation), also written to
        ``runs/<name>/metrics.json`` with a readable ``summary.md``; each model's densities of
        that split go to ``runs/<name>/<model>/predictions_<split>.parquet``.
    """
    config = PipelineConfig.load(config_path)
    user_catalog = None
    if "catalog" in config:  # checked before the run folder is made
        from mantis.pipeline_catalog import read_run_catalog

        user_catalog = read_run_catalog(config["catalog"], Path(config["catalog"]["path"]))

    from mantis.evaluate import calibrate_run, evaluate_ablations, evaluate_run
    from mantis.models import train_model
    from mantis.pipeline_report import write_summary
    from mantis.stack import build_dataset

    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "pipeline.yaml").write_text(config.source.read_text())
    timer = _Timer(run_dir / "timings.json")

    build_config: str | dict[str, Any] = config.get("build", {}).get("config", "build")
    if user_catalog is not None:
        from mantis.pipeline_catalog import build_settings

        catalog_path, cache_dir, fetched = _catalog_inputs(config, user_catalog, run_dir, timer)
        build_config = build_settings(build_config, config["catalog"]["split"])
    else:
        catalog_path, cache_dir, fetched = _sky_inputs(config, run_dir, timer)
    steps = {"fetch": fetched}
    dataset_path = run_dir / "dataset.h5"
    with timer.step("build dataset"):
        summary = build_dataset(catalog_path, cache_dir, dataset_path, build_config)
        steps["build"] = {"built": summary.n_built, "skipped": summary.n_skipped}
        print(f"   built {summary.n_built} objects, {summary.n_skipped} already in the dataset")
    _write_json(run_dir / "steps.json", steps)

    truth_path = catalog_path.with_name(f"{catalog_path.stem}.truth.parquet")
    split = config.get("evaluate", {}).get("split", "test")
    results: dict[str, Any] = {}
    for model_name, train_config in config["models"].items():
        with timer.step(f"train {model_name}"):
            checkpoint = train_model(train_config, dataset_path, run_dir / model_name)
        with timer.step(f"calibrate {model_name}"):
            calibrate_run(checkpoint, dataset_path)  # beside the checkpoint, where it is found
        with timer.step(f"evaluate {model_name}"):
            results[model_name] = evaluate_run(
                checkpoint,
                dataset_path,
                run_dir / model_name / "evaluation",
                split=split,
                truth=truth_path if truth_path.exists() else None,
            )
            ablations = config.get("evaluate", {}).get("ablations", [])
            results[model_name]["without"] = evaluate_ablations(
                checkpoint, dataset_path, split=split, surveys=ablations
            )
        with timer.step(f"predict {model_name} ({split})"):
            out = run_dir / model_name / f"predictions_{split}.parquet"
            _predict_split(checkpoint, dataset_path, split, out)
    _write_json(run_dir / "metrics.json", results)
    write_summary(results, run_dir / "summary.md", timings=timer.seconds)
    print(f"== done: {run_dir / 'summary.md'}", flush=True)
    return results
