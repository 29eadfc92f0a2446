"""The GPU training presets: valid LightningCLI configurations whose networks run."""

from __future__ import annotations

import pytest
import torch

from mantis.config import config_file, load_yaml
from mantis.models import MantisCLI, list_models

PRESETS = ["train/gpu_convnext_t", "train/gpu_resnet18"]


@pytest.fixture(scope="module")
def grid32_h5(tmp_path_factory):
    """A synthetic dataset on the shipped 32-pixel early grid (ConvNeXt needs at least 32)."""
    from mantis.data.testing import write_synthetic_dataset

    path = tmp_path_factory.mktemp("grid32") / "synthetic.h5"
    return write_synthetic_dataset(path, 24, seed=0, sizes={"early": 32})


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_asks_for_bf16_on_a_gpu_with_a_registered_network(preset):
    settings = load_yaml(config_file(preset))
    assert settings["trainer"]["accelerator"] == "gpu"
    assert settings["trainer"]["precision"] == "bf16-mixed"
    assert settings["model"]["net"] in list_models("early_*")
    cpu_batch = load_yaml(config_file("train/early"))["data"]["batch_size"]
    assert settings["data"]["batch_size"] >= 4 * cpu_batch


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_and_runs_a_forward_pass_on_cpu(preset, grid32_h5, tmp_path):
    # the whole file goes through LightningCLI's parser (a typo there is refused); only the
    # device is changed, so that the model can be built here
    cli = MantisCLI(
        args=[
            f"--config={config_file(preset)}",
            f"--data.path={grid32_h5}",
            "--trainer.accelerator=cpu",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    assert cli.trainer.precision == "bf16-mixed"
    model = cli.model.eval()
    for group, sigma in cli.datamodule.noise_sigma().items():  # what training's setup does
        model.stretch[group].set_noise(sigma)
    spec = model.spec
    size = spec["grids"]["early"]["size"]
    shape = (2, spec["channels"]["early"], size, size)
    torch.manual_seed(0)
    image = {"early": torch.rand(shape)}
    valid = {"early": torch.ones(shape, dtype=torch.bool)}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(image, valid, torch.zeros(2, 1))
    assert logits.shape == (2, model.zgrid.n_bins)
    assert torch.isfinite(logits.float()).all()
