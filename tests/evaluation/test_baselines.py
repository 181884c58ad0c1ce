"""Deconvolution baselines: the beam's size and orientation, Wiener deconvolution, the best balance."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from deepscope.errors import DataError
from deepscope.evaluation.baselines import beam_from_header, beam_kernel, best_wiener, wiener_deconvolve, zeros_psnr
from deepscope.metrics import psnr

RNG = np.random.default_rng(0)
FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


def _moments(kernel):
    """FWHMs (major, minor) and the major axis' direction (x, y) from the kernel's second moments."""
    ny, nx = kernel.shape
    y, x = np.mgrid[:ny, :nx]
    w = kernel / kernel.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    dx, dy = x - mx, y - my
    cov = np.array([[(w * dx * dx).sum(), (w * dx * dy).sum()], [(w * dx * dy).sum(), (w * dy * dy).sum()]])
    values, vectors = np.linalg.eigh(cov)
    return FWHM_PER_SIGMA * np.sqrt(values[::-1]), vectors[:, 1], (mx, my)


@pytest.mark.parametrize("bpa", [0.0, 30.0, 45.0, 90.0, 135.0])
def test_beam_size_and_orientation(bpa):
    kernel = beam_kernel(6.0, 3.0, bpa, (64, 65))
    assert kernel[32, 32] == 1.0 and kernel.max() == 1.0  # peak 1 at (ny // 2, nx // 2)
    fwhm, axis, centre = _moments(kernel)
    np.testing.assert_allclose(fwhm, [6.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(centre, (32, 32), atol=1e-9)
    # north (+y) through east (-x): the major axis points along (-sin BPA, cos BPA)
    expected = np.array([-np.sin(np.deg2rad(bpa)), np.cos(np.deg2rad(bpa))])
    assert abs(axis @ expected) == pytest.approx(1.0, abs=1e-9)


def test_beam_axes_by_hand():
    along_y = beam_kernel(5.0, 2.0, 0.0, (21, 21))
    assert along_y[10 + 2, 10] > along_y[10, 10 + 2]  # BPA 0: longer along y
    along_x = beam_kernel(5.0, 2.0, 90.0, (21, 21))
    assert along_x[10, 10 + 2] > along_x[10 + 2, 10]  # BPA 90: longer along x
    ne = beam_kernel(5.0, 2.0, 45.0, (21, 21))
    assert ne[10 + 2, 10 - 2] > ne[10 + 2, 10 + 2]  # BPA 45: towards north-east = (+y, -x)
    # half maximum at half the FWHM along each axis
    assert along_y[10 + 2, 10] > 0.5 > beam_kernel(4.0, 2.0, 0.0, (21, 21))[10 + 3, 10]
    assert beam_kernel(5.0, 4.0, 0.0, (21, 21))[10, 12] == pytest.approx(0.5)


def test_beam_kernel_rejects_bad_axes():
    with pytest.raises(ValueError, match="exceeds bmaj_pix"):
        beam_kernel(2.0, 3.0, 0.0, (9, 9))
    with pytest.raises(ValueError, match="must be > 0"):
        beam_kernel(2.0, 0.0, 0.0, (9, 9))


def test_beam_from_header():
    header = {"BMAJ": 6 / 3600, "BMIN": 3 / 3600, "BPA": 30.0, "CDELT1": -1 / 3600, "CDELT2": 1 / 3600}
    assert beam_from_header(header) == pytest.approx((6.0, 3.0, 30.0))
    cd = {"BMAJ": 6 / 3600, "BMIN": 3 / 3600, "BPA": 30.0, "CD1_1": -0.5 / 3600, "CD2_2": 0.5 / 3600}
    assert beam_from_header(cd) == pytest.approx((12.0, 6.0, 30.0))
    mirrored = dict(header, CDELT1=1 / 3600)  # east to the right: the angle turns the other way
    assert beam_from_header(mirrored)[2] == pytest.approx(-30.0)


def test_beam_from_an_astropy_header():
    fits = pytest.importorskip("astropy.io.fits")
    header = fits.Header({"CDELT1": -2 / 3600, "CDELT2": 2 / 3600, "BMAJ": 8 / 3600, "BMIN": 4 / 3600, "BPA": -10.0})
    assert beam_from_header(header) == pytest.approx((4.0, 2.0, -10.0))


@pytest.mark.parametrize("missing, named", [("BMAJ", "BMAJ"), ("BMIN", "BMIN"), ("BPA", "BPA"),
                                             ("CDELT2", "CDELT2 or CD2_2")])
def test_beam_from_header_names_the_missing_card(missing, named):
    header = {"BMAJ": 1e-3, "BMIN": 1e-3, "BPA": 0.0, "CDELT2": 1e-4}
    del header[missing]
    with pytest.raises(DataError, match=f"no {named} card"):
        beam_from_header(header)
    with pytest.raises(DataError, match="BPA: found 'north'"):
        beam_from_header({"BMAJ": 1e-3, "BMIN": 1e-3, "BPA": "north", "CDELT2": 1e-4})


def _convolve(sky, psf):
    """dirty = sky ⊛ psf, circular, the PSF's centre (ny // 2, nx // 2) at the origin."""
    h = np.fft.rfft2(np.fft.ifftshift(psf))
    return np.fft.irfft2(np.fft.rfft2(sky) * h, s=sky.shape[-2:])


