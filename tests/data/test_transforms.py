from __future__ import annotations

import itertools

import pytest
import torch
from torchvision import tv_tensors

from mantis.data import (
    DIHEDRAL_ORDER,
    ArcsinhStretch,
    RandomDihedral,
    dihedral,
    dihedral_inverse,
)


def _probe(size: int = 5) -> torch.Tensor:
    # every pixel distinct, so two transforms agree only if they are the same map
    return torch.arange(size * size, dtype=torch.float32).view(1, size, size)


def _element_of(image: torch.Tensor, reference: torch.Tensor) -> int:
    matches = [k for k in range(DIHEDRAL_ORDER) if torch.equal(dihedral(reference, k), image)]
    assert len(matches) == 1
    return matches[0]


def test_eight_distinct_elements_identity_first():
    probe = _probe()
    images = [dihedral(probe, k) for k in range(DIHEDRAL_ORDER)]
    assert torch.equal(images[0], probe)
    for a, b in itertools.combinations(images, 2):
        assert not torch.equal(a, b)


def test_closure_and_inverses_make_a_group():
    probe = _probe()
    for a, b in itertools.product(range(DIHEDRAL_ORDER), repeat=2):
        _element_of(dihedral(dihedral(probe, a), b), probe)  # closure: result is one of the 8
    for k in range(DIHEDRAL_ORDER):
        assert torch.equal(dihedral(dihedral(probe, k), dihedral_inverse(k)), probe)


def test_element_is_a_rotation_or_reflection_of_the_sky():
    # a quarter turn counter-clockwise moves the pixel right of centre to above it (row 0 is
    # the top of the array); a reflection swaps left and right
    image = torch.zeros(1, 3, 3)
    image[0, 1, 2] = 1.0
    assert dihedral(image, 1)[0, 0, 1] == 1.0
    assert dihedral(image, 4)[0, 1, 0] == 1.0


def test_rejects_elements_outside_the_group():
    with pytest.raises(ValueError, match=r"0\.\.7"):
        dihedral(_probe(), 8)


def test_random_dihedral_moves_all_surveys_and_masks_together():
    torch.manual_seed(1)
    ps1 = tv_tensors.Image(_probe(8).repeat(5, 1, 1))
    galex = tv_tensors.Image(_probe(3).repeat(2, 1, 1))
    ps1_valid = tv_tensors.Mask(ps1 > 20)
    galex_valid = tv_tensors.Mask(galex > 4)
    sample = {
        "image": {"ps1": ps1, "galex": galex},
        "valid": {"ps1": ps1_valid, "galex": galex_valid},
        "z": torch.tensor(0.5),
    }
    seen = set()
    for _ in range(60):
        out = RandomDihedral()(sample)
        k = _element_of(out["image"]["ps1"][:1], ps1[:1])
        seen.add(k)
        assert torch.equal(out["image"]["galex"], dihedral(galex, k))
        assert torch.equal(out["valid"]["ps1"], dihedral(ps1_valid, k))
        assert torch.equal(out["valid"]["galex"], dihedral(galex_valid, k))
        # the mask still marks the same pixel values after the move
        assert torch.equal(out["valid"]["ps1"], out["image"]["ps1"] > 20)
        assert out["z"] == 0.5
    assert seen == set(range(DIHEDRAL_ORDER))


def test_stretch_scales_noise_masks_invalid_and_appends_masks():
    stretch = ArcsinhStretch(2, factor=2.0)
    assert not stretch.fitted
    stretch.set_noise([0.5, 4.0])
    image = torch.tensor([[1.0, float("nan")], [4.0, 8.0]]).view(1, 2, 1, 2)
    valid = torch.tensor([[True, False], [True, True]]).view(1, 2, 1, 2)
    out = stretch(image, valid)
    assert out.shape == (1, 4, 1, 2)
    # band 0: softening 2 x 0.5 = 1; band 1: 2 x 4 = 8
    expected = torch.tensor([[torch.asinh(torch.tensor(1.0)), 0.0], [0.4812118, 0.8813736]])
    torch.testing.assert_close(out[0, :2, 0], expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(out[0, 2:, 0], valid[0, :, 0].float())


def test_stretch_rejects_bad_noise():
    with pytest.raises(ValueError, match="positive"):
        ArcsinhStretch(2).set_noise([1.0, 0.0])
    with pytest.raises(ValueError, match=r"\(2,\)"):
        ArcsinhStretch(2).set_noise([1.0])
