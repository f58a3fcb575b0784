"""Frequency analysis: band statistics against a direct computation, and the ratio's meaning."""

import numpy as np
from scipy.fft import dctn

import nnjpeg
from nnjpeg import analysis


def test_band_std_matches_a_direct_computation(photos):
    img = photos["astronaut"][:64, :48].astype(np.float64)
    got = analysis.band_std(img[None])
    blocks = [dctn(img[y : y + 8, x : x + 8, 1], norm="ortho") for y in range(0, 64, 8) for x in range(0, 48, 8)]
    np.testing.assert_allclose(got[1], np.std(blocks, axis=0), rtol=1e-10)


def test_natural_images_concentrate_energy_in_low_bands_and_chroma_is_weaker(photos):
    x = np.stack([p[:256, :256] for p in photos.values()]).astype(np.float32) / 255.0
    res = analysis.analyse(x, label="scikit-image photographs")
    y = np.asarray(res["channels"]["Y"]["benign"])
    assert y[0, 0] > y[7, 7] * 10
    assert np.asarray(res["channels"]["Cb"]["benign"]).sum() < y.sum()


def test_high_frequency_perturbation_has_ratio_peaking_in_high_bands(photos):
    x = photos["coffee"][:128, :128, :1].astype(np.float32)[None] / 255.0
    checker = ((np.indices((128, 128)).sum(0) % 2) * 2 - 1).astype(np.float32)[None, :, :, None] * (2 / 255)
    res = analysis.analyse(x, np.clip(x + checker, 0, 1), label="checkerboard")
    top = res["channels"]["grey"]["ratio_sorted"][0]
    assert top["band"] == [7, 7] and top["anti_diagonal"] == 14


def test_table_search_respects_the_drop_constraint(photos):
    import pytest

    keras = pytest.importorskip("keras")
    from nnjpeg import search

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(0)
    x = photos["coffee"][:64, :64, :1].astype(np.float32) / 255.0
    xb = np.stack([x[i : i + 16, j : j + 16] for i in range(0, 48, 8) for j in range(0, 48, 8)])
    yb = model.predict(xb, verbose=0).argmax(-1)
    xa = np.clip(xb + rng.choice([-0.03, 0.03], xb.shape).astype(np.float32), 0, 1)
    res = search.search_table(model, xb, yb, xa, yb, ks=[1, 8, 15], afs=[1, 51, 121], progress=False)
    drop = np.asarray(res["grid_drop"])
    assert res["clean_accuracy"] == 1.0 and drop.shape == (3, 3)
    best = res["best"]
    assert best is not None and best["drop"] < 0.01
    feasible = np.asarray(res["grid_defense"])[drop < 0.01]
    assert best["defense"] == feasible.max()
    text = search.markdown(res)
    assert f"Chosen: k = {best['k']}, QS_AF = {best['af']}" in text
    first_row = "| " + " | ".join(f"{v:g}" for v in nnjpeg.nn_table(best["k"], best["of"], best["af"])[0]) + " |"
    assert first_row in text
    res["best"] = None
    assert "No table keeps the clean accuracy drop below 1 %" in search.markdown(res)


def test_analyse_errors(photos):
    import pytest

    x = photos["coffee"][None, :16, :16].astype(np.float32) / 255.0
    with pytest.raises(TypeError,
                       match=r"Expected benign images float32 or float64 \(N, H, W, C\).* Received: dtype=uint8"):
        analysis.analyse(photos["coffee"][None, :16, :16])
    with pytest.raises(ValueError, match=r"H, W >= 8 and C in \{1, 3\}. Received: dtype=float32, shape=\(1, 7, 16, 3\)"):
        analysis.analyse(x[:, :7])
    with pytest.raises(ValueError, match=r"Received: dtype=float32, shape=\(0, 16, 16, 3\)"):
        analysis.analyse(x[:0])
    with pytest.raises(ValueError, match=r"Expected adversarial images with values in \[0, 1\]. Received: min="):
        analysis.analyse(x, x + 1)
    bad = x.copy()
    bad[0, 3, 5, 1] = np.nan
    with pytest.raises(ValueError, match=r"Expected benign images with finite values in \[0, 1\]. Received: 1 NaN/Inf"):
        analysis.analyse(bad)
    with pytest.raises(ValueError,
                       match=r"of the benign images' shape \(1, 16, 16, 3\). Received: shape=\(1, 16, 8, 3\)"):
        analysis.analyse(x, x[:, :, :8])


def test_table_search_errors(photos):
    import pytest

    keras = pytest.importorskip("keras")
    from nnjpeg import search

    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    x = photos["coffee"][None, :16, :16, :1].astype(np.float32) / 255.0
    y = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=r"integer labels of shape \(1,\). Received: dtype=int64, shape=\(2,\)"):
        search.search_table(model, x, np.zeros(2, np.int64), x, y, progress=False)
    with pytest.raises(ValueError, match=r"one or more of each. Received: 1 benign, 0 adversarial, 15 ks, 25 afs"):
        search.search_table(model, x, y, x[:0], y[:0], progress=False)
    with pytest.raises(ValueError,
                       match=r"max_drop, a share of the benign accuracy, in \[0, 1\]. Received: max_drop=5"):
        search.search_table(model, x, y, x, y, max_drop=5, progress=False)