def _sparse_sky(shape, n_sources, rng):
    sky = np.zeros(shape)
    idx = tuple(rng.integers(0, s, size=n_sources) for s in shape)
    sky[idx] = rng.uniform(1.0, 5.0, size=n_sources)
    return sky


def test_point_source_peak_is_its_flux():
    psf = beam_kernel(4.0, 3.0, 20.0, (32, 32))
    sky = np.zeros((32, 32))
    sky[5, 7] = 2.5
    dirty = _convolve(sky, psf)
    assert dirty.max() == pytest.approx(2.5) and dirty[5, 7] == pytest.approx(2.5)


@pytest.mark.parametrize("shape", [(32, 32), (3, 31, 30)], ids=["image", "cube"])
def test_wiener_recovers_a_noiseless_sky(shape):
    psf = beam_kernel(2.5, 2.0, 30.0, shape[-2:])
    sky = _sparse_sky(shape, 12, RNG)
    estimate = wiener_deconvolve(_convolve(sky, psf), psf, balance=1e-14)
    assert estimate.shape == shape and estimate.dtype == np.float64
    assert np.linalg.norm(estimate - sky) / np.linalg.norm(sky) < 1e-3


def test_wiener_accepts_a_smaller_psf():
    full = beam_kernel(2.5, 2.0, 30.0, (32, 32))
    small = beam_kernel(2.5, 2.0, 30.0, (15, 15))
    dirty = RNG.normal(size=(2, 32, 32)).astype(np.float32)
    out = wiener_deconvolve(dirty, small, 0.01)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, wiener_deconvolve(dirty, full, 0.01), atol=1e-4)
    with pytest.raises(ValueError, match="larger than the image planes"):
        wiener_deconvolve(dirty[:, :10, :10], small, 0.01)
    with pytest.raises(ValueError, match="balance must be > 0"):
        wiener_deconvolve(dirty, small, 0.0)


def _noisy_set(n, rng, noise=0.05):
    psf = beam_kernel(3.0, 2.0, 45.0, (32, 32))
    clean = np.stack([_sparse_sky((2, 32, 32), 10, rng) for _ in range(n)])
    dirty = _convolve(clean, psf) + noise * rng.normal(size=clean.shape)
    return dirty, clean, psf


def test_wiener_improves_on_the_dirty_image():
    dirty, clean, psf = _noisy_set(3, RNG)
    assert psnr(wiener_deconvolve(dirty[0], psf, 0.1)[None], clean[:1]) > psnr(dirty[:1], clean[:1]) + 3.0


def test_best_wiener_picks_the_argmax(caplog):
    dirty, clean, psf = _noisy_set(3, RNG)
    balances = np.logspace(-4, 1, 6)
    best, predictions = best_wiener(dirty, clean, psf, balances)
    scores = [np.mean([psnr(wiener_deconvolve(d, psf, b)[None], c[None]) for d, c in zip(dirty, clean)])
              for b in balances]
    assert best == balances[int(np.argmax(scores))] and 0 < int(np.argmax(scores)) < len(balances) - 1
    assert isinstance(predictions, np.ndarray) and predictions.shape == dirty.shape
    np.testing.assert_allclose(predictions[1], wiener_deconvolve(dirty[1], psf, best))
    assert psnr(predictions, clean) == pytest.approx(max(scores), rel=1e-9)
    assert psnr(predictions, clean) > zeros_psnr(clean)
    # a list in, a list out; a grid whose best is at its end is worth a warning
    with caplog.at_level(logging.WARNING, logger="deepscope.evaluation.baselines"):
        best_edge, listed = best_wiener(list(dirty), list(clean), psf, balances[:2])
    assert isinstance(listed, list) and best_edge == balances[1]
    assert "end of the grid" in caplog.text


def test_zeros_psnr_is_the_psnr_of_zeros():
    clean = np.stack([_sparse_sky((2, 16, 16), 5, RNG) for _ in range(3)])
    ref = np.mean([10 * np.log10(np.ptp(c) ** 2 / np.mean(c ** 2)) for c in clean])
    assert zeros_psnr(clean) == pytest.approx(ref, rel=1e-12)
    assert zeros_psnr(list(clean)) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(DataError, match="every clean cube is all zero"):
        best_wiener(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), np.ones((3, 3)))
