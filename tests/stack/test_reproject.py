import math

import numpy as np
import pytest
from astropy.wcs import WCS
from stack_products import (
    galex_fits,
    ps1_fits,
    tan_cd_header,
    tar_gz,
    unwise_tar,
    unwise_tile_members,
)

from mantis.stack._grids import (
    Grid,
    object_projection,
    pixel_to_sky,
    sky_to_pixel,
    stack_projections,
)
from mantis.stack._reproject_fast import reproject_planes, reproject_planes_to_grids
from mantis.stack._reproject_ref import reproject_planes_reference
from mantis.stack._stitch import stitch_tiles
from mantis.stack._units import read_galex, read_ps1, read_unwise

# high declination so that the PS1 projection-cell frame is rotated about a degree from north
RA, DEC = 210.4, 58.3
NATIVE = {"ps1": Grid(0.25, 128), "galex": Grid(1.5, 24), "unwise": Grid(2.75, 16)}
EARLY = Grid(1.0, 32)


def _planes(tmp_path, survey_name):
    if survey_name == "ps1":
        path = tmp_path / "x.i.fits"
        path.write_bytes(ps1_fits(RA, DEC, 16.0, band_name="i"))
        return [read_ps1(path)]
    if survey_name == "unwise":
        path = tmp_path / "x.tar.gz"
        path.write_bytes(unwise_tar(RA, DEC, {"W1": 15.0, "W2": 15.0}))
        return read_unwise(path)
    path = tmp_path / "x.fits"
    path.write_bytes(galex_fits(RA, DEC, {"FUV": 17.0, "NUV": 17.0}))
    return read_galex(path)


def _both(planes, grid):
    targets = [object_projection(RA, DEC, grid)] * len(planes)
    fast = reproject_planes(planes, targets, grid.shape)
    ref = reproject_planes_reference(planes, targets, grid.shape)
    return fast, ref


@pytest.mark.parametrize("survey_name", ["ps1", "galex", "unwise"])
@pytest.mark.parametrize("target", ["native", "early"])
def test_fast_path_agrees_with_reproject(tmp_path, survey_name, target):
    planes = _planes(tmp_path, survey_name)
    grid = NATIVE[survey_name] if target == "native" else EARLY
    fast, ref = _both(planes, grid)
    for k, plane in enumerate(planes):
        truth = plane.flux.sum()
        assert abs(fast.image[k].sum() / ref.image[k].sum() - 1) < 0.01
        # flux conservation: the grids hold (nearly) the whole source
        assert abs(fast.image[k].sum() / truth - 1) < 0.01
        assert abs(ref.image[k].sum() / truth - 1) < 0.01
        rms = np.sqrt(np.mean((fast.image[k] - ref.image[k]) ** 2))
        assert rms < 0.02 * ref.image[k].max()
        np.testing.assert_array_equal(fast.valid[k], ref.valid[k])
        if plane.ivar is not None:
            np.testing.assert_allclose(fast.ivar[k], ref.ivar[k], rtol=0.01)


@pytest.mark.parametrize("survey_name", ["ps1", "galex", "unwise"])
@pytest.mark.parametrize("size", [31, 32])
def test_object_lands_at_grid_centre(tmp_path, survey_name, size):
    planes = _planes(tmp_path, survey_name)
    grid = Grid({"ps1": 0.25, "galex": 1.5, "unwise": 2.75}[survey_name], size)
    image = reproject_planes(planes, [object_projection(RA, DEC, grid)] * len(planes), grid.shape)
    yy, xx = np.mgrid[:size, :size]
    for k in range(len(planes)):
        im = image.image[k]
        centre = (size - 1) / 2
        assert abs((im * xx).sum() / im.sum() - centre) < 0.1
        assert abs((im * yy).sum() / im.sum() - centre) < 0.1


def test_object_grid_is_north_up_and_centred():
    grid = Grid(1.0, 33)
    wcs = WCS(object_projection(RA, DEC, grid).to_header())
    x, y = wcs.world_to_pixel_values(RA, DEC)
    assert abs(x - 16) < 1e-9 and abs(y - 16) < 1e-9
    # one pixel up is 1 arcsec north; one pixel left is 1 arcsec east
    _, dec_up = wcs.pixel_to_world_values(16, 17)
    ra_left, _ = wcs.pixel_to_world_values(15, 16)
    assert dec_up - DEC == pytest.approx(1 / 3600, rel=1e-6)
    assert (ra_left - RA) * math.cos(math.radians(DEC)) == pytest.approx(1 / 3600, rel=1e-4)


def test_tan_transforms_match_astropy():
    projection = object_projection(RA, DEC, Grid(2.75, 16))
    header = tan_cd_header((RA - 0.6, DEC + 0.4), (900.3, -40.0), 2.75, 10, 10)
    from mantis.stack._grids import TanProjection

    other = TanProjection.from_header(header)
    x = np.array([[-0.5, 3.2, 15.5]])
    y = np.array([[-0.5, 9.1, 15.5]])
    ra, dec = pixel_to_sky(stack_projections([projection]), x, y)
    sx, sy = sky_to_pixel(stack_projections([other]), ra, dec)
    world = projection.to_wcs().pixel_to_world_values(x[0], y[0])
    ex, ey = WCS(header).world_to_pixel_values(*world)
    np.testing.assert_allclose(sx[0], ex, atol=1e-7)
    np.testing.assert_allclose(sy[0], ey, atol=1e-7)


