"""Table x colour-transform ablation (NN-JPEG paper, Fig. 5) with a small stand-in classifier."""


import numpy as np
import pytest

keras = pytest.importorskip("keras")

import nnjpeg  # noqa: E402
from nnjpeg import ablation  # noqa: E402
from nnjpeg.tables import standard_tables  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def classifier(shape):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))


def test_combinations_are_the_papers_four():
    combos = ablation.combinations(quality=50, k=4)
    assert [c["color"] for c in combos.values()] == ["ycbcr", "rgb", "ycbcr", "rgb"]
    luma, chroma = standard_tables(50)
    np.testing.assert_array_equal(list(combos.values())[0]["table"], np.stack([luma, chroma]))
    np.testing.assert_array_equal(list(combos.values())[1]["table"], luma)
    np.testing.assert_array_equal(list(combos.values())[3]["table"], nnjpeg.nn_table(4))


def test_grey_round_trip_goes_through_three_equal_channels(photos):
    grey = photos["astronaut"][100:140, 180:236, 1]
    x = (grey[None, ..., None] / 255.0).astype(np.float32)
    for spec in ablation.combinations().values():
        out = ablation.round_trip(x, spec)
        full = nnjpeg.compress(np.repeat(x, 3, axis=-1), spec["table"], color=spec["color"])
        assert out.shape == x.shape
        np.testing.assert_array_equal(out[..., 0], full[..., 1])  # R = G = B after the round trip


def test_run_on_grey_grid_images_finds_the_colour_transform_inert():
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (16, 28, 28, 1)) / 255.0).astype(np.float32)
    model = classifier((28, 28, 1))
    y = model.predict(x, verbose=0).argmax(-1)
    res = ablation.run(model, x, y, attacks=("fgsm",), eps=(0.1,), progress=False)
    labels = list(res["rows"])
    assert res["columns"] == ["clean", "fgsm 0.1"] and res["undefended"]["clean"] == 1.0
    assert res["rows"][labels[0]]["clean"] == res["rows"][labels[1]]["clean"]
    # On the 1/255 grid the colour transform only moves grey into Y: each table's two rows coincide.
    clean_only = ablation.run(model, x, y, attacks=(), progress=False)
    assert clean_only["coincide"] == [[labels[0], labels[1]], [labels[2], labels[3]]]
    text = "\n".join(ablation.markdown(clean_only))
    assert "replicated to R = G = B" in text and f"{labels[0]} = {labels[1]}" in text


def test_run_on_colour_photographs_tells_the_transforms_apart(photos, tmp_path):
    x = np.stack([p[:32, :32] for p in photos.values()]).astype(np.float32) / 255.0
    model = classifier((32, 32, 3))
    y = model.predict(x, verbose=0).argmax(-1)
    res = ablation.run(model, x, y, attacks=("fgsm",), eps=(0.05,), progress=False)
    assert res["coincide"] == [] and res["channels"] == 3
    assert all(0.0 <= v <= 1.0 for row in res["rows"].values() for v in row.values())
    ablation.write(res, tmp_path)
    assert (tmp_path / "ablation.png").stat().st_size > 0
    assert "No two combinations gave identical images" in (tmp_path / "ablation.md").read_text()


def test_bad_images():
    with pytest.raises(TypeError, match=r"Expected images float32 \(N, H, W, C\) in \[0, 1\] with N >= 1 and C in "
                                        r"\{1, 3\}. Received: dtype=uint8, shape=\(2, 8, 8, 1\)"):
        ablation.run(None, np.zeros((2, 8, 8, 1), np.uint8), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"C in \{1, 3\}. Received: dtype=float32, shape=\(2, 8, 8, 2\)"):
        ablation.run(None, np.zeros((2, 8, 8, 2), np.float32), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"Expected images with values in \[0, 1\]. Received: min=2.0, max=2.0"):
        ablation.run(None, np.full((2, 8, 8, 1), 2, np.float32), np.zeros(2, int))
