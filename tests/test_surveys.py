import numpy as np
import pytest

from mantis import surveys


def test_band_order_is_the_projects():
    assert [b.name for b in surveys.BANDS] == ["FUV", "NUV", "g", "r", "i", "z", "y", "W1", "W2"]
    assert [surveys.BAND_INDEX[b] for b in ("FUV", "W2")] == [0, 8]


def test_each_survey_lists_its_bands_in_band_order():
    flat = [b for s in surveys.SURVEYS.values() for b in s.bands]
    assert flat == [b.name for b in surveys.BANDS]
    for name, survey in surveys.SURVEYS.items():
        assert all(b.survey == name for b in surveys.bands_of(name))
        assert survey.pixel_scale > 0


@pytest.mark.parametrize("mag", [14.0, 18.5, 22.5, 25.0])
def test_magnitude_round_trip(mag):
    assert surveys.nanomaggies_to_mag(surveys.mag_to_nanomaggies(mag)) == pytest.approx(mag)
    assert surveys.mag_to_nanomaggies(22.5) == pytest.approx(1.0)


def test_ps1_counts_follow_the_stack_zero_point():
    exptime = 380.0
    mag = 19.0
    counts = 10 ** (-0.4 * (mag - 25.0 - 2.5 * np.log10(exptime)))
    flux = surveys.ps1_counts_to_nanomaggies(np.array([counts]), exptime)
    assert surveys.nanomaggies_to_mag(flux)[0] == pytest.approx(mag, abs=1e-5)
    # the rule quoted by the Legacy Survey viewer: nanomaggies = counts * 0.1 / EXPTIME
    assert flux[0] == pytest.approx(counts * 0.1 / exptime, rel=1e-6)


def test_unwise_vega_nanomaggies_gain_the_ab_offset():
    vega_mag = 15.0
    flux_vega = 10 ** (-0.4 * (vega_mag - 22.5))
    ab = surveys.nanomaggies_to_mag(surveys.unwise_vega_to_ab_nanomaggies(flux_vega, "W1"))
    assert ab == pytest.approx(vega_mag + 2.699, abs=1e-5)


def test_galex_counts_per_second_use_fixed_ab_zero_points():
    cps = 2.0
    for name, zp in (("FUV", 18.82), ("NUV", 20.08)):
        mag = surveys.nanomaggies_to_mag(surveys.galex_cps_to_nanomaggies(cps, name))
        assert mag == pytest.approx(zp - 2.5 * np.log10(cps), abs=1e-5)


def test_bad_names_are_named_in_the_error():
    with pytest.raises(KeyError, match=r"'u'.*allowed: FUV"):
        surveys.band("u")
    with pytest.raises(KeyError, match="'sdss'"):
        surveys.survey("sdss")
    with pytest.raises(ValueError, match="not a GALEX band"):
        surveys.galex_cps_to_nanomaggies(1.0, "g")
    with pytest.raises(ValueError, match="EXPTIME"):
        surveys.ps1_counts_to_nanomaggies(np.ones(2), 0.0)


def test_non_positive_flux_has_no_magnitude():
    assert np.isnan(surveys.nanomaggies_to_mag(np.array([0.0, -1.0]))).all()
