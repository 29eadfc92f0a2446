"""Body validation: truncation anywhere, error pages, empty and NaN products."""

from __future__ import annotations

import gzip
import io
import tarfile

import numpy as np
import pytest
from astropy.io import fits

from mantis.fetch._galex import galex_cube_is_empty
from mantis.fetch._panstarrs import check_ps1_cutout, parse_filenames_table
from mantis.fetch._validate import InvalidBodyError, check_fits, check_unwise_tar, fits_image


def _two_hdus() -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(
        [
            fits.PrimaryHDU(np.arange(600, dtype=">f4").reshape(20, 30)),
            fits.ImageHDU(np.ones((5, 7), dtype=">i2")),
        ]
    ).writeto(buffer)
    return buffer.getvalue()


def test_complete_fits_reads_back_its_pixels():
    body = _two_hdus()
    hdus = check_fits(body)
    assert len(hdus) == 2
    np.testing.assert_array_equal(fits_image(body, hdus[0]), np.arange(600).reshape(20, 30))
    assert fits_image(body, hdus[1]).shape == (5, 7)


def test_every_truncation_inside_an_hdu_is_caught():
    body = _two_hdus()
    hdus = check_fits(body)
    ends = {h.data_start + -(-h.data_bytes // 2880) * 2880 for h in hdus}
    for cut in range(1, len(body), 97):
        if cut in ends:
            continue  # cut exactly between HDUs: a valid shorter file (galex counts HDUs)
        with pytest.raises(InvalidBodyError) as info:
            check_fits(body[:cut])
        assert info.value.reason == "truncated body"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<!DOCTYPE html><html><body>Maintenance</body></html>", "HTML instead of data"),
        (b"failed to parse request\n", "text error behind HTTP 200"),
        (b"", "empty body"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a FITS or gzip body"),
    ],
)
def test_non_products_are_named(body, reason):
    for check in (check_fits, check_unwise_tar):
        with pytest.raises(InvalidBodyError) as info:
            check(body)
        assert info.value.reason == reason


def _tar(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


def test_unwise_archive_checks():
    image = _two_hdus()
    good = _tar(
        {
            "unwise-1497p015-w1-img-m.fits": image,
            "unwise-1497p015-w1-invvar-m.fits.gz": gzip.compress(image),
        }
    )
    assert check_unwise_tar(good) == [
        "unwise-1497p015-w1-img-m.fits",
        "unwise-1497p015-w1-invvar-m.fits.gz",
    ]
    assert check_unwise_tar(_tar({})) == []  # no tile: the fetcher records no coverage
    for cut in (len(good) // 3, len(good) - 5):
        with pytest.raises(InvalidBodyError, match="truncated body"):
            check_unwise_tar(good[:cut])
    inner_cut = _tar({"unwise-1497p015-w1-img-m.fits": image[:-2880]})
    with pytest.raises(InvalidBodyError, match="truncated body"):
        check_unwise_tar(inner_cut)
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.full((4, 4), np.nan, np.float32)).writeto(buffer)
    with pytest.raises(InvalidBodyError, match="all-NaN cutout"):
        check_unwise_tar(_tar({"unwise-1497p015-w2-img-m.fits": buffer.getvalue()}))


def test_ps1_cutout_rules():
    buffer = io.BytesIO()
    data = np.full((8, 8), np.nan, np.float32)
    fits.PrimaryHDU(data).writeto(buffer)
    with pytest.raises(InvalidBodyError, match="all-NaN cutout"):
        check_ps1_cutout(buffer.getvalue())
    data[3, 3] = 1.0  # one finite pixel: a skycell edge, kept
    buffer = io.BytesIO()
    fits.PrimaryHDU(data).writeto(buffer)
    check_ps1_cutout(buffer.getvalue())


def test_galex_empty_cube_means_exact_zeros_only():
    def body(cube):
        buffer = io.BytesIO()
        fits.PrimaryHDU(cube.astype(np.float32)).writeto(buffer)
        return buffer.getvalue()

    assert galex_cube_is_empty(body(np.zeros((2, 4, 4))))
    partial = np.zeros((2, 4, 4))
    partial[1, 0, 0] = 1e-4
    assert not galex_cube_is_empty(body(partial))


def test_filenames_table_parsing():
    text = (
        "projcell subcell ra dec filter mjd type filename shortname badflag\n"
        "1725 51 10.7 41.2 g 0.0 stack /rings.v3.skycell/1725/051/x.g.fits x.g.fits 0\n"
    )
    (row,) = parse_filenames_table(text)
    assert row["filename"] == "/rings.v3.skycell/1725/051/x.g.fits" and row["filter"] == "g"
    assert parse_filenames_table(text.splitlines()[0]) == []  # south of the footprint
    with pytest.raises(InvalidBodyError, match="HTML instead of data"):
        parse_filenames_table("<html><body>Service down</body></html>")
    with pytest.raises(InvalidBodyError, match="truncated body"):
        parse_filenames_table(text[:-30])
