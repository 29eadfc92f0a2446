import gzip
import math

import numpy as np
import pytest
from astropy.io import fits
from stack_products import _aips_wcs, galex_fits, ps1_fits, ps1_header, unwise_tar

from mantis.stack._grids import TanProjection, pixel_to_sky, stack_projections
from mantis.stack._units import ProductError, read_galex, read_product, read_ps1, read_unwise


def _mag(total):
    return 22.5 - 2.5 * math.log10(total)


@pytest.mark.parametrize("exptime", [120.0, 1500.0])
@pytest.mark.parametrize("band_name", ["g", "y"])
def test_ps1_known_magnitude(tmp_path, band_name, exptime):
    path = tmp_path / f"x.{band_name}.fits"
    path.write_bytes(ps1_fits(150.0, 2.0, 18.3, band_name=band_name, exptime=exptime))
    plane = read_ps1(path)
    assert plane.band == band_name
    assert plane.valid.all() and plane.ivar is None
    assert abs(_mag(plane.flux.sum()) - 18.3) < 0.01


def test_ps1_asinh_compressed_file_is_linearised(tmp_path):
    header = ps1_header(150.0, 2.0, 40)
    linear = np.full((40, 40), 50.0)
    soften, offset = 3.0, 1.0
    a = 2.5 * math.log10(math.e)
    header["BSOFTEN"], header["BOFFSET"] = soften, offset
    compressed = a * np.arcsinh((linear - offset) / (2 * soften))
    path = tmp_path / "c.r.fits"
    fits.PrimaryHDU(compressed.astype(np.float64), header).writeto(path)
    plane = read_ps1(path)
    # 50 counts at EXPTIME 400 -> 50 * 0.1 / 400 nanomaggies
    np.testing.assert_allclose(plane.flux, 50 * 0.1 / 400, rtol=1e-5)


def test_ps1_nan_padding_is_masked_not_zero_flux(tmp_path):
    path = tmp_path / "x.r.fits"
    path.write_bytes(ps1_fits(150.0, 2.0, 18.0, nan_columns=30))
    plane = read_ps1(path)
    assert not plane.valid[:, -30:].any()
    assert plane.valid[:, :-30].all()
    assert np.isfinite(plane.flux).all()


def test_ps1_aips_pc_keywords_give_the_right_sky_positions(tmp_path):
    header = ps1_header(150.0, 2.0, 170)
    projection = TanProjection.from_header(header)
    x = np.array([[0.0, 50.5, 169.0]])
    y = np.array([[0.0, 80.0, 3.0]])
    ra, dec = pixel_to_sky(stack_projections([projection]), x, y)
    expected = _aips_wcs(header).all_pix2world(x[0], y[0], 0)
    np.testing.assert_allclose(np.degrees(ra[0]), expected[0], atol=1e-9)
    np.testing.assert_allclose(np.degrees(dec[0]), expected[1], atol=1e-9)


def test_ps1_missing_exptime_is_a_clear_error(tmp_path):
    header = ps1_header(150.0, 2.0, 10)
    del header["EXPTIME"]
    path = tmp_path / "x.r.fits"
    fits.PrimaryHDU(np.ones((10, 10), np.float32), header).writeto(path)
    with pytest.raises(ProductError, match="EXPTIME"):
        read_ps1(path)


def _with_card(body: bytes, keyword: bytes, card: bytes) -> bytes:
    """``body`` with the 80-character header card of ``keyword`` replaced by ``card``."""
    start = body.index(keyword.ljust(8))
    assert start % 80 == 0
    return body[:start] + card.ljust(80) + body[start + 80 :]


def test_an_unparsable_card_matters_only_where_it_is_read(tmp_path):
    body = ps1_fits(150.0, 2.0, 18.3)
    # a card nobody reads, added before END (the header keeps its 2880-byte block)
    end = body.index(b"END".ljust(80))
    extra = body[:end] + b"JUNK    = 1.5.0e3 / unparsable".ljust(80) + body[end : end + 80]
    unused = tmp_path / "unused.r.fits"
    unused.write_bytes(extra + body[end + 160 :])
    assert abs(_mag(read_product("ps1", [unused])[0].flux.sum()) - 18.3) < 0.01
    broken = tmp_path / "broken.r.fits"
    broken.write_bytes(_with_card(body, b"EXPTIME", b"EXPTIME = 1.5.0e3 / seconds"))
    with pytest.raises(ProductError, match=r"broken\.r\.fits"):
        read_product("ps1", [broken])


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "x.r.fits"
    path.write_bytes(ps1_fits(150.0, 2.0, 18.0)[:5000])
    with pytest.raises(ProductError, match=r"x\.r\.fits"):
        read_ps1(path)


def test_unwise_known_magnitudes_and_ivar(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(unwise_tar(150.0, 2.0, {"W1": 17.3, "W2": 16.1}))
    planes = read_unwise(path)
    assert [p.band for p in planes] == ["W1", "W2"]
    for plane, mag, offset in zip(planes, (17.3, 16.1), (2.699, 3.339), strict=True):
        assert abs(_mag(plane.flux.sum()) - mag) < 0.01
        # ivar 400 Vega-nmgy^-2 -> AB: flux scales by 10**(-0.4 offset), ivar by its inverse square
        np.testing.assert_allclose(plane.ivar, 400.0 * 10 ** (0.8 * offset), rtol=1e-5)


def test_unwise_text_error_body_is_a_clear_error(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"failed to parse request")
    with pytest.raises(ProductError, match=r"tar\.gz"):
        read_unwise(path)


def test_unwise_zero_coverage_pixels_are_masked(tmp_path):
    import io
    import tarfile

    path = tmp_path / "x.tar.gz"
    path.write_bytes(unwise_tar(150.0, 2.0, {"W1": 17.0, "W2": 17.0}))
    # rewrite the W1 n-m member with no exposures in its first 5 rows
    members = {}
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            members[info.name] = tar.extractfile(info).read()
    name = next(n for n in members if "-w1-n-m" in n)
    with fits.open(io.BytesIO(gzip.decompress(members[name]))) as hdul:
        counts = hdul[0].data.copy()
        counts[:5] = 0
        members[name] = gzip.compress(_to_bytes(fits.PrimaryHDU(counts, hdul[0].header)))
    from stack_products import tar_gz

    path.write_bytes(tar_gz(members))
    w1 = read_unwise(path)[0]
    assert not w1.valid[:5].any() and w1.valid[5:].all()
    assert (w1.ivar[:5] == 0).all()


def _to_bytes(hdu):
    import io

    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def test_galex_known_magnitudes_and_gap_mask(tmp_path):
    path = tmp_path / "x.fits"
    path.write_bytes(galex_fits(150.0, 2.0, {"FUV": 20.1, "NUV": 19.4}, gap_rows=3))
    planes = {p.band: p for p in read_galex(path)}
    assert set(planes) == {"FUV", "NUV"}
    for name, mag in (("FUV", 20.1), ("NUV", 19.4)):
        plane = planes[name]
        assert not plane.valid[:3].any() and plane.valid[3:].all()
        assert abs(_mag(plane.flux.sum()) - mag) < 0.01  # the gap rows hold no source flux


def test_galex_without_invvar_masks_zero_fill(tmp_path):
    path = tmp_path / "x.fits"
    path.write_bytes(galex_fits(150.0, 2.0, {"FUV": 20.1, "NUV": 19.4}, gap_rows=4, invvar=False))
    for plane in read_galex(path):
        assert plane.ivar is None
        assert not plane.valid[:4].any()
