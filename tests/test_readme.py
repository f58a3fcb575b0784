"""The README's and docs/' Python examples run as written, so the usage they show stays the package's;
the README stays short, its links resolve, and its results table is the committed report's."""

import re
from pathlib import Path

import numpy as np
import pytest

import nnjpeg
import nnjpeg.pretrained

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
REPORT = ROOT / "reports" / "fmnist" / "README.md"
FENCE = re.compile(r"^```(\S*)\n(.*?)^```", flags=re.S | re.M)


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == "python"]


def block(page: Path, first_line: str) -> str:
    found = [b for b in blocks(page) if b.startswith(first_line)]
    assert len(found) == 1, f"expected one example in {name(page)} starting with {first_line!r}, found {len(found)}"
    return found[0]


def test_every_example_is_run_here():
    # A new example, in the README or in docs/, must be added to the tests below.
    found = {name(page): [b.splitlines()[0] for b in blocks(page)] for page in [README, *DOCS]}
    assert {page: firsts for page, firsts in found.items() if firsts} == {
        "README.md": ["import numpy as np", "import keras, tensorflow as tf", "import nnjpeg.pretrained"],
        "docs/codec.md": ["import numpy as np"],
        "docs/evaluation.md": ["import numpy as np"],
        "docs/models.md": ["from nnjpeg import registry"],
        "docs/tensorflow.md": ["import nnjpeg.keras, nnjpeg.pretrained", "import nnjpeg                      # registers "
                               "the codec's op with TensorFlow"],
    }


def test_code_blocks_are_python_bash_or_text():
    # A block tagged otherwise (```py, untagged) would escape the check above.
    for page in [README, *DOCS]:
        langs = {lang for lang, _ in FENCE.findall(page.read_text())}
        assert langs <= {"python", "bash", "text"}, f"{name(page)}: code blocks tagged {sorted(langs)}"


def test_codec_example(photos):
    scope = {}
    exec(block(README, "import numpy as np"), scope)
    img = photos["astronaut"]
    assert scope["defended"].dtype == np.uint8 and scope["defended"].shape == img.shape
    assert np.array_equal(scope["defended"], nnjpeg.compress(img, nnjpeg.nn_table(5)))
    # Coded in place, the batch ends as the reused buffer holds: one round trip of the original.
    assert np.array_equal(scope["batch"], scope["result"])
    assert not np.array_equal(scope["batch"], np.stack([img, img[::-1]]).astype(np.float32) / 255.0)


def test_keras_example(photos):
    tf = pytest.importorskip("tensorflow")
    grey = photos["coffee"][None, :28, :28, :1].repeat(4, axis=0)
    # What the example leaves to its reader: a dataset of (images, labels) batches, and images.
    scope = {"ds": tf.data.Dataset.from_tensor_slices((grey, np.arange(4))).batch(2),
             "images": tf.constant(grey)}
    exec(block(README, "import keras, tensorflow as tf"), scope)
    assert scope["defended"].predict(grey.astype(np.float32) / 255.0, verbose=0).shape == (4, 10)
    got = np.concatenate([x.numpy() for x, _ in scope["ds"]])
    want = nnjpeg.jpeg(nnjpeg.compress(grey, nnjpeg.nn_table(5)), quality=75)
    assert np.array_equal(got, want)
    assert scope["y"].shape == grey.shape


def test_pretrained_example(capsys):
    if not nnjpeg.pretrained.names():
        pytest.skip("installed without the pretrained weights")
    scope = {}
    exec(block(README, "import nnjpeg.pretrained"), scope)
    assert scope["model"].output_shape == (None, 10)
    assert "fmnist/ensemble" in capsys.readouterr().out


def test_registry_example(capsys):
    page = ROOT / "docs" / "models.md"
    exec(block(page, "from nnjpeg import registry"), {})
    shown = [body.strip() for lang, body in FENCE.findall(page.read_text()) if lang == "text"]
    assert capsys.readouterr().out.strip() in shown


