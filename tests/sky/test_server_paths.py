"""Every path and parameter rule of the imitation server, over HTTP, against a point-source sky."""

from __future__ import annotations

import asyncio
import io
import tarfile

import aiohttp
import numpy as np
import pytest
from astropy.io import fits

from mantis.sky._coverage import ps1_skycell_at
from mantis.sky._formats import PS1_FILENAMES_HEADER
from mantis.sky.testing import point_source_universe, serving_in_process

SKY = point_source_universe(seed=0)
RA, DEC = 150.1, 2.2
CELL = ps1_skycell_at(RA, DEC)
RED = CELL.filename("r")


def get(*requests, **settings):
    """Send (method, path, kwargs) requests in order; return (status, content type, body)."""

    async def main():
        async with (
            serving_in_process(SKY, **settings) as url,
            aiohttp.ClientSession() as session,
        ):
            answers = []
            for method, path, kwargs in requests:
                async with session.request(method, url + path, **kwargs) as response:
                    answers.append((response.status, response.content_type, await response.read()))
            return answers

    return asyncio.run(main())


def one(path, **params):
    return get(("GET", path, {"params": params}))[0]


# ------------------------------------------------------------------------------------- PS1


def table_rows(body):
    lines = body.decode().splitlines()
    header = lines[0].split()
    assert " ".join(header) == PS1_FILENAMES_HEADER
    return [dict(zip(header, line.split(), strict=True)) for line in lines[1:]]


def test_ps1filenames_get_lists_one_row_per_filter():
    status, ctype, body = one("/cgi-bin/ps1filenames.py", ra=RA, dec=DEC, filters="grizy")
    assert (status, ctype) == (200, "text/plain")
    rows = table_rows(body)
    assert [r["filter"] for r in rows] == list("grizy")
    assert {r["projcell"] for r in rows} == {str(CELL.projcell)}
    assert all(r["filename"] == CELL.filename(r["filter"]) for r in rows)


def test_ps1filenames_defaults_and_types():
    rows = table_rows(one("/cgi-bin/ps1filenames.py", ra=RA, dec=DEC)[2])
    assert [r["filter"] for r in rows] == list("grizy") and {r["type"] for r in rows} == {"stack"}
    rows = table_rows(one("/cgi-bin/ps1filenames.py", ra=RA, dec=DEC, filters="g",
                          type="stack,stack.wt")[2])  # fmt: skip
    assert [r["type"] for r in rows] == ["stack", "stack.wt"]
    assert rows[1]["filename"].endswith(".stk.g.unconv.wt.fits")


def test_ps1filenames_south_of_minus_30_is_header_only():
    status, _, body = one("/cgi-bin/ps1filenames.py", ra=10.0, dec=-35.0)
    assert status == 200 and table_rows(body) == []


def test_ps1filenames_post_with_a_file_of_positions():
    form = aiohttp.FormData()
    form.add_field("file", b"ra dec\n150.1 2.2\n10.0 -45.0\n\n53.1 45.0\n", filename="pos.txt")
    form.add_field("filters", "gr")
    form.add_field("type", "stack")
    status, _, body = get(("POST", "/cgi-bin/ps1filenames.py", {"data": form}))[0]
    rows = table_rows(body)
    assert status == 200 and len(rows) == 4  # the dec -45 line adds nothing
    assert rows[0]["projcell"] == str(CELL.projcell)
    assert rows[2]["projcell"] == str(ps1_skycell_at(53.1, 45.0).projcell)


def test_ps1filenames_skycell_parameter():
    rows = table_rows(one("/cgi-bin/ps1filenames.py", skycell=f"{CELL.projcell}.{CELL.subcell:03d}",
                          filters="y")[2])  # fmt: skip
    assert [r["filename"] for r in rows] == [CELL.filename("y")]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"dec": "2.2"}, 400, "ra and dec are required"),
        ({"ra": "x", "dec": "2.2"}, 400, "ra='x' is not a number"),
        ({"ra": "150", "dec": "95"}, 400, "dec=95.0 is outside [-90, 90]"),
        ({"ra": "150", "dec": "2", "filters": "gq"}, 400, "holds 'q'; allowed: g r i z y"),
        ({"ra": "150", "dec": "2", "type": "warp"}, 400, "type='warp' is not served"),
        ({"skycell": "12.x"}, 400, "is not a skycell"),
    ],
)
def test_ps1filenames_bad_requests(params, status, message):
    got_status, _, body = one("/cgi-bin/ps1filenames.py", **params)
    assert got_status == status and message in body.decode()


def test_fitscut_fits_answer():
    status, ctype, body = one("/cgi-bin/fitscut.cgi", red=RED, ra=RA, dec=DEC, size=64,
                              format="fits")  # fmt: skip
    assert (status, ctype) == (200, "image/fits")
    hdus = fits.open(io.BytesIO(body))
    assert len(hdus) == 1 and hdus[0].data.shape == (64, 64)
    assert hdus[0].header["SKYCELL"] == CELL.name
    # parameter names are case-insensitive, as in the HLA fitscut wrapper
    assert one("/cgi-bin/fitscut.cgi", RED=RED, RA=RA, Dec=DEC, Size=64, FORMAT="fits")[2] == body


