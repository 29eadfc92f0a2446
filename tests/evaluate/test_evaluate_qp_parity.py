"""Cross-check of the density metrics against qp-prob on a few hundred random densities.

Where the definitions coincide the values agree to 1e-6:

- PIT: qp's ``hist`` parameterisation (piecewise-constant density, CDF linear in each bin);
- KS and CvM: scipy's one-sample tests on those PITs (statistic and p-value);
- AD: qp's k-sample Anderson–Darling against an evenly spaced grid on [0, 1];
- CDE loss: qp's ``CDELossMetric`` on an ``interp`` ensemble of the bin-centre densities
  (``norm=False``) evaluated on the bin centres.

They differ for the PIT outlier rate, which qp estimates from a 100-quantile summary of the PITs
while mantis counts PITs below 1e-4 or above 0.9999 directly.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

qp = pytest.importorskip("qp")

from qp.metrics.concrete_metric_classes import CDELossMetric  # noqa: E402
from qp.metrics.pit import PIT  # noqa: E402

from mantis.evaluate import density_metrics, score_densities  # noqa: E402
from mantis.evaluate.testing import gaussian_probs  # noqa: E402
from mantis.zgrid import ZGrid  # noqa: E402


def random_densities(seed: int, n: int, zgrid: ZGrid) -> tuple[np.ndarray, np.ndarray]:
    """Ragged, multimodal and spiky densities; some truths outside the grid."""
    rng = np.random.default_rng(seed)
    spiky = rng.gamma(0.3, size=(n, zgrid.n_bins))
    smooth = gaussian_probs(zgrid, rng.uniform(0, 1.6, n), rng.uniform(0.01, 0.3, n))
    second = gaussian_probs(zgrid, rng.uniform(0, 1.6, n), rng.uniform(0.01, 0.1, n))
    mix = rng.uniform(size=(n, 3))
    probs = (
        mix[:, :1] * spiky / spiky.sum(1, keepdims=True)
        + mix[:, 1:2] * smooth
        + mix[:, 2:] * second
    )
    probs /= probs.sum(axis=1, keepdims=True)
    z = rng.uniform(-0.05, 1.65, n)
    return probs, z


@pytest.fixture(scope="module")
def case():
    zgrid = ZGrid()
    probs, z = random_densities(7, 400, zgrid)
    ours = density_metrics(probs, z, zgrid)
    scores = score_densities(probs, z, zgrid)
    with warnings.catch_warnings():
        # qp calls scipy.stats.anderson_ksamp without `variant`, which scipy 1.17 deprecates,
        # and scipy warns when the AD p-value leaves its table.
        warnings.filterwarnings("ignore", message="Parameter `variant`", category=UserWarning)
        warnings.filterwarnings("ignore", message="p-value (capped|floored)", category=UserWarning)
        ensemble = qp.Ensemble(qp.hist, data={"bins": zgrid.edges, "pdfs": probs / zgrid.width})
        pit = PIT(ensemble, z)
        theirs = pit.calculate_pit_meta_metrics()
        theirs["pit"] = pit.pit_samps
        interp = qp.Ensemble(
            qp.interp,
            data={"xvals": zgrid.centres, "yvals": probs / zgrid.width, "norm": False},
        )
        theirs["cde_loss"] = CDELossMetric(eval_grid=zgrid.centres).evaluate(interp, z)
    return ours, scores, theirs


def test_pit_matches_qp_hist(case):
    _, scores, theirs = case
    np.testing.assert_allclose(scores["pit"], theirs["pit"], rtol=0, atol=1e-6)
    assert (theirs["pit"] == 0).any() and (theirs["pit"] == 1).any()  # truths off the grid


def test_ks_cvm_ad_match_qp(case):
    ours, _, theirs = case
    assert ours["ks"] == pytest.approx(theirs["ks"].statistic, abs=1e-6)
    assert ours["ks_pvalue"] == pytest.approx(theirs["ks"].pvalue, abs=1e-6)
    assert ours["cvm"] == pytest.approx(theirs["cvm"].statistic, abs=1e-6)
    assert ours["cvm_pvalue"] == pytest.approx(theirs["cvm"].pvalue, abs=1e-6)
    assert ours["ad"] == pytest.approx(theirs["ad"].statistic, abs=1e-6)


def test_cde_loss_matches_qp(case):
    ours, _, theirs = case
    assert ours["cde_loss"] == pytest.approx(theirs["cde_loss"], abs=1e-6)


def test_pit_outlier_rate_definitions_differ_but_agree_roughly(case):
    ours, scores, theirs = case
    direct = np.mean((scores["pit"] < 1e-4) | (scores["pit"] > 1 - 1e-4))
    assert ours["pit_outlier_rate"] == pytest.approx(direct)
    # qp's quantile-summary estimate is coarse (100 quantiles) but of the same size
    assert abs(ours["pit_outlier_rate"] - theirs["outlier_rate"]) < 0.05
