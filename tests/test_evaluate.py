"""The evaluation harness end to end on 32 images with small stand-in models (well under a minute)."""

import json
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import nnjpeg  # noqa: E402
from nnjpeg import evaluate, registry  # noqa: E402
from nnjpeg.keras import Compression  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def small_classifier(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


@pytest.fixture(scope="module")
def zoo():
    target = small_classifier(0)
    inputs = keras.Input((28, 28, 1))
    defended = keras.Model(inputs, target(Compression(nnjpeg.nn_table(3).tolist())(inputs)))
    models = {"fmnist/classifier": target, "nn-jpeg": defended, **{s: small_classifier(i + 1) for i, s in enumerate(registry.surrogates("fashion-mnist"))}}
    rng = np.random.default_rng(0)
    x = rng.random((32, 28, 28, 1)).astype(np.float32)
    y = target.predict(x, verbose=0).argmax(-1)
    return models, (x, y)


@pytest.mark.parametrize("scenario", evaluate.SCENARIOS)
def test_harness_end_to_end(zoo, scenario, tmp_path):
    models, data = zoo
    t0 = time.time()
    result = evaluate.evaluate(["fmnist/classifier", "nn-jpeg"], ["fgsm", "pgd"], [0.05, 0.1], scenario, data=data,
                               load=models.__getitem__, attack_kwargs={"pgd": {"nb_iter": 5}}, progress=False)
    assert time.time() - t0 < 60
    assert len(result["records"]) == 2 * 2 * 2
    for r in result["records"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["n"] == 32 and r["scenario"] == scenario
        assert r["max_linf"] <= r["eps"] + 1e-6
    assert result["clean"]["fmnist/classifier"] == 1.0  # labels are the target's own decisions
    if scenario in ("gray-box", "white-box"):
        # The undefended target attacked directly must lose accuracy at the larger budget.
        worst = [r for r in result["records"] if r["defense"] == "fmnist/classifier" and r["attack"] == "pgd" and r["eps"] == 0.1]
        assert worst[0]["accuracy"] < 1.0
    evaluate.write_report(result, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["config"]["scenario"] == scenario
    assert "| pgd | 0.1 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "accuracy_vs_eps.png").stat().st_size > 0


def test_mixed_is_the_mean_of_the_gray_and_black_box_halves_on_the_same_images(zoo, tmp_path):
    # The VQUNet paper's protocol, as the report's mixed cells: each image made on the target and
    # transferred from the surrogates, the accuracy the mean of the two, each kept.
    models, data = zoo
    run = lambda scenario: evaluate.evaluate(["fmnist/classifier", "nn-jpeg"], ["fgsm"], [0.1], scenario,  # noqa: E731
                                             data=data, load=models.__getitem__, progress=False)["records"]
    gray, black, mixed = run("gray-box"), run("black-box"), run("mixed")
    for g, b, m in zip(gray, black, mixed, strict=True):
        assert (m["gray_box_accuracy"], m["black_box_accuracy"]) == (g["accuracy"], b["accuracy"])
        assert m["accuracy"] == pytest.approx((g["accuracy"] + b["accuracy"]) / 2)
        assert m["mean_l2"] == pytest.approx((g["mean_l2"] + b["mean_l2"]) / 2)
        assert m["max_linf"] == max(g["max_linf"], b["max_linf"]) and "gray_box_accuracy" not in g
    assert mixed[0]["gray_box_accuracy"] == 0.0 != mixed[0]["black_box_accuracy"]  # FGSM on the target itself
    result = {"records": mixed, "clean": {"fmnist/classifier": 1.0, "nn-jpeg": 1.0},
              "config": {"defenses": ["fmnist/classifier", "nn-jpeg"], "scenario": "mixed", "n": 32, "seed": 0}}
    row = (f"{100 * mixed[0]['accuracy']:.1f} (0.0 / {100 * mixed[0]['black_box_accuracy']:.1f})")
    assert f"| fgsm | 0.1 | {row} |" in evaluate.markdown(result)
    assert row in evaluate.text(result) and "mean (made on the target / transferred)" in evaluate.text(result)


def test_a_saved_keras_file_is_a_defense_beside_the_pretrained_names(zoo, tmp_path, monkeypatch):
    models, _ = zoo
    models["nn-jpeg"].save(tmp_path / "mine.keras")
    loaded = evaluate.load_defense(str(tmp_path / "mine.keras"))
    x = np.random.default_rng(1).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), models["nn-jpeg"].predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"Received: '.*gone.keras', which is not a file"):
        evaluate.load_defense(str(tmp_path / "gone.keras"))
    with pytest.raises(ValueError, match=r"a pretrained model name in .* or the path of a saved .keras model. "
                                         r"Received: 'fmnist/nothing'"):
        evaluate.load_defense("fmnist/nothing")
    # Weights that cannot be had are told so, as pretrained.load tells it.
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("NNJPEG_WEIGHTS_DIR", str(tmp_path / "empty"))
    with pytest.raises(nnjpeg.hub.WeightsUnavailable, match=r"fmnist/classifier.keras .*empty"):
        evaluate.load_defense("fmnist/ensemble")


def test_errors(zoo):
    models, data = zoo
    with pytest.raises(ValueError, match=r"scenario in .* Received: 'grey'"):
        evaluate.evaluate(["nn-jpeg"], ["fgsm"], [0.1], "grey", data=data, load=models.__getitem__)
    with pytest.raises(ValueError, match=r"Received: defenses=\['nn-jpeg'\], attacks=\['bogus'\]"):
        evaluate.evaluate(["nn-jpeg"], ["bogus"], [0.1], data=data, load=models.__getitem__)
    x, y = data
    with pytest.raises(ValueError, match=r"one image or more, with a label each. Received: 0 images, 0 labels"):
        evaluate.evaluate(["nn-jpeg"], ["fgsm"], [0.1], data=(x[:0], y[:0]), load=models.__getitem__)
    with pytest.raises(ValueError, match=r"Received: eot=\{'nn-jpeg': 4\} with scenario 'mixed'"):
        evaluate.evaluate(["nn-jpeg"], ["fgsm"], [0.1], "mixed", data=data, load=models.__getitem__, eot={"nn-jpeg": 4})
    with pytest.raises(ValueError, match=r"Received: 3 images, 2 labels"):
        evaluate.evaluate(["nn-jpeg"], ["fgsm"], [0.1], data=(x[:3], y[:2]), load=models.__getitem__)


def test_subset_refuses_a_count_below_one():
    for n, error in ((0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error,
                           match=rf"Expected n, the number of test images, to be an integer >= 1. Received: n={n!r}"):
            evaluate.subset("fashion-mnist", n, 0)


def test_report_tables_reading_and_plots(zoo, tmp_path):
    from nnjpeg import report

    from nnjpeg.models.vqunet import VQUNet

    models, data = zoo
    vq = VQUNet(channels=1, widths=(4, 8), num_codes=8)
    vq(np.zeros((1, 32, 32, 1), np.float32))
    # NN-JPEG stands in for a VQUNet variant as well, so that the table of what was tried is drawn.
    models = {**models, "fmnist/vqunet": vq, "fmnist/vqunet-classifier": models["nn-jpeg"]}
    res = report.run(tmp_path, eps=(0.05, 0.2), analysis_eps=(0.05, 0.2), gray_attacks=("fgsm",), black_attacks=("fgsm",), white_attack="fgsm",
                     progress=False, defenses=["fmnist/classifier", "nn-jpeg", "fmnist/vqunet-classifier"],
                     load=models.__getitem__, data=data,
                     available=list(models), vq_n=8, white_n=16, robust_n=12, robust_steps=5, robust_restarts=2,
                     white_eps=0.1, bpda_n=6, bpda_iterations=4, clean_data=(data[0][:10], data[1][:10]))
    assert set(res["results"]) == {"gray-box", "black-box", "white-box", "vq-analysis", "ablation", "paper-grid gray-box",
                                   "paper-grid black-box", "robust", "training", "bpda", "clean, all"}
    full = res["results"]["clean, all"]
    assert full["config"]["n"] == 10 and full["clean"]["nn-jpeg"] == pytest.approx(
        evaluate.accuracy(models["nn-jpeg"], data[0][:10], data[1][:10]))
    assert {r["n"] for r in res["results"]["bpda"]["records"]} == {6}
    assert {r["n"] for r in res["results"]["white-box"]["records"]} == {16}
    robust = res["results"]["robust"]
    assert {r["n"] for r in robust["pgd"]["records"] + robust["sweep"]["records"]} == {12}
    assert {r["attack"] for r in robust["autoattack"]["records"]} == {"autoattack"}
    # The undefended stand-in has no defense to mask gradients: every check passes, and eps 1 leaves nothing.
    from nnjpeg import robust as R

    c = R.checks(robust, res["results"]["black-box"])["fmnist/classifier"]
    assert c["unbounded"] and c["falls"] and c["curve"][-1] == 0.0
    # Worst per image, on the images that PGD and AutoAttack both ran on: never above either.
    for d in ("fmnist/classifier", "nn-jpeg"):
        k, n = R.worst_per_image(robust, d)
        assert n == robust["autoattack"]["config"]["n"] and k / n <= R.worst(robust, d) + 1e-9
    assert "| worst per image |" in "\n".join(report.headline(res["results"], res["meta"]))
    grid = res["results"]["paper-grid black-box"]
    assert {(r["attack"], round(r["eps"] * 255)) for r in grid["records"]} == set(report.PAPER_GRID_BLACK)
    assert {r["n"] for r in res["results"]["gray-box"]["records"]} == {32}
    vq_rows = res["results"]["vq-analysis"]["fmnist/vqunet"]
    assert set(vq_rows) == {"0.05", "0.2"} and len(vq_rows["0.2"]["index_change"]) == 2
    text = (tmp_path / "README.md").read_text()
    saved = json.loads((tmp_path / "results.json").read_text())
    gray = saved["results"]["gray-box"]
    # Table 2 row of the undefended target: its clean accuracy is 100 % by construction of the labels.
    acc = {(r["defense"], r["eps"]): r["accuracy"] for r in gray["records"]}
    assert f"| none | 100.0 | {100 * acc['fmnist/classifier', 0.05]:.1f} | {100 * acc['fmnist/classifier', 0.2]:.1f} |" in text
    assert "94.31" in text  # the papers' rows, marked as theirs
    assert "| method | acc, 32 images | degradation | acc, 10 images | degradation | paper: acc |" in text
    white = {r["defense"]: r["accuracy"] for r in saved["results"]["white-box"]["records"]}
    verdict = "falls to the adaptive attack" if white["nn-jpeg"] < 0.1 else "adaptive attack"
    assert verdict in text.split("## Reading")[1]
    assert "| fmnist/vqunet | 0.2 |" in text
    assert "on the first 16 of the 32 images" in text
    assert "quantization table x colour transform" in text and "| no compression | 100.0 |" in text
    # The paper's own grid: our cell, the paper's ImageNet number in brackets (No Defense, FGSM 2: 17.5).
    pg = {(r["defense"], r["attack"], round(r["eps"] * 255)): r["accuracy"]
          for r in saved["results"]["paper-grid gray-box"]["records"]}
    assert f"| none | 100.0 (65.4) | {100 * pg['fmnist/classifier', 'fgsm', 2]:.1f} (17.5) |" in text
    # The paper's Table 2 numbers appear once, in brackets in its own grid, not again as a table of their own.
    assert text.count("(17.5)") == 1 and "*paper* gray-box rows" not in text
    # Without that grid, the paper's rows follow the gray-box table as a table of their own.
    short = report.markdown({k: v for k, v in res["results"].items() if not k.startswith("paper-grid")}, res["meta"])
    assert short.index("## Gray-box") < short.index("| Proposed | 66.5 |") < short.index("## Black-box")
    for body in (text, short):
        assert "## Black-box (NN-JPEG paper, Table 2 layout, bottom)" in body and "not all are installed" not in body
        assert "![fig2](fig2_vqunet_protocol.png)" in body
    assert "## VQUNet: what was tried" in text and "![tried](vqunet_tried.png)" in text
    assert "## White-box, strong: which defense holds" in text and "Strongest white-box evaluation" in text
    assert "| Acc_raw / Acc_ae (BPDA, 4 iterations, n=6) |" in text
    assert "AutoAttack" in text.split("## White-box, strong")[1]
    for f in ("fig2_vqunet_protocol.png", "table3_white_box.png", "gray-box/results.md", "black-box/accuracy_vs_eps.png",
              "vqunet_analyses.png", "ablation.png", "masking_check.png", "vqunet_tried.png"):
        assert (tmp_path / f).stat().st_size > 0
    # What the terminal shows: aligned tables, the reading without Markdown marks, and where files went.
    from nnjpeg import demo

    shown = demo.summary(res["results"], res["meta"], tmp_path, 12.0).splitlines()
    head = next(i for i, line in enumerate(shown) if line.startswith("defense"))
    assert shown[head + 1].replace(" ", "").strip("-") == ""
    row = shown[head + 2]
    assert row.startswith("none ") and len(row) == len(shown[head])
    assert "**" not in "\n".join(shown) and shown[-3].startswith("  report   ") and str(tmp_path / "README.md") in shown[-3]
    assert shown[-1].startswith("  images   ") and shown[-4] == "Wrote in 12 s:"
    summary = report.text_summary(res["results"], res["meta"])
    assert "masking checks" in summary and "Reading:" in summary
    # The headline table goes into a README between its markers, and nowhere else.
    readme = tmp_path / "R.md"
    readme.write_text("# x\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nafter\n")
    report.write_readme_results(readme, res["results"], res["meta"])
    body = readme.read_text()
    assert "old" not in body and body.endswith("<!-- results:end -->\n\nafter\n")
    assert "\n".join(report.readme_results(res["results"], res["meta"])) in body and "## Headline" in text
    assert "Strongest white-box evaluation" in body and "[reports/fmnist/README.md]" in body
    with pytest.raises(ValueError, match=r"Expected a README holding the lines <!-- results:start --> and "
                                         r"<!-- results:end -->. Received: .*nothing.md \(no such file\)"):
        report.write_readme_results(tmp_path / "nothing.md", res["results"], res["meta"])



def test_report_resumes_its_finished_stages_and_adds_a_defense(zoo, tmp_path, monkeypatch, capsys):
    from nnjpeg import ablation, report

    models, data = zoo
    prints = {"fmnist/classifier": "a", "nn-jpeg": "b", "other": "c"}
    models = {**models, "other": models[registry.surrogates("fashion-mnist")[0]]}  # a third model, defended by nothing
    kw = dict(eps=(0.1,), analysis_eps=(0.1,), gray_attacks=("fgsm",), black_attacks=("fgsm",), l2_attacks=(),
              white_attack="fgsm", progress=False, defenses=["fmnist/classifier", "nn-jpeg"], load=models.__getitem__,
              data=(data[0][:8], data[1][:8]), available=list(models), white_n=8, robust_steps=5, robust_restarts=1,
              autoattack=False, bpda_n=4, bpda_iterations=2, ablation_attacks=("fgsm",), fingerprint=prints.get)
    per_defense = {"gray-box", "black-box", "paper-grid gray-box", "paper-grid black-box", "white-box", "bpda", "robust"}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # killed in the last stage: everything before it is on disk
        m.setattr(ablation, "run", interrupted)
        with pytest.raises(KeyboardInterrupt):
            report.run(tmp_path, **kw)
    saved = json.loads((tmp_path / "stages.json").read_text())
    assert set(saved["stages"]) == per_defense
    assert all(saved["stages"][name]["fingerprints"] == {"fmnist/classifier": "a", "nn-jpeg": "b"} for name in per_defense)
    assert not (tmp_path / "README.md").exists()
    with pytest.raises(ValueError, match=r"same settings, to resume it. Received one made with .*'white_n': 8"):
        report.run(tmp_path, **{**kw, "white_n": 6}, resume=True)
    block = tmp_path / "block.md"
    block.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    with monkeypatch.context() as m:  # resumed: no attack runs again, and the tables are those saved
        m.setattr(evaluate, "evaluate", interrupted)
        res = report.run(tmp_path, **kw, resume=True, readme=block)
    assert "\n".join(report.readme_results(res["results"], res["meta"], "README.md")) in block.read_text()
    assert res["results"]["white-box"] == saved["stages"]["white-box"]["result"]
    assert res["results"]["robust"] == saved["stages"]["robust"]["result"]
    assert res["meta"]["wall_time_s"] >= sum(v["seconds"] for v in saved["stages"].values())
    text = (tmp_path / "README.md").read_text()
    assert text.count("| none |") >= 1
    # A defense added, then one retrained (its fingerprint changed): only its own attacks run.
    evaluated, run_evaluate = [], evaluate.evaluate

    def recorded(defenses, *a, **k):
        evaluated.append(list(defenses))
        return run_evaluate(defenses, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(evaluate, "evaluate", recorded)
        added = report.run(tmp_path, **{**kw, "defenses": [*kw["defenses"], "other"]}, resume=True)["results"]
        assert evaluated and all(d == ["other"] for d in evaluated)
        evaluated.clear()
        prints["nn-jpeg"] = "b2"
        redone = report.run(tmp_path, **{**kw, "defenses": [*kw["defenses"], "other"]}, resume=True)["results"]
        assert evaluated and all(d == ["nn-jpeg"] for d in evaluated)
    white, white_added = res["results"]["white-box"], added["white-box"]
    assert white_added["config"]["defenses"] == ["fmnist/classifier", "nn-jpeg", "other"]
    assert [r for r in white_added["records"] if r["defense"] != "other"] == white["records"]
    assert white_added["clean"]["other"] == pytest.approx(evaluate.accuracy(models["other"], *kw["data"]))
    assert [r["defense"] for r in added["robust"]["sweep"]["records"]][:3] == ["fmnist/classifier", "nn-jpeg", "other"]
    assert redone["white-box"] == white_added  # the same model under a new fingerprint: the same numbers
    assert "| other |" not in text and "other" in (tmp_path / "README.md").read_text()
    # --render writes the text again from results.json alone, here and between a README's markers.
    from nnjpeg.cli import main

    text = (tmp_path / "README.md").read_text()
    (tmp_path / "README.md").unlink()
    readme = tmp_path / "R.md"
    readme.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    with monkeypatch.context() as m:
        m.setattr(evaluate, "evaluate", interrupted)
        assert main(["report", "--out", str(tmp_path), "--render", "--readme", str(readme)]) == 0
    assert (tmp_path / "README.md").read_text() == text
    assert "[README.md](README.md)" in readme.read_text() and "| none |" in readme.read_text()
    assert main(["report", "--out", str(tmp_path / "nothing"), "--render"]) == 2
    assert "nothing/results.json, the results of an earlier" in capsys.readouterr().err


def _gray(clean: dict, adv: dict) -> dict:
    records = [{"defense": d, "attack": a, "eps": 0.03, "accuracy": v} for d, per in adv.items() for a, v in per.items()]
    return {"clean": clean, "records": records, "config": {"eps": [0.03, 0.1], "attacks": ["fgsm", "bim", "pgd"]}}


def test_codebook_tradeoff_sentence_follows_the_numbers():
    from nnjpeg import report

    fine, coarse, unet = "fmnist/vqunet-classifier", "fmnist/vqunet-k256-classifier", "fmnist/non-vq-unet-classifier"
    traded = report._codebook_tradeoff(_gray({fine: 0.93, coarse: 0.91, unet: 0.93},
                                             {fine: {"bim": 0.6, "pgd": 0.6}, coarse: {"bim": 0.8, "pgd": 0.81},
                                              unet: {"bim": 0.62, "pgd": 0.63}}))
    assert len(traded) == 1 and "VQUNet (K=256) 91.0 % clean, 80.0 % under bim, 81.0 % under pgd" in traded[0]
    assert "trades clean accuracy for robustness" in traded[0]
    # A finer codebook that is better on both counts: no trade-off claimed.
    both = report._codebook_tradeoff(_gray({fine: 0.93, coarse: 0.91}, {fine: {"bim": 0.9, "pgd": 0.9},
                                                                        coarse: {"bim": 0.8, "pgd": 0.8}}))
    assert "does not trade" in both[0]
    assert report._codebook_tradeoff(_gray({fine: 0.93}, {fine: {"bim": 0.6}})) == []


def _robust(curves: dict, white: dict, black: dict) -> tuple:
    grid = (0.03, 0.1, 0.3, 1.0)
    sweep = {"config": {"eps": list(grid), "defenses": list(curves)}, "clean": {d: c[0] for d, c in curves.items()},
             "records": [{"defense": d, "attack": "pgd", "eps": e, "accuracy": v}
                         for d, c in curves.items() for e, v in zip(grid, c[1:])]}
    pgd = {"config": {"defenses": list(curves)}, "clean": sweep["clean"],
           "records": [{"defense": d, "attack": "pgd", "eps": 0.1, "accuracy": v} for d, v in white.items()]}
    blk = {"records": [{"defense": d, "attack": "fgsm", "eps": 0.1, "accuracy": v} for d, v in black.items()]}
    return {"eps": 0.1, "steps": 100, "restarts": 5, "sweep_steps": 20, "pgd": pgd, "sweep": sweep}, blk


def test_masking_checks_flag_each_symptom():
    from nnjpeg import robust as R

    rb, black = _robust({"honest": [0.9, 0.7, 0.5, 0.1, 0.0], "rises": [0.9, 0.4, 0.6, 0.1, 0.0],
                         "floor": [0.9, 0.7, 0.5, 0.3, 0.2], "beats-black": [0.9, 0.8, 0.7, 0.1, 0.0]},
                        {"honest": 0.5, "rises": 0.6, "floor": 0.5, "beats-black": 0.8},
                        {"honest": 0.6, "rises": 0.7, "floor": 0.6, "beats-black": 0.4})
    c = R.checks(rb, black)
    assert c["honest"] == {**c["honest"], "falls": True, "unbounded": True, "white_le_black": True}
    assert c["rises"]["falls"] is False and c["floor"]["unbounded"] is False
    assert c["beats-black"]["white_le_black"] is False and c["beats-black"]["falls"] and c["beats-black"]["unbounded"]
    assert R.checks(rb, None)["honest"]["white_le_black"] is None
    table = "\n".join(R.table(rb, black, str))
    assert "| rises | 90.0 | 60.0 | **60.0** | 70.0 | **NO** | yes | yes |" in table
    assert R.worst(rb, "floor") == 0.5


def test_vqunet_table_uses_the_mixed_protocol():
    from nnjpeg import report

    vq, adv = "fmnist/vqunet-classifier", "fmnist/vqunet-adv-classifier"

    def res(values):
        return {"clean": {vq: 0.93, adv: 0.92}, "config": {"attacks": ["fgsm", "pgd"]},
                "records": [{"defense": d, "attack": a, "eps": 0.1, "accuracy": v} for (d, a), v in values.items()]}

    gray = res({(vq, "fgsm"): 0.2, (vq, "pgd"): 0.0, (adv, "fgsm"): 0.8, (adv, "pgd"): 0.9})
    black = res({(vq, "fgsm"): 0.4, (vq, "pgd"): 0.2, (adv, "fgsm"): 0.9, (adv, "pgd"): 0.7})
    white = {"records": [{"defense": vq, "attack": "pgd", "eps": 0.1, "accuracy": 0.0},
                         {"defense": adv, "attack": "pgd", "eps": 0.1, "accuracy": 0.05}]}

    def table(defense=None, accuracy=None, scenarios=(gray, black)):
        """The table after `defense`'s cells in `scenarios` are set to `accuracy` (none changed by default)."""
        for r in (r for res in scenarios for r in res["records"] if r["defense"] == defense):
            r["accuracy"] = accuracy
        return report.vqunet_table({"gray-box": gray, "black-box": black, "white-box": white}, [vq, adv],
                                   {"white_eps": 0.1, "white_attack": "pgd"})

    lines = table()
    assert lines[0] == "| variant | how it was trained | clean | fgsm (mixed) | pgd (mixed) | white-box pgd |"
    assert lines[2].endswith("| 93.0 | 30.0 | 10.0 | 0.0 |")
    assert lines[3].startswith("| VQUNet-adv | inputs also FGSM/PGD") and lines[3].endswith(
        "| 92.0 | 85.0 | 80.0 | 5.0 |")
    assert lines[-1].endswith("Best reached: VQUNet-adv, lowest mixed accuracy 80.0 % (pgd): the goal is **not met**.")
    gray["clean"]["fmnist/classifier"] = 0.925
    assert table(adv, 0.95)[-1].endswith("Best reached: VQUNet-adv, lowest mixed accuracy 95.0 % (fgsm), clean drop 0.5 "
                                         "points: the goal is met.")
    # The examples made on the target now get through: the goal is missed again.
    gray["clean"][vq] = 0.90
    assert table(adv, 0.75, (gray,))[-1].endswith(
        "Best reached: VQUNet-adv, lowest mixed accuracy 85.0 % (fgsm), clean drop 0.5 points: the goal is **not met**. "
        "It is also the nearest to the goal: 5.0 points under 90 % (fgsm: 75.0 % of the examples made on the target "
        "survive, 95.0 % of the transferred ones) at a clean drop of 0.5 points.")
    # The best cells now cost 12.5 points of clean accuracy: another variant is nearer the goal.
    gray["clean"][vq] = 0.80
    assert table(vq, 0.95)[-1].endswith(
        "Best reached: VQUNet, lowest mixed accuracy 95.0 % (fgsm), clean drop 12.5 points: the goal is **not met**. "
        "Nearest the goal: VQUNet-adv, 5.0 points under 90 % (fgsm: 75.0 % of the examples made on the target "
        "survive, 95.0 % of the transferred ones) at a clean drop of 0.5 points.")
    # Robust enough but 1.5 points too costly on clean images: the nearest, though not under 90 %.
    gray["clean"][vq] = 0.91
    assert table()[-1].endswith(
        "the goal is **not met**. It is also the nearest to the goal: 95.0 % (fgsm: 95.0 % of the examples made on "
        "the target survive, 95.0 % of the transferred ones) at a clean drop of 1.5 points.")
    # A variant that saw the surrogates, above every goal: in the table, said apart, never the best reached.
    seen = "fmnist/vqunet-oracle-classifier"
    gray["clean"][seen] = 0.93
    for res_ in (gray, black):
        res_["records"] += [{"defense": seen, "attack": a, "eps": 0.1, "accuracy": 0.99} for a in ("fgsm", "pgd")]
    white["records"].append({"defense": seen, "attack": "pgd", "eps": 0.1, "accuracy": 0.0})
    lines = report.vqunet_table({"gray-box": gray, "black-box": black, "white-box": white}, [vq, adv, seen],
                                {"white_eps": 0.1, "white_attack": "pgd"})
    assert lines[4].startswith("| VQUNet-oracle | VQUNet-mix's denoiser") and lines[4].endswith("| 93.0 | 99.0 | 99.0 | 0.0 |")
    assert ("(its Table 1 and Fig. 2). VQUNet-oracle: trained on examples made on this report's surrogates, the models "
            "the transferred half comes from, which no defender of an unknown attacker has; set beside the others, never "
            "counted as the best reached. Best reached: VQUNet, lowest mixed accuracy 95.0 % (fgsm)") in lines[-1]


def test_vqunet_tried_plot_draws_with_and_without_the_target(tmp_path):
    from nnjpeg import report

    vq, seen = "fmnist/vqunet-classifier", "fmnist/vqunet-oracle-classifier"
    gray = {"clean": {vq: 0.93, seen: 0.92, "fmnist/classifier": 0.94}, "config": {"attacks": ["pgd"]},
            "records": [{"defense": d, "attack": "pgd", "eps": 0.1, "accuracy": 0.5} for d in (vq, seen)]}
    for name, clean in (("with.png", gray["clean"]), ("without.png", {vq: 0.93, seen: 0.92})):
        report.plot_vqunet_tried({"gray-box": {**gray, "clean": clean}}, [vq, seen], {"white_eps": 0.1}, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_table_sums_the_chain_and_names_a_fine_tuning():
    from nnjpeg import report
    from nnjpeg import robust as R

    rb, _ = _robust({"fmnist/ensemble": [0.93, 0.1, 0.0, 0.0, 0.0], "fmnist/nnjpeg-pgd-at": [0.86, 0.8, 0.76, 0.2, 0.0],
                     "fmnist/vqunet-adv-pgd-at": [0.84, 0.8, 0.7, 0.2, 0.0]},
                    {"fmnist/ensemble": 0.0, "fmnist/nnjpeg-pgd-at": 0.74, "fmnist/vqunet-adv-pgd-at": 0.7}, {})
    metrics = {"fmnist/ensemble": {"epochs": 1, "members_training_s": {"M90": 1800.0, "M80": 1800.0}},
               "fmnist/nnjpeg-pgd-at": {"epochs": 5, "epochs_logged": 5, "eps": 0.1, "training_s_total": 1080.0,
                                        "init": "models/weights/fmnist/pgd-at.keras"},
               "fmnist/vqunet-adv-pgd-at": {"epochs": 0, "eps": None, "training_s_total": 0.0}}  # a composition
    lines = R.training_table(rb, metrics, report.defense_label, report.PAPER["nnjpeg_table1"])
    assert lines[4].startswith("| VQUNet-adv + PGD-AT | – | 0 |")
    assert lines[2] == "| NN-JPEG ensemble | – (noise) | 1 per member x 2 | 93.0 | 0.0 | 0.0 | 1.00 |"
    assert lines[3] == "| NN-JPEG + PGD-AT | 0.1 | 5 (fine-tuning pgd-at) | 86.0 | 76.0 | 74.0 | 0.30 |"
    assert "| Free | 2 | 15 | 64.37 | 43.31 | 43.28 | 52.20 |" in lines


def test_paper_claims_set_each_denoiser_baselines_clean_drop_beside_the_papers():
    from nnjpeg import report

    clean = {"fmnist/classifier": 0.94, "fmnist/defense-vae-classifier": 0.93, "fmnist/cyclegan-classifier": 0.90}
    gray = {"clean": clean, "records": [], "config": {"attacks": [], "n": 1000}}
    lines = report._paper_claims({"gray-box": gray})
    # At 1000 images neither drop is decided: 1.00 (-1.2 to 3.2) and 4.00 (1.6 to 6.4) points against the
    # paper's 1.48 and 1.18 points plus 1.
    assert lines == [
        "- VQUNet paper, Table 1: Defense-VAE costs 1.48 points of clean accuracy; here 1.00 points on 1000 test images "
        "(95 % interval -1.2 to 3.2 points): **not decided at this n** (within 1 point of the paper's drop counts as "
        "reproduced).",
        "- VQUNet paper, Table 1: Defense-CycleGAN costs 1.18 points of clean accuracy; here 4.00 points on 1000 test "
        "images (95 % interval 1.6 to 6.4 points): **not decided at this n** (within 1 point of the paper's drop counts "
        "as reproduced)."]
    # Measured on every test image as well: the claims are judged there, not on the subset.
    full = {"clean": {**clean, "fmnist/cyclegan-classifier": 0.935}, "records": [], "config": {"n": 10000}}
    lines = report._paper_claims({"gray-box": gray, "clean, all": full})
    assert lines[1] == ("- VQUNet paper, Table 1: Defense-CycleGAN costs 1.18 points of clean accuracy; here 0.50 "
                        "points on 10000 test images (95 % interval -0.2 to 1.2 points): **reproduced** (within 1 point "
                        "of the paper's drop counts as reproduced).")


def test_clean_accuracy_on_every_test_image_reuses_the_gray_box_stage_when_it_had_them_all(zoo):
    from nnjpeg import report

    models, (x, y) = zoo
    gray = {"clean": {"nn-jpeg": 0.25, "fmnist/classifier": 0.5}, "records": []}
    # The report's images are the same as the full set's: the gray-box accuracies are taken, no model runs.
    same = report._clean_accuracy(["nn-jpeg"], {}, (x.copy(), y.copy()), False, measured=((x, y), gray))
    assert same == {"records": [], "clean": {"nn-jpeg": 0.25}, "config": {"defenses": ["nn-jpeg"], "n": len(x), "attacks": []}}
    # A subset, or other images of the same count: measured anew.
    for other in ((x[:5], y[:5]), (x[::-1].copy(), y[::-1].copy())):
        fresh = report._clean_accuracy(["nn-jpeg"], models, (x, y), False, measured=(other, gray))
        assert fresh["clean"]["nn-jpeg"] == pytest.approx(evaluate.accuracy(models["nn-jpeg"], x, y))


def test_transfer_ceiling_names_the_best_transferred_half_and_what_the_other_half_would_need():
    from nnjpeg import report

    vq, free = "fmnist/vqunet-mix-classifier", "fmnist/free-at"

    def res(clean, values):
        return {"clean": clean, "config": {"attacks": ["fgsm", "pgd"], "defenses": list(clean)},
                "records": [{"defense": d, "attack": a, "eps": 0.1, "accuracy": v} for (d, a), v in values.items()]}

    gray = res({vq: 0.92, free: 0.88}, {(vq, "fgsm"): 0.85, (vq, "pgd"): 0.86, (free, "fgsm"): 0.87, (free, "pgd"): 0.87})
    black = res({vq: 0.92, free: 0.88}, {(vq, "fgsm"): 0.84, (vq, "pgd"): 0.83, (free, "fgsm"): 0.87, (free, "pgd"): 0.86})
    results, meta = {"gray-box": gray, "black-box": black}, {"white_eps": 0.1}
    assert report.transfer_ceiling(results, [vq], meta) == [
        "The transferred half alone, for every defense in this report that never saw the surrogates, at eps 0.1 under "
        "the worst of fgsm, pgd: the highest is 86.0 % (Free-AT, pgd; 88.0 % clean). Beside a transferred half that high, a mixed 90 % needs "
        "94.0 % of the examples made on the target to be classified right, more than any VQUNet variant here gets "
        "right of the clean images (92.0 %)."]
    # A transferred half that would leave the other half within reach: no comparison with clean accuracy.
    black["records"][2]["accuracy"] = black["records"][3]["accuracy"] = 0.89
    assert report.transfer_ceiling(results, [vq], meta)[0].endswith(
        "the highest is 89.0 % (Free-AT, fgsm; 88.0 % clean). Beside a transferred half that high, a mixed 90 % needs "
        "91.0 % of the examples made on the target to be classified right.")
    # At 90 % or more nothing is needed of the other half beyond the goal itself; without a black-box run, nothing.
    black["records"][2]["accuracy"] = black["records"][3]["accuracy"] = 0.95
    assert report.transfer_ceiling(results, [vq], meta)[0].endswith("the highest is 95.0 % (Free-AT, fgsm; 88.0 % clean).")
    assert report.transfer_ceiling({"gray-box": gray}, [vq], meta) == []
    # A variant trained on the surrogates' own examples is no ceiling, however high: it gets its own line.
    seen = "fmnist/vqunet-oracle-classifier"
    for res_, made, moved in ((gray, 0.8, 0.78), (black, 0.97, 0.96)):
        res_["clean"][seen] = 0.9
        res_["config"]["defenses"].append(seen)
        res_["records"] += [{"defense": seen, "attack": "fgsm", "eps": 0.1, "accuracy": made},
                            {"defense": seen, "attack": "pgd", "eps": 0.1, "accuracy": moved}]
    lines = report.transfer_ceiling(results, [vq, seen], meta)
    assert lines[0].endswith("the highest is 95.0 % (Free-AT, fgsm; 88.0 % clean).")
    assert lines[1] == ("VQUNet-oracle, trained on examples made on the surrogates themselves, keeps 96.0 % of the "
                        "transferred examples under its worst attack (pgd): 90 % or more; of the examples made on the "
                        "target it keeps 78.0 % (pgd), of the clean images 90.0 %.")
    black["records"][-1]["accuracy"] = 0.87
    assert report.transfer_ceiling(results, [vq, seen], meta)[1].startswith(
        "VQUNet-oracle, trained on examples made on the surrogates themselves, keeps 87.0 % of the transferred examples "
        "under its worst attack (pgd): still under 90 %;")
    # Without its gray-box cells, only what was measured.
    gray["records"] = [r for r in gray["records"] if r["defense"] != seen]
    assert report.transfer_ceiling(results, [vq, seen], meta)[1].endswith(
        "still under 90 %; of the clean images it keeps 90.0 %.")


def test_reading_judges_a_defense_by_the_strongest_white_box_attack_run_on_it():
    from nnjpeg import report

    names = ["fmnist/classifier", "fmnist/vqunet-oracle-classifier", "fmnist/pgd-at"]
    clean = dict(zip(names, (0.94, 0.9, 0.84), strict=True))
    gray = {"clean": clean, "config": {"defenses": names, "attacks": ["pgd"]},
            "records": [{"defense": d, "attack": "pgd", "eps": 0.1, "accuracy": v}
                        for d, v in zip(names, (0.0, 0.8, 0.83), strict=True)]}
    white = {"clean": clean, "config": {"attacks": ["pgd"], "eps": [0.1]},
             "records": [{"defense": d, "attack": "pgd", "eps": 0.1, "accuracy": v}
                         for d, v in zip(names, (0.0, 0.108, 0.72), strict=True)]}
    lines = report.reading({"gray-box": gray, "white-box": white})[:3]
    assert lines[1].endswith("white-box pgd at eps 0.1: 10.8 % — holds partly under the adaptive attack.")
    assert lines[2].endswith("72.0 % — holds under this adaptive attack (check stronger ones before trusting it).")
    # PGD-100 with restarts takes the first to 0 %: it falls, and the second holds under it.
    rb, _ = _robust({d: [clean[d], 0.5, v, 0.1, 0.0] for d, v in zip(names[1:], (0.0, 0.66), strict=True)},
                    dict(zip(names[1:], (0.0, 0.66), strict=True)), {})
    lines = report.reading({"gray-box": gray, "white-box": white, "robust": rb})[:3]
    assert lines[1].endswith("white-box pgd at eps 0.1: 10.8 %, under the strongest white-box evaluation 0.0 % — "
                             "**falls to the adaptive attack**.")
    assert lines[2].endswith("72.0 %, under the strongest white-box evaluation 66.0 % — holds under the strongest "
                             "white-box evaluation here.")
    assert "strongest" not in lines[0]


def test_shards_merged_equal_the_whole_run_cell_for_cell(zoo):
    # FGSM and BIM draw nothing at random, so each image's example is the same in a shard as in the
    # whole run; the surrogates keep their images (mixed), so every count adds up exactly.
    models, data = zoo
    run = lambda shard=None: evaluate.evaluate(  # noqa: E731
        ["fmnist/classifier", "nn-jpeg"], ["fgsm", "bim"], [0.05, 0.1], "mixed", data=data, load=models.__getitem__,
        attack_kwargs={"bim": {"nb_iter": 3}}, progress=False, shard=shard)
    whole = run()
    shards = [run((i, 3)) for i in range(3)]
    assert [s["config"]["n"] for s in shards] == [11, 11, 10] and [s["config"]["shard"] for s in shards] == [
        [0, 3], [1, 3], [2, 3]]
    merged = evaluate.merge(shards[::-1], ["c.json", "b.json", "a.json"])  # any order
    assert merged["clean"] == whole["clean"] and merged["clean_correct"] == whole["clean_correct"]
    assert len(merged["records"]) == len(whole["records"]) == 8
    for m, w in zip(merged["records"], whole["records"], strict=True):
        exact = {k: v for k, v in w.items() if k != "mean_l2"}
        assert {k: m[k] for k in exact} == exact
        assert m["mean_l2"] == pytest.approx(w["mean_l2"], rel=1e-6)
    assert {k: v for k, v in merged["config"].items() if k != "wall_time_s"} == {
        k: v for k, v in whole["config"].items() if k != "wall_time_s"}
    assert evaluate.markdown(merged) == evaluate.markdown(whole)


def test_merge_refuses_shards_that_do_not_make_one_run(zoo):
    models, data = zoo
    run = lambda shard, eps=0.1: evaluate.evaluate(  # noqa: E731
        ["nn-jpeg"], ["fgsm"], [eps], "gray-box", data=data, load=models.__getitem__, progress=False, shard=shard)
    a, b = run((0, 2)), run((1, 2))
    with pytest.raises(ValueError, match=r"Expected each shard once. Received: shard 0/2 in a.json and again.json"):
        evaluate.merge([a, a, b], ["a.json", "again.json", "b.json"])
    with pytest.raises(ValueError, match=r"Expected all 2 shards. Received: missing \[1\] \(given: 0/2 a.json\)"):
        evaluate.merge([a], ["a.json"])
    with pytest.raises(ValueError, match=r"Expected shards of one run \(the same settings\). Received: \['other.json'\] "
                                         r"differ from a.json in \['eps'\]"):
        evaluate.merge([a, run((1, 2), eps=0.05)], ["a.json", "other.json"])
    with pytest.raises(ValueError, match=r"Expected shards of one split into 2. Received: c.json is shard 2/3"):
        evaluate.merge([a, b, run((2, 3))], ["a.json", "b.json", "c.json"])
    whole = evaluate.evaluate(["nn-jpeg"], ["fgsm"], [0.1], "gray-box", data=data, load=models.__getitem__,
                              progress=False)
    with pytest.raises(ValueError, match=r"Expected the results of a sharded run .* Received: \['whole.json'\]"):
        evaluate.merge([a, whole], ["a.json", "whole.json"])
    with pytest.raises(ValueError, match=r"Expected shard \(i, k\) with 0 <= i < k <= 32 \(the images\). Received: \(2, 2\)"):
        run((2, 2))


def test_cli_shards_and_merge(tmp_path, capsys):
    from nnjpeg.cli import main

    common = ["evaluate", "--defense", "fmnist/classifier", "--attack", "fgsm", "--n", "12", "--scenario", "mixed"]
    for i in range(2):
        assert main([*common, "--shard", f"{i}/2", "--json", str(tmp_path / f"s{i}.json"),
                     "--out", str(tmp_path / f"o{i}")]) == 0
    assert main([*common, "--json", str(tmp_path / "whole.json"), "--out", str(tmp_path / "whole")]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "s1.json"), str(tmp_path / "s0.json"), "--json", str(tmp_path / "m.json"),
                 "--out", str(tmp_path / "m")]) == 0
    assert "Merged 2 shards of 12 images" in capsys.readouterr().out
    merged, whole = (json.loads((tmp_path / f).read_text()) for f in ("m.json", "whole.json"))
    assert [r["accuracy"] for r in merged["records"]] == [r["accuracy"] for r in whole["records"]]
    assert [(r["gray_box_correct"], r["black_box_correct"]) for r in merged["records"]] == [
        (r["gray_box_correct"], r["black_box_correct"]) for r in whole["records"]]
    assert (tmp_path / "m" / "results.md").read_text() == (tmp_path / "whole" / "results.md").read_text()
    assert main(["merge", str(tmp_path / "s0.json"), "--json", str(tmp_path / "bad.json")]) == 2
    assert "Expected all 2 shards. Received: missing [1]" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "nothing.json"), "--json", str(tmp_path / "bad.json")]) == 2
    assert "Expected the JSON file of an evaluate run. Received: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--shard", "2/2"])
    assert "argument --shard: expected I/K with 0 <= I < K, e.g. 0/4. Received: '2/2'" in capsys.readouterr().err