def test_fitscut_without_format_fits_answers_a_jpeg():
    status, ctype, body = one("/cgi-bin/fitscut.cgi", red=RED, ra=RA, dec=DEC, size=32)
    assert (status, ctype) == (200, "image/jpeg") and body[:3] == b"\xff\xd8\xff"
    status, ctype, body = one("/cgi-bin/fitscut.cgi", red=RED, ra=RA, dec=DEC, size=32,
                              format="png")  # fmt: skip
    assert ctype == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"ra": RA, "dec": DEC}, 400, "red=<filename> is required"),
        ({"red": "/nope.fits", "ra": RA, "dec": DEC}, 404, "file not found"),
        ({"red": RED.replace(".r.", ".q."), "ra": RA, "dec": DEC}, 404, "file not found"),
        ({"red": RED}, 400, "ra and dec are required"),
        ({"red": RED, "ra": RA, "dec": DEC, "size": "big"}, 400, "size='big' is not an integer"),
        ({"red": RED, "ra": RA, "dec": DEC, "size": 0}, 400, "outside 1..2400"),
        ({"red": RED, "ra": RA, "dec": DEC, "format": "gif"}, 400, "not one of fits, jpg, png"),
    ],
)
def test_fitscut_bad_requests(params, status, message):
    got_status, _, body = one("/cgi-bin/fitscut.cgi", **params)
    assert got_status == status and message in body.decode()


# ---------------------------------------------------------------------------------- unWISE


def tar_names(body):
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return tar.getnames()


def test_unwise_defaults_serve_all_four_files_of_w1_and_w2():
    status, ctype, body = one("/cutout_fits", ra=150.02, dec=1.51)
    assert (status, ctype) == (200, "application/x-compressed") and body[:2] == b"\x1f\x8b"
    names = tar_names(body)
    assert len(names) == 8 and names[0] == "unwise-1500p015-w1-img-m.fits"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        data = fits.getdata(tar.extractfile(names[0]))
    assert data.shape == (100, 100)  # default size


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"file_img_m": "on"}, ["img-m.fits"]),
        ({"file_invvar_m": "0"}, ["invvar-m.fits.gz"]),  # any value but 'false' means True
        ({"file_img_m": "false", "file_n_m": "1"}, ["n-m.fits.gz"]),
        ({"file_std_m": "true", "file_img_m": "True"}, ["img-m.fits", "std-m.fits.gz"]),
    ],
)
def test_unwise_file_flags_follow_django_boolean_rules(flags, expected):
    names = tar_names(one("/cutout_fits", ra=150.02, dec=1.51, bands="1", **flags)[2])
    assert [n.split("-w1-")[1] for n in names] == expected


def test_unwise_size_clamp_bands_and_version():
    body = one("/cutout_fits", ra=150.02, dec=1.51, size=5000, bands="1234", file_img_m="1")[2]
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = tar.getnames()
        assert fits.getdata(tar.extractfile(names[0])).shape == (1024, 1024)
    assert [n.split("-")[2] for n in names] == ["w1", "w2"]  # neo7: W3/W4 dropped
    sexagesimal = one("/cutout_fits", ra="10:00:24", dec="+01:30:36", size=10, bands="2",
                      file_img_m="1", version="allwise")  # fmt: skip
    assert sexagesimal[0] == 200 and tar_names(sexagesimal[2]) == ["unwise-1500p015-w2-img-m.fits"]


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"ra": "150", "dec": "2", "version": "neo99"}, 200, "failed to parse request"),
        ({"dec": "2"}, 200, "RA and Dec arguments are required"),
        ({"ra": "150"}, 200, "RA and Dec arguments are required"),
        ({"ra": "abc", "dec": "2"}, 200, "failed to parse request"),
        ({"ra": "150", "dec": "2", "size": "1.5"}, 200, "failed to parse request"),
    ],
)
def test_unwise_errors_are_text_with_http_200(params, status, text):
    got_status, ctype, body = one("/cutout_fits", **params)
    assert (got_status, ctype, body.decode()) == (status, "text/html", text)
    assert body[:2] != b"\x1f\x8b"  # what clients test to tell an error from a tar.gz


def test_unwise_non_digit_bands_is_http_500():
    status, ctype, _ = one("/cutout_fits", ra=150, dec=2, bands="w1")
    assert (status, ctype) == (500, "text/html")


def test_unwise_trailing_slash_is_the_same_endpoint():
    a = one("/cutout_fits", ra=150.02, dec=1.51, size=8, bands="1")
    b = one("/cutout_fits/", ra=150.02, dec=1.51, size=8, bands="1")
    assert a == b and a[0] == 200


# ----------------------------------------------------------------------------------- GALEX


