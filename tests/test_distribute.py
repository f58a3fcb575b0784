"""Training under tf.distribute: every custom train_step takes the same step under a two-replica
MirroredStrategy as on one device, VQUNet's codebook restarts keep the replicas' copies identical, a
recipe trains with --strategy mirrored and, as two worker processes, with --strategy multi-worker,
and a strategy a recipe cannot honour is refused.

TensorFlow's logical devices must be configured before TensorFlow initializes, so the MirroredStrategy
checks run in ONE fresh process (two logical CPU devices), whose results the tests below read.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import namespace

pytest.importorskip("keras")
pytest.importorskip("tensorflow")

# Each case: a tiny model, copied with set_weights so both runs start from the same weights, fit for
# one step on one global batch of 8 (plain SGD: the update is exactly lr * gradient) with no strategy
# and under MirroredStrategy over two CPUs (4 images per replica). Tolerances rtol 1e-4, atol 1e-6:
# the reductions (per replica, then across replicas) run in another order than on one device.
SCRIPT = r'''
import json, sys, time, traceback
from pathlib import Path

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np
from skimage import data

from nnjpeg import datasets
from nnjpeg.models import build_classifier, distribute, train
from nnjpeg.models.adversarial import AdversarialTrainer, build_madry_cnn
from nnjpeg.models.cyclegan import DefenseCycleGAN
from nnjpeg.models.defense_vae import DefenseVAE
from nnjpeg.models.defenses import EndToEnd
from nnjpeg.models.ensemble import NoisyFineTuner
from nnjpeg.models.vqunet import VQUNet

MIRRORED = train.get_strategy("mirrored")  # MirroredStrategy(["/cpu:0", "/cpu:1"]), the recipe's below
DEFAULT = tf.distribute.get_strategy()
BATCH, SIZE = 8, 8


def crops(image, row):
    """Eight 8x8 grey crops of a photograph (32x32 patches, every 4th pixel), float32 in [0, 1]."""
    patches = [image[row : row + 32 : 4, c : c + 32 : 4] for c in range(40, 360, 40)]
    return np.stack(patches)[..., None] / np.float32(255)


camera = crops(data.camera(), 120)
x = 0.25 + 0.5 * camera  # pixels in [0.25, 0.75]
other = crops(data.coins(), 90)
y = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)


def adversarial():
    # eps = 1e-9 is under half a float32 ulp of every pixel in [0.25, 0.75]: PGD's random start and
    # its step round back to x, so the adversarial batch is x itself in both runs (no randomness).
    return AdversarialTrainer(build_madry_cnn((SIZE, SIZE, 1), 3), method="pgd", eps=1e-9, steps=1)


def vae_without_sampling(model):
    # No sampling noise: the log-variance half of the encoder's last Dense is pinned at -300, so
    # exp(0.5 * log_var) underflows to exactly 0 in float32 and z is the posterior mean.
    dense = model.encoder.layers[-1]
    kernel, bias = dense.get_weights()
    kernel[:, model.latent_dim :] = 0.0
    bias[model.latent_dim :] = -300.0
    dense.set_weights([kernel, bias])


def end_to_end():
    classifier = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    return EndToEnd(VQUNet(channels=1, widths=(2,), num_codes=4, restart_every=0), classifier, pad=0)


def noisy_tuner():
    # An L2 regularizer: its term is in the loss that must be scaled too (Keras scales it).
    member = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                               keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(0.1))])
    return NoisyFineTuner(member)


def vqunet():
    # Restarts forced at every step: usage_decay 0 makes usage the batch's lookup shares, so the codes
    # no input picks are dead at once; the draw is seeded by the step (tf.random.stateless_uniform).
    return VQUNet(channels=1, widths=(2, 2), num_codes=8, restart_every=1, usage_decay=0.0)


build = lambda model: model(x[:1])  # noqa: E731
# name -> (constructor, the global batch, builder, weights' preparation on the first copy)
CASES = {
    "AdversarialTrainer": (adversarial, (x, y), lambda m: m.build((None, SIZE, SIZE, 1)), None),
    "DefenseCycleGAN": (lambda: DefenseCycleGAN(channels=1, width=1, blocks=0), (other, camera), build, None),
    "DefenseVAE": (lambda: DefenseVAE(image_shape=(SIZE, SIZE, 1), latent_dim=2, widths=(2,), hf_weight=1.0),
                   (other, camera), build, vae_without_sampling),
    "EndToEnd": (end_to_end, ((other, camera), y), build, None),
    # The noisy copy comes from the input pipeline (noisy_pipeline), not from the step: a fixed array.
    "NoisyFineTuner": (noisy_tuner, ((camera, other), y), build, None),
    "VQUNet": (vqunet, (other, camera), build, None),
}


def make(name, strategy, weights=None):
    constructor, _, builder, prepare = CASES[name]
    with strategy.scope():
        model = constructor()
        builder(model)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    if weights is not None:
        model.set_weights(weights)
    elif prepare is not None:
        prepare(model)
    return model


def step(model, name):
    batches = tf.data.Dataset.from_tensor_slices(CASES[name][1]).batch(BATCH)
    history = model.fit(batches, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False).history
    return {k: float(v[-1]) for k, v in history.items()}


def compare(name):
    keras.utils.set_random_seed(0)
    one = make(name, DEFAULT)
    start = one.get_weights()
    two = make(name, MIRRORED, start)
    logs_one, logs_two = step(one, name), step(two, name)
    pairs = list(zip(one.get_weights(), two.get_weights(), strict=True))
    update = max(float(np.max(np.abs(a - s), initial=0.0)) for (a, _), s in zip(pairs, start))
    same = (all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in pairs) and logs_one.keys() == logs_two.keys()
            and all(np.isclose(logs_one[k], logs_two[k], rtol=1e-4, atol=1e-6) for k in logs_one))
    return {"max_abs_diff": max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in pairs), "max_update": update,
            "logs": logs_one, "logs_mirrored": logs_two, "passed": bool(same and update > 1e-3)}, two


results, mirrored = {"replicas": MIRRORED.num_replicas_in_sync}, {}
for name in CASES:  # a crash is recorded, so that the other cases still report
    try:
        results[name], mirrored[name] = compare(name)
    except Exception:
        results[name] = {"passed": False, "error": traceback.format_exc()[-3000:]}
results["vqunet_restart"] = None
if "VQUNet" in mirrored:  # its step restarted codes: both replicas' copies of the codebooks and usage
    copies = [np.stack([np.asarray(v) for v in MIRRORED.experimental_local_results(var.value)])
              for q in mirrored["VQUNet"].quantizers for var in (q.codebook.embeddings, q.usage)]
    results["vqunet_restart"] = {"restarts": [results["VQUNet"]["logs_mirrored"][f"restarts_{d}"] for d in (1, 2)],
                                 "replicas_identical": all(np.array_equal(c[0], c[1]) for c in copies)}

# The comparison can fail: with the loss left unscaled, the two replicas' summed gradients double the step.
scale_loss = distribute.scale_loss
distribute.scale_loss = lambda loss: loss
try:
    control, _ = compare("NoisyFineTuner")
finally:
    distribute.scale_loss = scale_loss
results["unscaled"] = {k: control[k] for k in ("max_abs_diff", "max_update", "passed")}

try:
    with MIRRORED.scope():
        AdversarialTrainer(build_madry_cnn((SIZE, SIZE, 1), 3), method="free", batch_size=BATCH).build(
            (None, SIZE, SIZE, 1))
    results["free_refused"] = None
except ValueError as error:
    results["free_refused"] = str(error)

# A recipe end to end under --strategy mirrored: VQUNet, the classifier's fine-tuning, EndToEnd.
results["recipe"] = None
if datasets.DEBIAN_FASHION_MNIST.is_dir():
    tmp = Path(sys.argv[1])
    build_classifier(input_shape=(28, 28, 1), base_width=4, blocks=1).save(tmp / "base.keras")
    started = time.time()
    try:
        code = train.main(["train", "vqunet", "--unet-widths", "4,8", "--num-codes", "8", "--restart-every", "1",
                       "--classifier-epochs", "1", "--end-to-end-epochs", "1", "--limit", "32", "--batch-size", "8",
                           "--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0", "--base",
                           str(tmp / "base.keras"), "--out", str(tmp / "run"), "--strategy", "mirrored"])
        results["recipe"] = {"code": code, "s": time.time() - started,
                             "files": sorted(p.name for p in (tmp / "run").iterdir()),
                             "metrics": json.loads((tmp / "run" / "metrics.json").read_text())}
    except Exception:
        results["recipe"] = {"error": traceback.format_exc()[-3000:]}
print("RESULTS " + json.dumps(results))
'''

NAMES = ("AdversarialTrainer", "DefenseCycleGAN", "DefenseVAE", "EndToEnd", "NoisyFineTuner", "VQUNet")


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    """The results of SCRIPT, run once in a fresh process with two logical CPU devices."""
    import nnjpeg

    tmp = tmp_path_factory.mktemp("distribute")
    # The installed nnjpeg the tests import (the checkout's own folder is not on the path: cwd=tmp).
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(nnjpeg.__file__)), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [row for row in proc.stdout.splitlines() if row.startswith("RESULTS ")][-1]
    return json.loads(line[len("RESULTS ") :])


@pytest.mark.parametrize("name", NAMES)
def test_train_step_under_mirrored_strategy_equals_one_device(distributed, name):
    assert distributed["replicas"] == 2
    result = distributed[name]
    assert result["passed"], result
    assert result["max_abs_diff"] < 1e-3 * result["max_update"], result


def test_the_comparison_fails_with_the_loss_left_unscaled(distributed):
    # The old code's behaviour: each replica's mean gradient, summed over two replicas, is twice the
    # global mean's, so the step differs from one device's by the whole update.
    control = distributed["unscaled"]
    assert not control["passed"]
    assert control["max_abs_diff"] > 0.5 * control["max_update"], control


def test_vqunet_restarts_keep_both_replicas_codebooks_identical(distributed):
    restart = distributed["vqunet_restart"]
    assert restart is not None, distributed["VQUNet"].get("error")
    assert min(restart["restarts"]) > 0, restart  # codes were restarted at both depths
    assert restart["replicas_identical"]
    # Counted once, as on one device (each replica restarts the same codes).
    assert [distributed["VQUNet"]["logs"][f"restarts_{d}"] for d in (1, 2)] == restart["restarts"]


def test_free_adversarial_training_refuses_more_than_one_replica(distributed):
    assert distributed["free_refused"] is not None
    assert distributed["free_refused"].startswith("Expected one replica for method 'free'")
    assert "Received: 2 replicas in sync" in distributed["free_refused"]


def test_denoiser_recipe_trains_under_mirrored_strategy(distributed):
    recipe = distributed["recipe"]
    if recipe is None:
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    assert "error" not in recipe, recipe.get("error")
    assert recipe["code"] == 0
    assert {"denoiser.keras", "denoiser_end_to_end.keras", "final.keras", "log.csv", "log_classifier.csv",
            "log_end_to_end.csv", "metrics.json"} <= set(recipe["files"])
    assert recipe["metrics"]["model"] == "vqunet-classifier" and "--strategy mirrored" in recipe["metrics"]["command"]


# Two `nnjpeg train` processes, the workers of one MultiWorkerMirroredStrategy cluster on 127.0.0.1 (ports
# free in the namespace), each running argv; the first to fail stops the run (the other would wait on
# its collective ops), and none outlives the timeout. Prints the workers' exit codes.
CLUSTER = r'''
import json, os, socket, subprocess, sys, time

argv, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
for s in sockets:
    s.close()
workers, deadline = [], time.monotonic() + timeout
try:
    for index in range(2):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        with open(f"worker-{index}.log", "w") as log:
            workers.append(subprocess.Popen([sys.executable, "-m", "nnjpeg", "train", *argv], stdout=log,
                                            stderr=subprocess.STDOUT, env=dict(os.environ, TF_CONFIG=json.dumps(task))))
    while (any(w.poll() is None for w in workers) and not any(w.poll() for w in workers)
           and time.monotonic() < deadline):
        time.sleep(0.2)
finally:
    codes = [w.poll() for w in workers]
    for w in workers:
        w.kill()
        w.wait()
print("CODES " + json.dumps(codes))
'''


def _tail(log) -> str:
    """The end of a worker's log, without TensorFlow's start-up lines."""
    if not log.is_file():
        return "(no log)"
    lines = [line for line in log.read_text().splitlines() if not line.startswith(("I0000", "W0000", "E0000"))]
    return "\n".join(lines)[-3000:]


def test_two_workers_train_the_same_weights_and_the_chief_alone_exports(tmp_path):
    import keras

    import nnjpeg
    from nnjpeg import datasets

    if not namespace.available():
        pytest.skip(namespace.SKIP_REASON)
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    out, export = tmp_path / "run", tmp_path / "export" / "classifier.keras"
    # Both workers run the same command, --out and --export included, as the docs tell a cluster to.
    argv = ["classifier", "--strategy", "multi-worker", "--width", "2", "--limit", "64", "--batch-size", "16",
            "--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0", "--out", str(out), "--export", str(export)]
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(tmp_path),
           "PYTHONPATH": os.path.dirname(os.path.dirname(nnjpeg.__file__))}
    proc = namespace.run_python(CLUSTER, [json.dumps(argv), 240], cwd=tmp_path, env=env, timeout=300)
    logs = "\n".join(f"worker {i}: " + _tail(tmp_path / f"worker-{i}.log") for i in range(2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.split("CODES ")[-1]) == [0, 0], logs

    # The chief (worker 0) saved into --out and exported; worker 1 saved into --out/worker-1, nothing else.
    run_files = {"final.keras", "last.keras", "log.csv", "metrics.json"}
    assert {p.name for p in out.iterdir()} == run_files | {"worker-1"}
    assert {p.name for p in (out / "worker-1").iterdir()} == run_files
    assert {p.name for p in export.parent.iterdir()} == {"classifier.keras", "classifier.md", "classifier.json"}
    for folder in (out, out / "worker-1"):
        assert len((folder / "log.csv").read_text().splitlines()) == 2  # the header and one epoch, one worker's
        assert "--strategy multi-worker" in json.loads((folder / "metrics.json").read_text())["command"]

    chief = keras.saving.load_model(export, compile=False)
    other = keras.saving.load_model(out / "worker-1" / "final.keras", compile=False)
    trained = {w.path: np.asarray(w) for w in chief.trainable_weights}
    assert trained.keys() == {w.path for w in other.trainable_weights}
    # Both applied the same all-reduced gradients: equal bit for bit. (Batch normalization's moving
    # statistics are not compared: each worker's are those of its own half of the batch.)
    for w in other.trainable_weights:
        np.testing.assert_array_equal(np.asarray(w), trained[w.path], err_msg=w.path)
    # And the two steps changed them (the second one: the warm-up's rate is 0 at the first): every
    # batch normalization's scale started at 1, its offset and the logits' bias at 0.
    start = {path: 1.0 if path.endswith("/gamma") else 0.0 for path in trained
             if path.endswith(("/gamma", "/beta")) or path == "logits/bias"}
    assert len(start) == 2 * sum(isinstance(layer, keras.layers.BatchNormalization) for layer in chief.layers) + 1
    moved = {path: float(np.max(np.abs(trained[path] - value))) for path, value in start.items()}
    assert min(moved.values()) > 1e-4, moved


@pytest.mark.parametrize("model, strategy, message", [
    ("free-at", "mirrored", r"Expected --strategy default for free-at \(its perturbation, .*\)\. "
                            r"Received: --strategy mirrored"),
    ("free-at", "multi-worker", r"Expected --strategy default for free-at .* Received: --strategy multi-worker"),
    ("jpeg75-classifier", "mirrored", r"Expected --strategy default for jpeg75-classifier \(a preprocessing defense, "
                                      r"nothing is trained\)\. Received: --strategy mirrored"),
    ("tvm-classifier", "multi-worker", r"Expected --strategy default for tvm-classifier .* multi-worker"),
])
def test_a_strategy_a_recipe_cannot_honour_is_refused_before_any_work(model, strategy, message, tmp_path):
    from nnjpeg.models import train

    with pytest.raises(ValueError, match=message):
        train.main(["train", model, "--strategy", strategy, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


@pytest.mark.parametrize("model", ["vqunet", "classifier", "ensemble"])
def test_multi_worker_without_tf_config_is_refused(model, tmp_path, monkeypatch):
    from nnjpeg.models import train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=rf"Expected the TF_CONFIG environment variable .* for --strategy multi-worker "
                                         rf"\({model}\)\. Received: TF_CONFIG unset"):
        train.main(["train", model, "--strategy", "multi-worker", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"Expected the TF_CONFIG .*Received: TF_CONFIG unset"):
        train.get_strategy("multi-worker")


def test_default_strategy_is_tensorflows_own():
    import tensorflow as tf

    from nnjpeg.models import train

    assert train.get_strategy("default") is tf.distribute.get_strategy()


def test_unknown_strategy_is_refused():
    from nnjpeg.models import train

    with pytest.raises(ValueError, match=r"Expected --strategy in \('default', 'mirrored', 'multi-worker'\)\. "
                                         r"Received: 'tpu'"):
        train.get_strategy("tpu")
    with pytest.raises(SystemExit):  # argparse: the choices are default, mirrored, multi-worker
        train.main(["train", "vqunet", "--strategy", "tpu"])