def _without_times(value, l2=None):
    """`value` without its wall times; its mean L2 distances moved to the list `l2` (float32 sums, whose
    last bits depend on the images' grouping)."""
    if isinstance(value, dict):
        if l2 is not None and "mean_l2" in value:
            l2.append(value["mean_l2"])
        return {k: _without_times(v, l2) for k, v in value.items() if k not in ("wall_time_s", "seconds", "mean_l2")}
    if isinstance(value, list):
        return [_without_times(v, l2) for v in value]
    return value


def test_report_in_two_shards_merged_equals_the_unsplit_report(zoo, tmp_path, capsys):
    from nnjpeg import report
    from nnjpeg.cli import main

    models, data = zoo
    # Attacks that draw nothing at random (PGD's random start depends on the batch it is drawn for), so
    # that every image's example is the same in a shard as in the whole run.
    kw = dict(eps=(0.1,), analysis_eps=(0.1,), gray_attacks=("fgsm", "bim"), black_attacks=("fgsm",), l2_attacks=(),
              white_attack="bim", progress=False, defenses=["fmnist/classifier", "nn-jpeg"], load=models.__getitem__,
              data=(data[0][:12], data[1][:12]), available=list(models), white_n=10, robust=False, bpda_n=0,
              ablation_attacks=("fgsm",), fingerprint={"fmnist/classifier": "a", "nn-jpeg": "b"}.get)
    whole = report.run(tmp_path / "whole", **kw)
    shards = [report.run(tmp_path / f"s{i}", **kw, shard=(i, 2)) for i in range(2)]
    assert [s["results"]["white-box"]["config"]["n"] for s in shards] == [5, 5]
    assert not (tmp_path / "s0" / "README.md").exists() and "ablation" not in shards[0]["results"]
    merged = report.run(tmp_path / "merged", **kw, merge=[tmp_path / "s1", tmp_path / "s0" / "stages.json"])
    l2_merged, l2_whole = [], []
    assert _without_times(merged["results"], l2_merged) == _without_times(whole["results"], l2_whole)
    assert l2_merged == pytest.approx(l2_whole, rel=1e-6) and len(l2_whole) > 10
    assert merged["results"]["white-box"]["config"]["n"] == 10 and merged["results"]["gray-box"]["config"]["n"] == 12
    assert (tmp_path / "merged" / "README.md").read_text().count("| nn-jpeg") == (
        tmp_path / "whole" / "README.md").read_text().count("| nn-jpeg")

    with pytest.raises(ValueError, match=r"Expected all 2 shards. Received: missing \[1\]"):
        report.run(tmp_path / "bad", **kw, merge=[tmp_path / "s0"])
    with pytest.raises(ValueError, match=r"Expected each shard once. Received: shard 0/2 in .*s0.stages.json and "):
        report.run(tmp_path / "bad", **kw, merge=[tmp_path / "s0", tmp_path / "s0" / "stages.json", tmp_path / "s1"])
    with pytest.raises(ValueError, match=r"Expected shards made with this report's settings. Received: .*s0.stages.json "
                                         r"differs in \['white_n'\]"):
        report.run(tmp_path / "bad", **{**kw, "white_n": 8}, merge=[tmp_path / "s0", tmp_path / "s1"])
    with pytest.raises(ValueError, match=r"Expected the checkpoint of a sharded report .* Received: .*whole.stages.json"):
        report.run(tmp_path / "bad", **kw, merge=[tmp_path / "whole", tmp_path / "s1"])
    with pytest.raises(ValueError, match=r"Received: .*nowhere, no such file"):
        report.run(tmp_path / "bad", **kw, merge=[tmp_path / "nowhere"])
    with pytest.raises(SystemExit):
        main(["report", "--shard", "2/2"])
    assert "argument --shard: expected I/K with 0 <= I < K" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--shard", "0/2", "--merge", "a"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_merged_reports_command_is_the_unsplit_one():
    from nnjpeg import report

    assert report._unsplit(["--n", "8", "--shard", "0/2", "--resume", "--out", "o"]) == ["--n", "8", "--out", "o"]
    assert report._unsplit(["--merge", "a", "b", "--n", "8", "--shard=1/2"]) == ["--n", "8"]