@pytest.mark.parametrize("path", ["/viewer/fits-cutout", "/viewer/cutout.fits"])
def test_galex_viewer_defaults(path):
    status, ctype, body = one(path, ra=RA, dec=DEC + 0.3, layer="galex")
    assert (status, ctype) == (200, "image/fits")
    hdus = fits.open(io.BytesIO(body))
    assert len(hdus) == 1 and hdus[0].data.shape == (2, 256, 256)
    assert hdus[0].header["BANDS"] == "nf" and hdus[0].header["CD2_2"] * 3600 == pytest.approx(1.5)


def test_galex_viewer_geometry_bands_and_invvar():
    body = one("/viewer/fits-cutout", ra=RA, dec=DEC + 0.3, layer="galex", width=40, height=30,
               pixscale=3.0, bands="f", invvar="")[2]  # fmt: skip
    hdus = fits.open(io.BytesIO(body))
    assert [h.data.shape for h in hdus] == [(30, 40), (30, 40)]
    assert hdus[0].header["BANDS"] == "f" and hdus[0].header["CRPIX1"] == 20.5
    assert hdus[0].header["CD2_2"] * 3600 == pytest.approx(3.0)
    wide = one("/viewer/fits-cutout", ra=RA, dec=DEC + 0.3, layer="galex", width=5000, height=2,
               bands="n")[2]  # fmt: skip
    assert fits.getdata(io.BytesIO(wide)).shape == (2, 3000)  # width and height clamp to 3000


def test_galex_hole_gives_zeros_and_no_overlap_gives_500():
    body = one("/viewer/fits-cutout", ra=150.5, dec=3.0, layer="galex", size=600, invvar=1)[2]
    hdus = fits.open(io.BytesIO(body))
    hole = hdus[1].data[0] == 0
    assert 0.05 < hole.mean() < 0.95 and np.all(hdus[0].data[:, hole] == 0)
    status, ctype, body = one("/viewer/fits-cutout", ra=150.5, dec=3.0, layer="galex", size=20)
    assert (status, ctype) == (500, "text/html") and b"NoOverlapError" in body


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"layer": "galex", "dec": "2"}, 400, "Need ra,dec keywords"),
        ({"ra": "150", "dec": "2.5"}, 200, "no such layer"),  # default layer ls-dr9
        ({"ra": "150", "dec": "2.5", "layer": "sdss9"}, 200, "no such layer"),
        ({"ra": "150", "dec": "2.5", "layer": "galex", "bands": "nx"}, 400, "no band 'x'"),
        ({"ra": "east", "dec": "2.5", "layer": "galex"}, 500, "ra='east' is not a number"),
        ({"ra": "150", "dec": "2.5", "layer": "galex", "size": "xl"}, 500, "ValueError"),
    ],
)
def test_galex_viewer_bad_requests(params, status, text):
    got_status, _, body = one("/viewer/fits-cutout", **params)
    assert got_status == status and text in body.decode()


def test_unknown_path_is_404():
    assert one("/cgi-bin/nothing.py")[0] == 404


def test_fitscut_near_a_skycell_edge_is_nan_padded_over_http():
    # 10 pixels inside the skycell's own area, so the listing names it; the cutout reaches
    # past the 240-pixel overlap into pixels that this skycell does not hold
    x = CELL.x0 + 240 + 10
    ra, dec = (float(v) for v in CELL.projcell_wcs().all_pix2world(x, 30000.0, 0))
    rows = table_rows(one("/cgi-bin/ps1filenames.py", ra=ra, dec=dec, filters="z")[2])
    assert rows[0]["filename"] == CELL.filename("z")
    body = one("/cgi-bin/fitscut.cgi", red=rows[0]["filename"], ra=ra, dec=dec, size=600,
               format="fits")[2]  # fmt: skip
    data = fits.getdata(io.BytesIO(body))
    assert np.isnan(data[:, :50]).all() and np.isfinite(data[:, 50:]).all()


def test_unwise_overlap_answers_two_clipped_tiles_over_http():
    body = one("/cutout_fits", ra=150.0, dec=2.25, size=100, bands="1", file_img_m="1")[2]
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = tar.getnames()
        shapes = [fits.getdata(tar.extractfile(name)).shape for name in names]
    assert sorted(names) == ["unwise-1500p015-w1-img-m.fits", "unwise-1500p030-w1-img-m.fits"]
    assert all(shape[0] < 100 and shape[1] == 100 for shape in shapes)


SCRIPT = "<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/viewer/fits-cutout", {"ra": SCRIPT, "dec": "2.5", "layer": "galex"}),  # HTML 500 page
        ("/viewer/fits-cutout", {"ra": "150", "dec": "2.5", "layer": "galex", "bands": SCRIPT}),
        ("/cutout_fits", {"ra": "150", "dec": "2", "bands": SCRIPT}),  # Django 500
    ],
)
def test_reflected_values_in_html_error_pages_are_escaped(path, params):
    status, ctype, body = one(path, **params)
    assert status >= 400 and ctype == "text/html"
    assert b"<script>" not in body
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