def test_codec_errors_example(capsys):
    page = ROOT / "docs" / "codec.md"
    exec(block(page, "import numpy as np"), {})
    info = nnjpeg.build_info()
    kernel, error = capsys.readouterr().out.splitlines()
    assert kernel == f"{info['kernel']} {info['rows']} {info['cuda_compiled']}"
    # The page shows the message the example prints.
    shown = [body.strip() for lang, body in FENCE.findall(page.read_text()) if lang == "text"]
    assert error in shown


def test_readme_is_under_200_lines():
    assert README.read_text().count("\n") < 200


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def anchors(page: Path) -> set[str]:
    # GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens.
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", [README, *DOCS], ids=name)
def test_links_resolve(page):
    for link in links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_file(), f"{name(page)} links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{name(page)} links to {link}: no such heading"


def test_readme_links_every_docs_page_and_each_links_back():
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in links(README) if link.startswith("docs/")}
    assert DOCS and linked == {page.resolve() for page in DOCS}
    for page in DOCS:
        # A title, then a one-line summary that ends with the way back.
        title, blank, summary = page.read_text().splitlines()[:3]
        assert title.startswith("# ") and not blank
        assert summary.endswith("[Back to the README](../README.md)"), name(page)


def table(text: str, heading: str) -> list[list[str]]:
    """The first Markdown table under `heading`, as rows of cells (the header row first)."""
    lines = text.split(heading, 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [rows[0], *rows[2:]]


def test_results_are_the_committed_reports():
    """Between the README's markers: what `nnjpeg report --readme` writes from the committed report's
    results.json, and the same headline table as the report's own page."""
    import json

    from nnjpeg import report

    text = README.read_text()
    inside = text.split("<!-- results:start -->", 1)[1].split("<!-- results:end -->", 1)[0]
    saved = json.loads((REPORT.parent / "results.json").read_text())
    assert inside.strip().splitlines() == report.readme_results(saved["results"], saved["meta"])
    assert table(text, "<!-- results:start -->") == table(REPORT.read_text(), "## Headline")
    header = table(REPORT.read_text(), "## Headline")[0]
    assert header[:3] == ["defense", "clean", "gray-box PGD eps 0.1"] and "masking checks" in header
    assert "AutoAttack" in header


def test_savedmodel_example(tmp_path, monkeypatch, photos):
    tf = pytest.importorskip("tensorflow")
    if "fmnist/ensemble" not in nnjpeg.pretrained.names():
        pytest.skip("installed without the pretrained weights")
    page = ROOT / "docs" / "tensorflow.md"
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(block(page, "import nnjpeg.keras, nnjpeg.pretrained"), scope)
    images = (photos["coffee"][None, 100:128, 100:128, :1] / np.float32(255)).repeat(3, axis=0)
    loaded = {"images": images}
    exec(block(page, "import nnjpeg                      # registers"), loaded)
    want = scope["model"].predict(images, verbose=0)
    np.testing.assert_allclose(loaded["log_probs"].numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded["portable"].serve(tf.constant(images)).numpy(), want, rtol=1e-5, atol=1e-5)


def test_art_example():
    pytest.importorskip("art")
    if "fmnist/pgd-at" not in nnjpeg.pretrained.names():
        pytest.skip("installed without the pretrained weights")
    scope = {}
    exec(block(ROOT / "docs" / "evaluation.md", "import numpy as np"), scope)
    x, adv = scope["x"], scope["adv"]
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    clean = np.mean(scope["clf"].predict(x).argmax(1) == scope["y"])
    assert 0.0 <= scope["robust"] <= clean
    xq = nnjpeg.compress(x, nnjpeg.nn_table(5))
    np.testing.assert_allclose(scope["defended"].predict(x), nnjpeg.pretrained.load("fmnist/classifier").predict(xq, verbose=0),
                               rtol=1e-4, atol=1e-5)