def test_nan_padded_edge_is_masked_in_both_paths(tmp_path):
    path = tmp_path / "x.r.fits"
    path.write_bytes(ps1_fits(RA, DEC, 16.0, nan_columns=60))  # skycell edge west of centre
    planes = [read_ps1(path)]
    fast, ref = _both(planes, EARLY)
    for result in (fast, ref):
        valid = result.valid[0]
        assert valid.any() and not valid.all()
        assert (result.image[0][~valid] == 0).all()
        # the masked side is the one beyond the NaN columns (east is left, so x grows west)
        assert not valid[:, -1].any() and valid[:, 0].all()
    np.testing.assert_array_equal(fast.valid, ref.valid)


def test_grid_beyond_the_cutout_is_masked(tmp_path):
    planes = _planes(tmp_path, "galex")  # 32 px x 1.5" = 48": a 60" grid overhangs it
    grid = Grid(1.0, 60)
    result = reproject_planes(planes, [object_projection(RA, DEC, grid)] * 2, grid.shape)
    assert not result.valid[:, 0, :].any() and result.valid[:, 30, 30].all()
    # a wholly valid cutout's coverage comes from its bounds, not a validity table
    reference = reproject_planes_reference(
        planes, [object_projection(RA, DEC, grid)] * 2, grid.shape
    )
    np.testing.assert_array_equal(result.valid, reference.valid)


def test_two_clipped_unwise_tiles_stitch_to_the_whole_source(tmp_path):
    centre_a, centre_b = (RA - 0.8, DEC), (RA + 0.8, DEC)
    mags = {"W1": 15.0}
    # object near the east edge of tile A (its last columns) and the west edge of tile B
    wa = WCS(tan_cd_header(centre_a, (1024.5, 1024.5), 2.75, 1, 1))
    wb = WCS(tan_cd_header(centre_b, (1024.5, 1024.5), 2.75, 1, 1))
    xa, ya = (round(float(v)) for v in wa.all_world2pix(RA, DEC, 0))
    xb, yb = (round(float(v)) for v in wb.all_world2pix(RA, DEC, 0))
    box_a = (xa - 16, ya - 16, xa + 3, ya + 16)  # clipped: ends 3 px west of the object
    box_b = (xb - 2, yb - 16, xb + 16, yb + 16)  # clipped: starts 2 px east of it
    members = unwise_tile_members(RA, DEC, mags, tile_centre=centre_a, box=box_a, coadd="a")
    members |= unwise_tile_members(RA, DEC, mags, tile_centre=centre_b, box=box_b, coadd="b")
    path = tmp_path / "two.tar.gz"
    path.write_bytes(tar_gz(members))
    planes = read_unwise(path)
    assert len(planes) == 2 and planes[0].shape != planes[1].shape
    grid = Grid(2.75, 16)
    result = reproject_planes(planes, [object_projection(RA, DEC, grid)] * 2, grid.shape)
    assert not result.valid[0].all() and not result.valid[1].all()
    image, valid, ivar = stitch_tiles(result.image, result.valid, result.ivar)
    assert valid.all()
    assert (ivar > 0).all()
    expected = 10 ** (-0.4 * (15.0 - 22.5))
    assert abs(image.sum() / expected - 1) < 0.01
    # compare with a single unclipped tile
    single = read_unwise_single(tmp_path, mags)
    whole = reproject_planes(single, [object_projection(RA, DEC, grid)], grid.shape)
    rms = np.sqrt(np.mean((whole.image[0] - image) ** 2))
    assert rms < 0.02 * whole.image[0].max()


def read_unwise_single(tmp_path, mags):
    path = tmp_path / "one.tar.gz"
    path.write_bytes(unwise_tar(RA, DEC, mags))
    return read_unwise(path)


def test_batched_call_equals_one_by_one(tmp_path):
    planes = _planes(tmp_path, "ps1") + _planes(tmp_path, "unwise") + _planes(tmp_path, "galex")
    targets = [object_projection(RA, DEC, EARLY)] * len(planes)
    batch = reproject_planes(planes, targets, EARLY.shape)
    for k, plane in enumerate(planes):
        single = reproject_planes([plane], [targets[k]], EARLY.shape)
        np.testing.assert_allclose(batch.image[k], single.image[0], rtol=1e-5, atol=1e-9)
        np.testing.assert_array_equal(batch.valid[k], single.valid[0])


def test_several_grids_share_tables_and_keep_the_order(tmp_path):
    masked = tmp_path / "m.r.fits"
    masked.write_bytes(ps1_fits(RA, DEC, 16.0, nan_columns=60))
    # planes alike in validity and variance are batched together; results keep input order
    planes = [
        *_planes(tmp_path, "unwise"),
        read_ps1(masked),
        *_planes(tmp_path, "ps1"),
        *_planes(tmp_path, "galex"),
    ]
    native = [object_projection(RA, DEC, NATIVE["galex"])] * len(planes)
    early = [object_projection(RA, DEC, EARLY)] * len(planes)
    both = reproject_planes_to_grids(
        planes, [(native, NATIVE["galex"].shape), (early, EARLY.shape)]
    )
    for result, targets, grid in zip(both, (native, early), (NATIVE["galex"], EARLY), strict=True):
        for k, plane in enumerate(planes):
            alone = reproject_planes([plane], [targets[k]], grid.shape)
            np.testing.assert_allclose(result.image[k], alone.image[0], rtol=1e-6, atol=1e-9)
            np.testing.assert_array_equal(result.valid[k], alone.valid[0])
            np.testing.assert_allclose(result.ivar[k], alone.ivar[0], rtol=1e-6)
    assert not both[1].valid[2].all() and both[1].valid[3].all()  # the masked PS1 plane
    with pytest.raises(ValueError, match="2 target projections"):
        reproject_planes_to_grids(planes, [(native[:2], (4, 4))])