@pytest.mark.parametrize("n, verdicts", [
    (10000, ["reproduced", "not decided at this n", "not reproduced"]),
    (1000, ["not decided at this n"] * 3),
])
def test_the_papers_clean_drop_claims_are_judged_with_their_interval(n, verdicts):
    from nnjpeg import report

    # Paper drops: Defense-VAE 1.48, HFL-VAE 1.50, CycleGAN 1.18 points; reproduced within 1 point more.
    target = 0.9400
    clean = {"fmnist/classifier": target, "fmnist/defense-vae-classifier": target - 0.0050,
             "fmnist/hfl-vae-classifier": target - 0.0230, "fmnist/cyclegan-classifier": target - 0.0330}
    results = {"gray-box": {"clean": clean, "records": [], "config": {"n": n, "defenses": list(clean)}},
               "clean, all": {"clean": clean, "records": [], "config": {"n": n, "defenses": list(clean)}}}
    lines = [line for line in report._paper_claims(results) if "VQUNet paper, Table 1" in line]
    assert [line.split("**")[1] for line in lines] == verdicts
    assert f"on {n} test images (95 % interval" in lines[0]


def test_per_image_results_add_up_merge_and_give_the_worst_case(zoo):
    models, data = zoo
    run = lambda attacks, shard=None, n=32: evaluate.evaluate(  # noqa: E731
        ["fmnist/classifier", "nn-jpeg"], attacks, [0.05], "white-box", data=(data[0][:n], data[1][:n]),
        load=models.__getitem__, attack_kwargs={"bim": {"nb_iter": 3}}, progress=False, shard=shard, per_image=True)
    whole = run(["fgsm", "bim"])
    for d in ("fmnist/classifier", "nn-jpeg"):
        clean = evaluate.unpack_mask(whole["clean_right"][d], 32)
        assert int(clean.sum()) == whole["clean_correct"][d]
    for r in whole["records"]:
        assert int(evaluate.unpack_mask(r["right"], 32).sum()) == r["correct"]
    # Shards' bits follow one another into the whole run's.
    merged = evaluate.merge([run(["fgsm", "bim"], (i, 3)) for i in range(3)])
    assert merged["clean_right"] == whole["clean_right"]
    assert [r["right"] for r in merged["records"]] == [r["right"] for r in whole["records"]]
    # The worst case per image: right clean and under every attack, on the images all of them ran on.
    prefix = run(["fgsm"], n=20)
    mask, n = evaluate.worst_per_image([whole, prefix], "nn-jpeg")
    assert n == 20
    expected = evaluate.unpack_mask(whole["clean_right"]["nn-jpeg"], 32)[:20]
    for r in [*whole["records"], *prefix["records"]]:
        if r["defense"] == "nn-jpeg":
            expected = expected & evaluate.unpack_mask(r["right"], r["n"])[:20]
    assert np.array_equal(mask, expected)
    assert mask.sum() <= min(r["correct"] for r in prefix["records"] if r["defense"] == "nn-jpeg")
    with pytest.raises(ValueError, match=r"Expected per_image with the gray-box, black-box or white-box scenario"):
        evaluate.evaluate(["nn-jpeg"], ["fgsm"], [0.1], "mixed", data=data, load=models.__getitem__, progress=False,
                          per_image=True)
    with pytest.raises(ValueError, match=r"Expected 4 bytes for 32 images. Received: 3"):
        evaluate.unpack_mask("00ff00", 32)
    with pytest.raises(ValueError, match=r"Expected evaluations with per_image=True holding 'nn-jpeg'"):
        evaluate.worst_per_image([evaluate.evaluate(["nn-jpeg"], ["fgsm"], [0.1], "white-box", data=data,
                                                    load=models.__getitem__, progress=False)], "nn-jpeg")
