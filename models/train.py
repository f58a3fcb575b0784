"""`nnjpeg train`: model.fit training scripts with checkpoints, CSV logs, resumption and model cards.

    nnjpeg train classifier --dataset fashion-mnist --epochs 30 --out runs/classifier \
        --export models/weights/fmnist/classifier.keras

Every run is seeded (`--seed`), checkpoints every epoch (`last.keras` and a `backup/` that
`keras.callbacks.BackupAndRestore` resumes from when the same command is run again), logs to
`log.csv`, and writes `metrics.json`. `--export` saves the final model, without optimizer state,
next to a generated model card (`.md`) and metrics (`.json`). `--strategy mirrored` trains under
`tf.distribute.MirroredStrategy` over every visible device, `--strategy multi-worker` under
`tf.distribute.MultiWorkerMirroredStrategy` over the cluster of the TF_CONFIG environment variable
(every worker runs the same command; the chief writes --out and --export, any other worker its own
folder in --out, e.g. `worker-1`); `--batch-size` is then the global batch, split among the
replicas. A recipe that cannot run distributed (`SINGLE_REPLICA`) refuses them before any work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from nnjpeg import _args, datasets

from . import backbones as _backbones

DATASETS = ("fashion-mnist", "cifar10")  # held in memory; "folder:DIR" and "tfds:NAME" are streamed
STREAMED = ("folder:", "tfds:")


def dataset_name(text: str) -> str:
    """--dataset: fashion-mnist, cifar10, folder:DIR or tfds:NAME (`nnjpeg.datasets.load`'s names)."""
    if text in DATASETS or (text.startswith(STREAMED) and text.split(":", 1)[1]):
        return text
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(DATASETS)}, folder:DIR or tfds:NAME. Received: {text!r}")


def load_dataset(name: str, path=None):
    """Returns ((x_train, y_train), (x_test, y_test)) as uint8 with a channel axis."""
    if name == "fashion-mnist":
        (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist(path)
        return (xtr[..., np.newaxis], ytr), (xte[..., np.newaxis], yte)
    if name == "cifar10":
        return datasets.load_cifar10(path)
    raise ValueError(f"Expected --dataset in {DATASETS}. Received: {name!r}")


def load_splits(args: argparse.Namespace):
    """The training split of a streamed --dataset, and the split it is evaluated on: "test", else
    "val" (ImageNet's labelled evaluation split) where the source has no test split."""
    size = tuple(args.image_size) if args.image_size else None
    return (datasets.load(args.dataset, "train", args.data, image_size=size),
            datasets.load_evaluation(args.dataset, args.data, image_size=size))


def augment_fn(height: int, width: int, flip: bool, pad: int, erase_p: float):
    """Random flip, pad-and-crop and random erasing (Zhong et al., 2020) with stateless seeds."""
    import tensorflow as tf

    def fn(example, seed):
        x, y = example
        x = x if x.dtype == tf.float32 else tf.cast(x, tf.float32) / 255.0  # float32 is already in [0, 1]
        seeds = tf.random.experimental.stateless_split(seed, 4)
        if flip:
            x = tf.image.stateless_random_flip_left_right(x, seeds[0])
        if pad:
            x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]])
            x = tf.image.stateless_random_crop(x, (height, width, x.shape[-1]), seeds[1])
        if erase_p > 0:
            u = tf.random.stateless_uniform((5,), seeds[2])
            area = (0.02 + 0.23 * u[0]) * height * width
            aspect = tf.exp(tf.math.log(0.3) + (tf.math.log(3.3) - tf.math.log(0.3)) * u[1])
            eh = tf.clip_by_value(tf.cast(tf.sqrt(area * aspect), tf.int32), 1, height)
            ew = tf.clip_by_value(tf.cast(tf.sqrt(area / aspect), tf.int32), 1, width)
            y0 = tf.cast(u[2] * tf.cast(height - eh + 1, tf.float32), tf.int32)
            x0 = tf.cast(u[3] * tf.cast(width - ew + 1, tf.float32), tf.int32)
            rows = tf.range(height)[:, None]
            cols = tf.range(width)[None, :]
            box = (rows >= y0) & (rows < y0 + eh) & (cols >= x0) & (cols < x0 + ew) & (u[4] < erase_p)
            noise = tf.random.stateless_uniform(tf.shape(x), seeds[3])
            x = tf.where(box[:, :, None], noise, x)
        return x, y

    return fn


def augmented_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, augment: bool):
    """Shuffled, endlessly repeated training batches; with `augment`, the target classifier's
    augmentation (random flip, pad-2-and-crop, random erasing with p = 0.5).

    Shape:
        x: (N, H, W, C) uint8, or float32 in [0, 1] (e.g. a denoiser's outputs); batches float32.
    """
    import tensorflow as tf

    h, w = x.shape[1:3]
    base = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    base = base.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    aug = augment_fn(h, w, flip=True, pad=2, erase_p=0.5) if augment else augment_fn(h, w, flip=False, pad=0, erase_p=0.0)
    return (tf.data.Dataset.zip((base, seeds)).map(aug, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def make_datasets(train, test, batch_size: int, seed: int, augment: bool):
    import tensorflow as tf

    (xtr, ytr), (xte, yte) = train, test
    train_ds = augmented_batches(xtr, ytr, batch_size, seed, augment)
    test_ds = (tf.data.Dataset.from_tensor_slices((xte.astype(np.float32) / 255.0, yte.astype(np.int32)))
               .batch(500).prefetch(tf.data.AUTOTUNE))
    return train_ds, test_ds


# The papers' classifiers (docs/models.md, "The papers' classifiers"), trained by the classifier recipe.
# CIFAR-10 (VQUNet paper, Sec. 4.1): the WRN-28-10 target and three DenseNet-BC surrogates (L, k),
# the DenseNet paper's CIFAR rows, standing in for the three DenseNets the paper does not name.
WRNS = ("wrn",)
DENSENETS = {"densenet-a": (100, 12), "densenet-b": (250, 24), "densenet-c": (190, 40)}
# ImageNet (NN-JPEG paper, Sec. 4.1): keras.applications backbones, models/backbones.py.
BACKBONES = tuple(_backbones.BACKBONES)
PAPER_CLASSIFIERS = (*WRNS, *DENSENETS, *BACKBONES)
# Per-channel mean and std of x / 255 that the CIFAR-10 classifiers standardize with, by --dataset;
# other sources take CIFAR-10's (the batch normalization after the first convolution absorbs the rest).
_STATS = {"fashion-mnist": ((0.2860,), (0.3530,)), "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}


def _backbone_weights(args: argparse.Namespace):
    return None if args.backbone_weights == "none" else args.backbone_weights


def _stats(dataset: str, channels: int):
    mean, std = _STATS.get(dataset, _STATS["cifar10"])
    if len(mean) != channels:  # grey images from another source: the first channel's, on every channel
        mean, std = mean[:1] * channels, std[:1] * channels
    return mean, std


def model_settings(kind: str, input_shape, num_classes: int, args) -> dict | None:
    """The architecture of a paper's classifier as `nnjpeg train` builds it (recorded in its
    metrics and card), or None for the other kinds."""
    if kind in WRNS:
        mean, std = _stats(args.dataset, input_shape[-1])
        return {"name": f"WRN-{args.wrn_depth}-{args.wrn_width} (pre-activation)", "depth": args.wrn_depth,
                "width": args.wrn_width, "dropout": args.wrn_dropout, "weight_decay": 5e-4,
                "normalization_mean": list(mean), "normalization_std": list(std)}
    if kind in DENSENETS:
        depth, growth = (args.densenet_depth or DENSENETS[kind][0], args.densenet_growth or DENSENETS[kind][1])
        mean, std = _stats(args.dataset, input_shape[-1])
        return {"name": f"DenseNet-BC-{depth} (k = {growth})", "depth": depth, "growth": growth,
                "compression": 0.5, "dropout": 0.0, "weight_decay": 1e-4,
                "normalization_mean": list(mean), "normalization_std": list(std)}
    if kind in BACKBONES:
        return _backbones.describe(kind, input_shape, num_classes, _backbone_weights(args))
    return None


def build_model(kind: str, input_shape, num_classes: int, args):
    from .classifier import build_classifier, build_densenet_bc, build_surrogate, build_wrn

    if kind == "classifier":
        return build_classifier(input_shape, num_classes, base_width=args.width, blocks=args.blocks)
    if kind.startswith("surrogate-"):
        return build_surrogate(kind.split("-", 1)[1], input_shape, num_classes)
    settings = model_settings(kind, input_shape, num_classes, args) if kind in PAPER_CLASSIFIERS else None
    if kind in WRNS:
        return build_wrn(input_shape, num_classes, depth=settings["depth"], width=settings["width"],
                         dropout=settings["dropout"], weight_decay=settings["weight_decay"],
                         mean=settings["normalization_mean"], std=settings["normalization_std"])
    if kind in DENSENETS:
        return build_densenet_bc(input_shape, num_classes, depth=settings["depth"], growth=settings["growth"],
                                 compression=settings["compression"], dropout=settings["dropout"],
                                 weight_decay=settings["weight_decay"], mean=settings["normalization_mean"],
                                 std=settings["normalization_std"], name=kind.replace("-", "_"))
    if kind in BACKBONES:
        return _backbones.build_backbone(kind, input_shape, num_classes, weights=_backbone_weights(args))
    raise ValueError(f"Expected a model in classifier, surrogate-a, surrogate-b, surrogate-c, "
                     f"{', '.join(PAPER_CLASSIFIERS)}. Received: {kind!r}")


STRATEGIES = ("default", "mirrored", "multi-worker")
# One object per strategy and process: two MirroredStrategy objects over the same devices number
# their collective ops alike, and the second one's collide with the first's; a second
# MultiWorkerMirroredStrategy cannot be made at all.
_MADE_STRATEGIES: dict = {}


def get_strategy(name: str):
    """The `tf.distribute` strategy called `name`: "default" (none: TensorFlow's default strategy,
    one device), "mirrored" (`MirroredStrategy` over every GPU, else every logical CPU device) or
    "multi-worker" (`MultiWorkerMirroredStrategy` over the cluster that TF_CONFIG describes). The
    same object on every call in a process.

    Raises:
        ValueError: an unknown name, or "multi-worker" with TF_CONFIG unset.
    """
    check_strategy(None, name)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _MADE_STRATEGIES:
        if name == "multi-worker":
            from .distribute import multi_worker_strategy

            strategy = multi_worker_strategy()
        elif tf.config.list_logical_devices("GPU"):  # every GPU when there are any
            strategy = tf.distribute.MirroredStrategy()
        else:  # else every logical CPU device (one unless configured)
            strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
        _MADE_STRATEGIES[name] = strategy
    return _MADE_STRATEGIES[name]


def _prepare(args: argparse.Namespace):
    """Seeds, the run folder, the (optionally truncated) data and the steps per epoch."""
    import keras

    keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if datasets.streamed(args.dataset):
        if not args.limit:
            raise ValueError(f"Expected --limit N with --dataset {args.dataset} for {args.model}: its recipe holds the "
                             "images in memory (the classifier and surrogate recipes stream them). Received: no --limit")
        train_split, test_split = load_splits(args)
        train_data, test_data = train_split.arrays(args.limit), test_split.arrays(args.limit)
    else:
        train_data, test_data = load_dataset(args.dataset, args.data)
    if args.limit:
        train_data = (train_data[0][: args.limit], train_data[1][: args.limit])
        test_data = (test_data[0][: args.limit], test_data[1][: args.limit])
    steps = len(train_data[0]) // args.batch_size
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    return out, train_data, test_data, steps


def _streamed_data(args: argparse.Namespace):
    """The classifier recipe's data read from files as training goes (--dataset folder:DIR or
    tfds:NAME): its run folder, training and evaluation batches, steps per epoch, image shape, number
    of classes and what the card records about the data."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_split, test_split = load_splits(args)
    train_tf, test_tf, n_train, n_test = train_split.as_tf(), test_split.as_tf(), train_split.size, test_split.size
    if args.limit:
        train_tf, test_tf = train_tf.take(args.limit), test_tf.take(args.limit)
        n_train, n_test = (None if n is None else min(n, args.limit) for n in (n_train, n_test))
    if n_train is None and not args.steps_per_epoch:
        raise ValueError(f"Expected --steps-per-epoch N for {args.dataset}, whose size is not known before reading. "
                         "Received: none")
    steps = n_train // args.batch_size if n_train is not None else args.steps_per_epoch
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    if steps < 1:
        raise ValueError(f"Expected at least one batch of {args.batch_size} training images. Received: {n_train} images "
                         f"in {train_split.source}")
    h, w = train_split.image_shape[:2]
    aug = augment_fn(h, w, flip=True, pad=2, erase_p=0.5) if not args.no_augment else augment_fn(h, w, False, 0, 0.0)
    # The shuffle buffer holds decoded images: at most 10,000 of them, not the whole folder.
    train_ds = (tf.data.Dataset.zip((train_tf.map(lambda x, y: (x, tf.cast(y, tf.int32)))
                                     .shuffle(min(n_train or 10_000, 10_000), seed=args.seed, reshuffle_each_iteration=True)
                                     .repeat(), tf.data.Dataset.random(seed=args.seed).batch(2)))
                .map(aug, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    if n_test is not None:  # a known length: Keras' validation then ends without a warning of running out
        test_tf = test_tf.apply(tf.data.experimental.assert_cardinality(n_test))
    test_ds = (test_tf.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, tf.cast(y, tf.int32)),
                           num_parallel_calls=tf.data.AUTOTUNE).batch(min(500, args.batch_size * 4))
               .prefetch(tf.data.AUTOTUNE))
    facts = {"data_source": train_split.source, "train_images": n_train, "test_images": n_test,
             "test_split": test_split.split, "image_shape": list(train_split.image_shape),
             "skipped_files": train_split.skipped}
    return out, train_ds, test_ds, steps, train_split.image_shape, train_split.num_classes, facts


def train(args: argparse.Namespace) -> dict:
    import keras
    import tensorflow as tf

    if datasets.streamed(args.dataset):
        out, train_ds, test_ds, steps, input_shape, num_classes, data_facts = _streamed_data(args)
    else:
        out, train_data, test_data, steps = _prepare(args)
        input_shape, num_classes = train_data[0].shape[1:], int(train_data[1].max()) + 1
        train_ds, test_ds = make_datasets(train_data, test_data, args.batch_size, args.seed,
                                          augment=not args.no_augment)
        data_facts = {"test_images": int(len(test_data[0])), "data_sha256": datasets.checksum(*train_data, *test_data)}
    strategy = get_strategy(args.strategy)
    with strategy.scope():
        model = build_model(args.model, input_shape, num_classes, args)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, steps * (args.epochs - 1)), warmup_target=args.lr, warmup_steps=steps)
        model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        keras.callbacks.ModelCheckpoint(str(out / "last.keras")),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience),
        keras.callbacks.TerminateOnNaN(),
    ]
    t0 = time.time()
    history = model.fit(train_ds, epochs=args.epochs, steps_per_epoch=steps, validation_data=test_ds,
                        callbacks=callbacks, verbose=args.verbose, shuffle=False)
    wall = time.time() - t0
    loss, acc = model.evaluate(test_ds, verbose=0)
    metrics = {
        "model": args.model, "dataset": args.dataset, "test_accuracy": float(acc), "test_loss": float(loss),
        **data_facts, "epochs_run": len(history.history.get("loss", [])),
        "epochs": args.epochs, "wall_time_s_this_invocation": wall, "parameters": int(model.count_params()),
        "command": "nnjpeg train " + " ".join(shlex.quote(a) for a in args.argv),
        "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
        "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    settings = model_settings(args.model, input_shape, num_classes, args)
    if settings is not None:
        metrics["architecture"] = settings
    return _finish(out, model, metrics, args, ("model", "test_accuracy", "epochs_run", "wall_time_s_this_invocation"))


def _finish(out: Path, model, metrics: dict, args: argparse.Namespace, shown) -> dict:
    """The end of a classifier's run: epochs logged, metrics.json, final.keras, the export with its
    card, and the `shown` metrics printed as one JSON line."""
    if (out / "log.csv").is_file():
        metrics["epochs_logged"] = max(0, len((out / "log.csv").read_text().strip().splitlines()) - 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model.save(out / "final.keras")
    if args.export:
        export(out / "final.keras", metrics, Path(args.export), out / "log.csv")
    print(json.dumps({k: metrics[k] for k in shown}))
    return metrics


ADVERSARIAL = {"pgd-at": "pgd", "fast-at": "fast", "free-at": "free"}
VAES = ("defense-vae", "hfl-vae")  # DefenseVAE denoisers
ADVERSARIAL_PAIRS = (*VAES, "cyclegan")  # denoisers trained on (adversarial, clean) pairs
UNETS = ("vqunet", "non-vq-unet")  # denoisers trained on clean inputs, or on perturbed ones with --inputs


def _makes_adversarial_inputs(args: argparse.Namespace) -> bool:
    """Whether `args` train a denoiser on adversarial inputs (those --adv-n, --adv-eps, --adv-models shape)."""
    return args.model in ADVERSARIAL_PAIRS or (args.model in UNETS and args.inputs == "adversarial")


def train_adversarial(args: argparse.Namespace) -> dict:
    """Adversarial training of the Madry et al. CNN (models/adversarial.py): PGD, Fast or Free.
    The last --val-n of the training images are held out; the epoch kept is the one whose
    classifier holds best under PGD on the first 1000 of them (RobustValidation)."""
    import keras
    import tensorflow as tf

    from .adversarial import RobustValidation, pgd_examples

    out, train_data, test_data, steps = _prepare(args)
    (x_all, y_all), (x_test_u8, y_test) = train_data, test_data
    if not 0 < args.val_n < len(x_all):
        raise ValueError(f"Expected --val-n in 1...{len(x_all) - 1} (held out of {len(x_all)} training images). "
                         f"Received: {args.val_n}")
    x_fit, y_fit = x_all[: -args.val_n], y_all[: -args.val_n]
    x_val, y_val = _unit(x_all[-args.val_n :][:1000]), y_all[-args.val_n :][:1000].astype(np.int32)
    steps = len(x_fit) // args.batch_size
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    method = ADVERSARIAL[args.model]
    with get_strategy(args.strategy).scope():
        trainer = _adversarial_trainer(args, method, x_all.shape[1:], int(y_all.max()) + 1, steps)
    classifier = trainer.classifier
    train_ds, test_ds = make_datasets((x_fit, y_fit), test_data, args.batch_size, args.seed, augment=not args.no_augment)
    best_path = out / "best.keras"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        RobustValidation(x_val, y_val, args.eps, steps=10, best_path=best_path, seed=args.seed),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    print(f"{args.model}: {method} adversarial training, eps {args.eps}, {args.epochs} epochs of {steps} steps",
          flush=True)
    t0 = time.time()
    history = trainer.fit(train_ds, epochs=args.epochs, steps_per_epoch=steps, validation_data=test_ds,
                          callbacks=callbacks, verbose=args.verbose, shuffle=False)
    wall = time.time() - t0
    timing = out / "training_s.json"  # training time summed over resumed invocations
    total = (json.loads(timing.read_text())["training_s"] if timing.is_file() else 0.0) + wall
    timing.write_text(json.dumps({"training_s": total}))
    model = keras.saving.load_model(best_path) if best_path.is_file() else classifier
    model.name = args.model.replace("-", "_")
    best = json.loads(Path(str(best_path) + ".json").read_text()) if best_path.is_file() else None
    x_test = _unit(x_test_u8)
    attack = tf.function(lambda xb, yb: pgd_examples(model, xb, yb, args.eps, 20, args.eps / 8.0), reduce_retracing=True)
    clean = robust = 0
    for s in range(0, len(x_test), 500):
        xb, yb = tf.constant(x_test[s : s + 500]), tf.constant(y_test[s : s + 500].astype(np.int32))
        clean += int(np.sum(model.predict_on_batch(xb).argmax(-1) == yb.numpy()))
        robust += int(np.sum(model.predict_on_batch(attack(xb, yb)).argmax(-1) == yb.numpy()))
    metrics = {**_base_metrics(args, args.model, model, train_data, test_data, wall),
               "epochs_run": len(history.history.get("loss", [])),
               "test_accuracy": clean / len(x_test), "test_loss": None, "test_images": int(len(x_test)),
               "test_pgd20_accuracy": robust / len(x_test), "method": method, "eps": args.eps,
               "attack_steps": args.at_steps if method == "pgd" else 1,
               "step_size": trainer.step_size, "replays": args.replays if method == "free" else 1,
               "optimizer": f"Adam, peak lr {args.lr}, 1 epoch warm-up then cosine decay",
               "training_s_total": total, "epoch_kept": best["epoch"] if best else args.epochs,
               "val_images": int(len(x_val)), "val_pgd_accuracy_kept": best["val_pgd_accuracy"] if best else None,
               "front_k": args.front_k, "init": args.init,
               "note": ("" if args.front_k is None else f"NN-favored JPEG (k = {args.front_k}, steps 16/50) in front; ")
                       + ("" if not args.init else f"fine-tuned from {args.init}; ")
                       + f"Madry et al. CNN; trained on the first {len(x_fit)} training images; the epoch kept is the one "
                       f"with the best PGD-10 accuracy (eps {args.eps}) on {len(x_val)} held-out training images; "
                       f"test PGD-20 (step eps/8, one random start) measured at the end of training"}
    return _finish(out, model, metrics, args, ("model", "test_accuracy", "test_pgd20_accuracy", "epoch_kept",
                                               "training_s_total"))


def _adversarial_trainer(args: argparse.Namespace, method: str, shape, num_classes: int, steps: int):
    """The compiled and built AdversarialTrainer of --init (or a new Madry et al. CNN), behind
    NN-favored JPEG with --front-k; create it under the strategy's scope."""
    import keras

    from .adversarial import AdversarialTrainer, build_madry_cnn

    if args.init:  # fine-tuning a classifier trained before (e.g. another adversarially trained one)
        classifier = keras.saving.load_model(args.init, compile=False)
    else:
        classifier = build_madry_cnn(shape, num_classes)
    if args.front_k is not None:
        # NN-favored JPEG in front (NN-JPEG paper, Sec. 3.2): the attack during training goes through
        # it with the straight-through (BPDA) gradient, as the white-box evaluation's does.
        import nnjpeg
        from nnjpeg.keras import Compression

        inputs = keras.Input(shape, name="image")
        codec = Compression(nnjpeg.nn_table(args.front_k).tolist(), name=f"nn_jpeg_k{args.front_k}")
        classifier = keras.Model(inputs, classifier(codec(inputs)), name=args.model.replace("-", "_"))
    trainer = AdversarialTrainer(classifier, method=method, eps=args.eps, steps=args.at_steps,
                                 step_size=args.step_size, replays=args.replays, batch_size=args.batch_size)
    # Free AT takes `replays` optimizer steps per minibatch: its schedule runs over all of them.
    updates = steps * (args.replays if method == "free" else 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, updates * (args.epochs - 1)), warmup_target=args.lr, warmup_steps=updates)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule))
    trainer.build((None, *shape))
    return trainer


def clone_member(model, name: str):
    """A fresh copy of `model` (architecture and weights) under a new name."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.name = name
    return copy


def train_ensemble(args: argparse.Namespace) -> dict:
    """Fine-tunes the chain M -> M90 -> ... -> M30 with noisy training (NN-JPEG paper, Sec. 3.4),
    builds the ensemble {M, M90, M70, M50, M30} as one model, and measures each member's accuracy
    on test images compressed at each quality (the paper's Fig. 6a)."""
    import keras

    from . import ensemble

    out, train_data, test_data, steps = _prepare(args)
    strategy = get_strategy(args.strategy)
    base = keras.saving.load_model(args.base)
    base.name = "member_raw"
    members = {None: base}
    member_seconds = {}
    prev = base
    t0 = time.time()
    for q in ensemble.CHAIN_QUALITIES:
        path = out / f"member_q{q}.keras"
        if path.is_file():  # resumption: members already fine-tuned are kept
            member = keras.saving.load_model(path)
        else:
            started = time.time()
            with strategy.scope():
                member = clone_member(prev, f"member_q{q}")
                tuner = ensemble.NoisyFineTuner(member, xi=args.xi)
                lr = keras.optimizers.schedules.ExponentialDecay(args.lr, steps, args.lr_decay, staircase=True)
                tuner.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9))
            train_ds, test_ds = make_datasets(train_data, test_data, args.batch_size, args.seed + q, augment=False)
            noisy = ensemble.noisy_pipeline(train_ds, q, args.sigma, args.seed + q)
            print(f"fine-tuning M{q} from {prev.name} ({args.epochs} epochs, sigma={args.sigma})", flush=True)
            tuner.fit(noisy, epochs=args.epochs, steps_per_epoch=steps, validation_data=test_ds, shuffle=False,
                      callbacks=[keras.callbacks.CSVLogger(str(out / f"log_q{q}.csv"))], verbose=args.verbose)
            member.save(path)
            path.with_suffix(".json").write_text(json.dumps({"training_s": time.time() - started, "epochs": args.epochs}))
        timing = path.with_suffix(".json")
        member_seconds[f"M{q}"] = json.loads(timing.read_text())["training_s"] if timing.is_file() else None
        members[q] = member
        prev = member
    wall = time.time() - t0
    model = ensemble.build_ensemble([members[q] for q in ensemble.ENSEMBLE_QUALITIES], ensemble.ENSEMBLE_QUALITIES,
                                    input_shape=train_data[0].shape[1:])
    x_test = test_data[0].astype(np.float32) / 255.0
    y_test = test_data[1]
    acc = float(np.mean(model.predict(x_test, batch_size=500, verbose=0).argmax(-1) == y_test))
    fig6 = member_quality_matrix(members, x_test[: args.matrix_n], y_test[: args.matrix_n])
    (out / "fig6_benign.json").write_text(json.dumps(fig6, indent=2))
    plot_member_matrix(fig6, out / "fig6_benign.png")
    # Fig. 6b: I-FGSM examples made on M (gray-box), compressed at each quality, tested on each member.
    from nnjpeg import attacks

    n_adv = min(args.matrix_n, args.matrix_adv_n)
    adv = attacks.bim(base, x_test[:n_adv], y_test[:n_adv], args.matrix_eps, progress=True)
    fig6b = {**member_quality_matrix(members, adv, y_test[:n_adv]), "attack": "bim", "eps": args.matrix_eps, "source": "M"}
    (out / "fig6_adversarial.json").write_text(json.dumps(fig6b, indent=2))
    plot_member_matrix(fig6b, out / "fig6_adversarial.png")
    metrics = {
        "model": "ensemble", "dataset": args.dataset, "test_accuracy": acc, "test_loss": None,
        "test_images": int(len(y_test)), "members": ["M" if q is None else f"M{q}" for q in ensemble.ENSEMBLE_QUALITIES],
        "epochs_run": args.epochs, "epochs": args.epochs, "wall_time_s_this_invocation": wall,
        "parameters": int(model.count_params()), "sigma": args.sigma, "xi": args.xi, "lr": args.lr,
        "lr_decay_per_epoch": args.lr_decay, "base": str(args.base),
        "members_training_s": member_seconds,
        "member_adversarial_accuracy_on_own_quality": {row["member"]: row["accuracy"][row["member"].lstrip("M") or "raw"]
                                                       for row in fig6b["rows"]},
        "member_test_accuracy_on_own_quality": {row["member"]: row["accuracy"][row["member"].lstrip("M") or "raw"]
                                                 for row in fig6["rows"]},
        "data_sha256": datasets.checksum(*train_data, *test_data),
        "command": "nnjpeg train " + " ".join(shlex.quote(a) for a in args.argv), "seed": args.seed,
        "batch_size": args.batch_size, "tensorflow": __import__("tensorflow").__version__, "keras": keras.__version__,
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model.save(out / "final.keras")
    if args.export:
        export(out / "final.keras", metrics, Path(args.export), out / "log_q30.csv")
        dest = Path(args.export)
        for stem in ("fig6_benign", "fig6_adversarial"):
            for suffix in (".json", ".png"):
                shutil.copyfile(out / f"{stem}{suffix}", dest.with_name(f"{dest.stem}.{stem}{suffix}"))
    print(json.dumps({k: metrics[k] for k in ("model", "test_accuracy", "wall_time_s_this_invocation")}))
    return metrics


def member_quality_matrix(members: dict, x, y) -> dict:
    """Accuracy of every member on the test images compressed at every quality (paper Fig. 6a)."""
    import nnjpeg

    from . import ensemble

    columns = [None, *ensemble.CHAIN_QUALITIES]
    inputs = {q: x if q is None else nnjpeg.compress(x, ensemble.quality_table(q)) for q in columns}
    rows = []
    for mq, member in members.items():
        accs = {("raw" if q is None else str(q)): float(np.mean(member.predict(inputs[q], batch_size=500, verbose=0).argmax(-1) == y))
                for q in columns}
        rows.append({"member": "M" if mq is None else f"M{mq}", "accuracy": accs})
    return {"images": int(len(y)), "columns": ["raw" if q is None else str(q) for q in columns], "rows": rows}


def plot_member_matrix(matrix: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.array([[row["accuracy"][c] for c in matrix["columns"]] for row in matrix["rows"]])
    fig, ax = plt.subplots(figsize=(7.5, 5))
    im = ax.imshow(data * 100, cmap="viridis")
    ax.set_xticks(range(len(matrix["columns"])), [c if c == "raw" else f"Q{c}" for c in matrix["columns"]])
    ax.set_yticks(range(len(matrix["rows"])), [row["member"] for row in matrix["rows"]])
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j] * 100:.1f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xlabel("test images compressed at quality")
    ax.set_ylabel("member (fine-tuned at quality)")
    kind = f"{matrix['attack']} (eps {matrix['eps']}, made on {matrix['source']})" if "attack" in matrix else "benign"
    ax.set_title(f"Member accuracy (%) on {kind} images, {matrix['images']} test images", fontsize=10)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _base_metrics(args, kind: str, model, train_data, test_data, wall: float) -> dict:
    import keras
    import tensorflow as tf

    return {"model": kind, "dataset": args.dataset, "epochs": args.epochs, "epochs_run": args.epochs,
            "wall_time_s_this_invocation": wall, "parameters": int(model.count_params()),
            "data_sha256": datasets.checksum(*train_data, *test_data),
            "command": "nnjpeg train " + " ".join(shlex.quote(a) for a in args.argv), "seed": args.seed,
            "batch_size": args.batch_size, "lr": args.lr, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _repeated(x, y: np.ndarray, batch_size: int, seed: int, paired_augment: bool = False):
    """Shuffled, endlessly repeated batches of in-memory arrays (`x` may be a tuple of them).
    `model.fit` on arrays with `steps_per_epoch` runs out of data after the first epoch in Keras 3
    and trains the later epochs on nothing; a repeated dataset with explicit steps does not.

    With `paired_augment` (`x` a tuple of images of one shape, e.g. a denoiser's inputs and
    targets): the target classifier's random flip and shift by up to 2 pixels, the same for every
    image of a tuple, so that a pair stays aligned. No random erasing: erased inputs beside whole
    targets would teach the denoiser to fill boxes in, and erased targets to keep noise."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(min(len(y), 20000), seed=seed, reshuffle_each_iteration=True)
    if paired_augment:
        shift_flip = augment_fn(*x[0].shape[1:3], flip=True, pad=2, erase_p=0.0)

        def paired(example, seed):
            images, labels = example
            # One flip and one crop for the images stacked along their channels, split back after.
            stacked, labels = shift_flip((tf.concat(images, axis=-1), labels), seed)
            return tuple(tf.split(stacked, [image.shape[-1] for image in images], axis=-1)), labels

        ds = tf.data.Dataset.zip((ds.repeat(), tf.data.Dataset.random(seed=seed).batch(2))).map(
            paired, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)


def _unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0


def train_denoiser(args: argparse.Namespace) -> dict:
    """VQUNet / non-VQ U-Net (trained on clean images, VQUNet paper Eq. 2 and 5) or Defense-VAE,
    HFL-VAE and Defense-CycleGAN (trained on (adversarial, clean) pairs made with FGSM and PGD on
    --base); then the classifier --base fine-tuned on the denoiser's outputs (VQUNet paper Sec. 4.1;
    skipped with --classifier-epochs 0), exported as ONE model: image -> pad -> denoiser -> crop ->
    classifier."""
    import keras

    from .defenses import denoised_classifier

    if args.init and (args.denoiser or args.model not in ADVERSARIAL_PAIRS):
        raise ValueError(f"Expected --init PATH (a saved denoiser to train further) only for {', '.join(ADVERSARIAL_PAIRS)}, "
                         f"and without --denoiser PATH. Received: {args.model} with --init {args.init}"
                         f"{f' and --denoiser {args.denoiser}' if args.denoiser else ''}")
    if args.compose and not (args.denoiser and args.classifier_epochs == 0 and args.end_to_end_epochs == 0):
        raise ValueError("Expected --compose with --denoiser PATH, --classifier-epochs 0 and --end-to-end-epochs 0 (a "
                         f"composition of two saved models, nothing trained). Received: --denoiser {args.denoiser}, "
                         f"--classifier-epochs {args.classifier_epochs}, --end-to-end-epochs {args.end_to_end_epochs}")
    out, train_data, test_data, steps = _prepare(args)
    if not args.base:
        raise ValueError(f"Expected --base PATH (the trained target classifier, .keras) for {args.model}. Received: none")
    base = keras.saving.load_model(args.base)
    pad = 2 if train_data[0].shape[1] == 28 else 0
    padded = lambda x: np.pad(_unit(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # noqa: E731
    x_train, x_test = padded(train_data[0]), padded(test_data[0])
    shape = x_train.shape[1:]
    t0 = time.time()
    strategy = get_strategy(args.strategy)
    with strategy.scope():  # every model that trains is made (or loaded) under the strategy's scope
        denoiser, resumed = _starting_denoiser(args, out, shape)
    if args.denoiser or resumed is not None:
        fit_x = fit_y = None  # trained already: nothing to fit
    elif args.model in ADVERSARIAL_PAIRS:
        adv = _adversarial_inputs(args, base, train_data, out, pad)
        fit_x, fit_y = (_with_clean_pairs(x_train, adv, args.seed) if args.clean_pairs else (adv, x_train[: len(adv)]))
    else:
        fit_x, fit_y = x_train, x_train
        if args.inputs != "clean":
            # Variants beside the paper's recipe (its Eq. 2 trains on clean images): the denoiser sees
            # perturbed inputs with the clean images as targets, every clean image also as itself.
            if args.inputs == "adversarial":
                noisy = _adversarial_inputs(args, base, train_data, out, pad)
            else:
                rng = np.random.default_rng(args.seed)
                noisy = np.clip(x_train + rng.normal(0.0, args.sigma, x_train.shape).astype(np.float32), 0.0, 1.0)
            fit_x, fit_y = _with_clean_pairs(x_train, noisy, args.seed)
    best = None
    if not args.denoiser and resumed is None:  # a --denoiser is already saved: neither retrained nor exported again
        best = _fit_denoiser(args, denoiser, fit_x, fit_y, x_test, out, steps, strategy)
        denoiser.save(out / "denoiser.keras")
    classifier = base
    if args.classifier_epochs:
        with strategy.scope():
            classifier = clone_member(base, f"{args.model}_target")
            lr = (keras.optimizers.schedules.CosineDecay(args.classifier_lr, decay_steps=steps * args.classifier_epochs)
                  if args.classifier_schedule == "cosine" else args.classifier_lr)
            classifier.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9),
                               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        filtered = denoiser.predict(x_train, batch_size=500, verbose=0)[:, pad:shape[0] - pad, pad:shape[1] - pad]
        batches = (augmented_batches(filtered, train_data[1], args.batch_size, args.seed, augment=True)
                   if args.classifier_augment else _repeated(filtered, train_data[1], args.batch_size, args.seed))
        (out / "log_classifier.csv").unlink(missing_ok=True)  # the fine-tuning starts over: an earlier log is stale
        classifier.fit(batches, epochs=args.classifier_epochs, steps_per_epoch=steps, verbose=args.verbose, shuffle=False,
                       callbacks=[keras.callbacks.CSVLogger(str(out / "log_classifier.csv"), append=True)])
    if args.end_to_end_epochs:
        if classifier is base:  # `base` stays the target the drop is measured against
            with strategy.scope():
                classifier = clone_member(base, f"{args.model}_target")
        _end_to_end(args, denoiser, classifier, base, train_data, x_train, pad, out, strategy)
    model = denoised_classifier(denoiser, classifier, input_shape=train_data[0].shape[1:], pad=pad,
                                name=f"{args.model.replace('-', '_')}_classifier")
    wall = time.time() - t0
    x_eval = _unit(test_data[0])
    acc = float(np.mean(model.predict(x_eval, batch_size=500, verbose=0).argmax(-1) == test_data[1]))
    base_acc = float(np.mean(base.predict(x_eval, batch_size=500, verbose=0).argmax(-1) == test_data[1]))
    recon = denoiser.predict(x_test, batch_size=500, verbose=0)
    metrics = {**_base_metrics(args, f"{args.model}-classifier", model, train_data, test_data, wall),
               "test_accuracy": acc, "test_loss": None, "test_images": int(len(x_eval)),
               "target_test_accuracy": base_acc, "accuracy_drop": base_acc - acc,
               "test_reconstruction_l1": float(np.abs(recon - x_test).mean()), "classifier_epochs": args.classifier_epochs,
               "eps": args.eps if _makes_adversarial_inputs(args) else None,
               "adv_eps": list(args.adv_eps) if args.adv_eps else None,
               "adv_models": list(args.adv_models) if args.adv_models else None, "clean_pairs": bool(args.clean_pairs),
               "inputs": "adversarial" if args.model in ADVERSARIAL_PAIRS else args.inputs,
               **({"vae_layout": args.vae_layout, "kl_weight": denoiser.kl_weight, "hf_weight": denoiser.hf_weight,
                   "hf_cutoff": denoiser.hf_cutoff} if args.model in VAES else {}),
               **({"gan_width": denoiser.width, "gan_blocks": denoiser.blocks} if args.model == "cyclegan" else {}),
               "sigma": args.sigma if args.inputs == "noisy" else None,
               # a resumed --restore-best run kept an epoch that only its first invocation knew
               "denoiser_epoch_kept": (None if args.denoiser or (resumed is not None and args.restore_best)
                                       else best.best_epoch + 1 if best else args.epochs),
               "denoiser_from": args.denoiser, "denoiser_init": args.init, "classifier_schedule": args.classifier_schedule,
               "classifier_augment": bool(args.classifier_augment),
               "denoiser_training_s": _denoiser_seconds(out) if not args.denoiser else None,
               "denoiser_resumed": resumed is not None, "end_to_end_epochs": args.end_to_end_epochs,
               **({"end_to_end_lr": args.end_to_end_lr, "end_to_end_rec_weight": args.end_to_end_rec_weight,
                   "end_to_end_augment": bool(args.end_to_end_augment)} if args.end_to_end_epochs else {})}
    if args.init:
        metrics["note"] = (f"the denoiser started from {args.init} (its own card holds its command) and trained "
                           f"{args.epochs} epochs more")
    if resumed is not None:
        seconds = metrics["denoiser_training_s"]
        metrics["note"] = ((f"{metrics['note']}; " if args.init else "")
                           + f"the denoiser's {args.epochs} epochs were trained by an earlier invocation of this command "
                           f"({'its time not recorded' if seconds is None else f'{seconds:.0f} s'}); this one resumed at "
                           f"the {'classifier' if args.classifier_epochs else 'end-to-end'} fine-tuning")
    if args.denoiser:  # nothing but the classifier trained in this invocation
        tuning = (f"the classifier {args.base} fine-tuned on its outputs for {args.classifier_epochs} epochs (SGD "
                  f"{args.classifier_lr}, {args.classifier_schedule}{', augmented' if args.classifier_augment else ''})"
                  if args.classifier_epochs else f"the classifier {args.base} as it is, nothing trained")
        if args.end_to_end_epochs:
            tuning += (f"; then the denoiser and the classifier fine-tuned together for {args.end_to_end_epochs} epochs "
                       f"(end to end, Adam {args.end_to_end_lr}, L1 weight {args.end_to_end_rec_weight}"
                       f"{', flipped and shifted' if args.end_to_end_augment else ''})")
        metrics.update(epochs=args.classifier_epochs, epochs_run=args.classifier_epochs,
                       note=f"denoiser {args.denoiser} as trained before (its own card holds its command); {tuning}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model.save(out / "final.keras")
    if args.export and args.compose:
        export_composition(model, [Path(args.denoiser), Path(args.base)], metrics, Path(args.export))
    elif args.export:
        export(out / "final.keras", metrics, Path(args.export),
               out / ("log_end_to_end.csv" if args.end_to_end_epochs else "log_classifier.csv"))
    if args.export and not args.denoiser:
        # The denoiser alone (e.g. "fmnist/vqunet"), with its own card: (N, H+2p, W+2p, C) -> same.
        denoiser_metrics = {**metrics, "model": args.model, "parameters": int(denoiser.count_params()),
                            "test_accuracy": None, "note": "the denoiser alone (32x32 inputs for 28x28 "
                            f"data, zero-padded by 2); test reconstruction l1 {metrics['test_reconstruction_l1']:.4f}; "
                            f"accuracies are those of the pipeline {Path(args.export).name}"
                            + (f"; {metrics['note']}" if resumed is not None or args.init else "")}
        export(out / ("denoiser_end_to_end.keras" if args.end_to_end_epochs else "denoiser.keras"), denoiser_metrics,
               _denoiser_path(Path(args.export)), out / "log.csv")
    print(json.dumps({k: metrics[k] for k in ("model", "test_accuracy", "accuracy_drop", "wall_time_s_this_invocation")}))
    return metrics


def _starting_denoiser(args: argparse.Namespace, out: Path, shape):
    """The denoiser the run starts from, and the finished one of an earlier invocation it resumes
    (else None): --denoiser, a resumed one, --init, or a new one for --model on images of `shape`
    (H, W, C). Call it under the strategy's scope: any of them may train."""
    from .cyclegan import DefenseCycleGAN
    from .defense_vae import DefenseVAE  # noqa: F401 (registered for loading a saved one)
    from .vqunet import VQUNet

    if args.denoiser:  # a denoiser trained before (its own card holds its command): fine-tune only
        return _saved_denoiser(args.model, Path(args.denoiser), "--denoiser"), None
    if (resumed := _finished_denoiser(args, out)) is not None:
        return resumed, resumed
    if args.model in ADVERSARIAL_PAIRS:
        if args.init:  # a denoiser trained before, trained --epochs more (a fresh optimizer)
            return _saved_denoiser(args.model, Path(args.init), "--init"), None
        if args.model == "cyclegan":
            return DefenseCycleGAN(channels=shape[-1], width=args.gan_width, blocks=args.gan_blocks), None
        return _vae(args, shape), None
    return VQUNet(channels=shape[-1], widths=args.unet_widths, num_codes=args.num_codes, vq=args.model == "vqunet",
                  restart_every=args.restart_every), None


def _end_to_end(args, denoiser, classifier, base, train_data, x_train: np.ndarray, pad: int, out: Path,
                strategy) -> None:
    """Fine-tunes `denoiser` and `classifier` together in place (models/defenses.py EndToEnd) on the
    clean training images and, for denoisers trained on adversarial pairs, their adversarial
    versions (the same --adv-n, --adv-eps, cached in --out), each with its clean image and label;
    Adam at --end-to-end-lr decayed along a cosine, under `strategy` (whose scope `denoiser` and
    `classifier` were made in). The fine-tuned denoiser is saved as out/denoiser_end_to_end.keras
    (out/denoiser.keras stays the one a resumed run starts from)."""
    import keras

    from .defenses import EndToEnd

    adv = _adversarial_inputs(args, base, train_data, out, pad) if _makes_adversarial_inputs(args) else x_train[:0]
    x_in, x_clean, labels = _with_clean_pairs(x_train, adv, args.seed, labels=train_data[1])
    steps = len(x_in) // args.batch_size
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    batches = _repeated((x_in, x_clean), labels.astype(np.int32), args.batch_size, args.seed,
                        paired_augment=args.end_to_end_augment)
    with strategy.scope():
        pipeline = EndToEnd(denoiser, classifier, pad=pad, rec_weight=args.end_to_end_rec_weight)
        pipeline.compile(optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(args.end_to_end_lr, decay_steps=steps * args.end_to_end_epochs)))
    (out / "log_end_to_end.csv").unlink(missing_ok=True)
    print(f"{args.model}: end-to-end fine-tuning, {args.end_to_end_epochs} epochs of {steps} steps "
          f"({len(x_in)} images)", flush=True)
    pipeline.fit(batches, epochs=args.end_to_end_epochs, steps_per_epoch=steps, verbose=args.verbose, shuffle=False,
                 callbacks=[keras.callbacks.CSVLogger(str(out / "log_end_to_end.csv"))])
    denoiser.save(out / "denoiser_end_to_end.keras")


def _vae(args: argparse.Namespace, shape):
    """The DefenseVAE of --vae-layout for defense-vae (no high-frequency loss) or hfl-vae (--hf-weight,
    10 by default)."""
    from .defense_vae import DefenseVAE

    layout = {"published": {"widths": (64, 128, 256), "stem": 64, "batch_norm": True},
              "compact": {"widths": (64, 128)}}[args.vae_layout]
    hf_weight = args.hf_weight if args.hf_weight is not None else (10.0 if args.model == "hfl-vae" else 0.0)
    if (args.model == "hfl-vae") != (hf_weight > 0):
        raise ValueError("Expected --hf-weight > 0 for hfl-vae and 0 for defense-vae (the difference between them). "
                         f"Received: {args.model} with --hf-weight {hf_weight}")
    return DefenseVAE(image_shape=shape, kl_weight=args.kl_weight, hf_weight=hf_weight, hf_cutoff=args.hf_cutoff,
                      **layout)


def _denoiser_path(export: Path) -> Path:
    """Where the denoiser alone goes beside the pipeline: "vqunet-adv-classifier.keras" ->
    "vqunet-adv.keras" (a pipeline not named "-classifier" gets "<name>-denoiser.keras")."""
    stem = export.stem
    return export.with_name((stem[: -len("-classifier")] if stem.endswith("-classifier") else f"{stem}-denoiser") + ".keras")


def _with_clean_pairs(clean: np.ndarray, perturbed: np.ndarray, seed: int, labels: np.ndarray | None = None):
    """(inputs, targets) for a denoiser: the perturbed images (of the first len(perturbed) clean
    ones) and every clean image, each with its clean image as target, shuffled together (so that
    --restore-best holds out a mix of both, and every batch has both). With `labels` (one per clean
    image), (inputs, targets, labels)."""
    order = np.random.default_rng(seed).permutation(len(clean) + len(perturbed))
    pairs = np.concatenate([clean, perturbed])[order], np.concatenate([clean, clean[: len(perturbed)]])[order]
    return pairs if labels is None else (*pairs, np.concatenate([labels, labels[: len(perturbed)]])[order])


def _adversarial_inputs(args, base, train_data, out: Path, pad: int = 0) -> np.ndarray:
    """Adversarial versions of the first --adv-n training images (all by default) made on --base,
    or split evenly among the models of --adv-models; each model's share split evenly among the
    budgets of --adv-eps (default --eps alone), FGSM for the first half of each share, PGD-10 for
    the second; cached in the run folder, since the attacks are the slow part of a resumed run.
    Returned zero-padded by `pad` (the denoisers' 32x32 for 28x28 data)."""
    from nnjpeg import attacks
    from nnjpeg.evaluate import load_defense

    n_adv = min(len(train_data[0]), args.adv_n or len(train_data[0]))
    budgets = tuple(args.adv_eps or (args.eps,))
    if args.adv_models and n_adv < 2 * len(budgets) * len(args.adv_models):
        raise ValueError(f"Expected --adv-n of at least {2 * len(budgets) * len(args.adv_models)} (an FGSM and a PGD "
                         f"share for each budget of each of the {len(args.adv_models)} --adv-models). Received: {n_adv}")
    tag = "" if not args.adv_models else "_on-" + "-".join(
        Path(m).stem if m.endswith(".keras") else m.replace("/", "-") for m in args.adv_models)
    cache = out / f"adversarial_eps{'-'.join(map(str, budgets))}_n{n_adv}{tag}.npy"
    if cache.is_file():
        adv = np.load(cache)
    else:
        models = [load_defense(m) for m in args.adv_models] if args.adv_models else [base]
        raw, labels = _unit(train_data[0][:n_adv]), train_data[1][:n_adv]
        adv = np.empty_like(raw)
        for model, share in zip(models, np.array_split(np.arange(n_adv), len(models)), strict=True):
            for i, part in enumerate(np.array_split(share, 2 * len(budgets))):
                eps = budgets[i // 2]
                adv[part] = (attacks.fgsm(model, raw[part], labels[part], eps, progress=True) if i % 2 == 0 else
                             attacks.pgd(model, raw[part], labels[part], eps, nb_iter=10, progress=True))
        np.save(cache, adv)
    return np.pad(adv, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else adv


DENOISER_CLASS = {"cyclegan": "DefenseCycleGAN", **{name: "DefenseVAE" for name in VAES}}


def _saved_denoiser(model: str, path: Path, what: str):
    """The denoiser saved at `path`, refused unless it is one that `model` trains."""
    import keras

    denoiser = keras.saving.load_model(path)
    vq = getattr(denoiser, "vq", None)
    if (type(denoiser).__name__ != DENOISER_CLASS.get(model, "VQUNet") or (vq is not None and vq != (model == "vqunet"))
            or (model == "hfl-vae") != (getattr(denoiser, "hf_weight", 0) > 0)):
        raise ValueError(f"Expected {what} to be a saved {model} denoiser. Received: {type(denoiser).__name__}"
                         f"{'' if vq is None else f' with vq={vq}'} from {path}")
    return denoiser


def _finished_denoiser(args, out: Path):
    """The denoiser an earlier invocation of the same command finished in `out` (its log has all
    --epochs rows and it is saved), so that a run cut off in the classifier fine-tuning resumes
    there; None when there is none to resume."""
    saved, log = out / "denoiser.keras", out / "log.csv"
    if not (saved.is_file() and log.is_file()):
        return None
    rows = len(log.read_text().strip().splitlines()) - 1
    if rows != args.epochs:
        return None
    denoiser = _saved_denoiser(args.model, saved, f"{saved} (left in --out by an earlier run; use another --out)")
    print(f"{args.model}: the denoiser's {rows} epochs are done ({saved}); resuming at the "
          f"{'classifier' if args.classifier_epochs else 'end-to-end' if args.end_to_end_epochs else 'final'} step",
          flush=True)
    return denoiser


def _fit_denoiser(args, denoiser, fit_x, fit_y, x_test, out: Path, steps: int, strategy):
    """Trains the denoiser with `model.fit` (resumable) under `strategy` (whose scope it was made
    in); returns the early-stopping callback that restored the best epoch under --restore-best, else
    None."""
    import keras

    val = (x_test, x_test)
    if args.restore_best:  # model selection on held-out training images, never on the test set
        held = max(1, len(fit_x) // 10)
        fit_x, fit_y, val = fit_x[:-held], fit_y[:-held], (fit_x[-held:], fit_y[-held:])
    with strategy.scope():
        denoiser(x_test[:1])  # builds the subclassed model (its custom train_step never calls it)
        if args.model == "vqunet" and not (out / "backup").exists():
            denoiser.init_codebooks(
                fit_x[np.random.default_rng(args.seed).choice(len(fit_x), min(len(fit_x), 512), replace=False)],
                seed=args.seed)
        # CycleGAN's Adam has beta_1 = 0.5 (Zhu et al., 2017).
        denoiser.compile(optimizer=keras.optimizers.Adam(args.lr, beta_1=0.5 if args.model == "cyclegan" else 0.9))
    callbacks = [keras.callbacks.BackupAndRestore(str(out / "backup")),
                 keras.callbacks.CSVLogger(str(out / "log.csv"), append=True), keras.callbacks.TerminateOnNaN()]
    best = keras.callbacks.EarlyStopping(monitor="val_reconstruction", mode="min", patience=args.epochs,
                                         restore_best_weights=True, verbose=1) if args.restore_best else None
    if best:
        callbacks.append(best)
    t0 = time.time()
    denoiser.fit(_repeated(fit_x, fit_y, args.batch_size, args.seed), epochs=args.epochs,
                 steps_per_epoch=min(steps, len(fit_x) // args.batch_size), validation_data=val,
                 callbacks=callbacks, verbose=args.verbose, shuffle=False)
    # The time of the invocation that finished the denoiser, for one that resumes after it (a fit
    # resumed by BackupAndRestore counts from where it resumed).
    (out / "denoiser_s.json").write_text(json.dumps({"training_s": time.time() - t0}))
    return best


def _denoiser_seconds(out: Path) -> float | None:
    timing = out / "denoiser_s.json"
    return json.loads(timing.read_text())["training_s"] if timing.is_file() else None


PREPROCESSING = ("jpeg75-classifier", "fd-classifier", "tvm-classifier")


def fd_calibration(base, train_data, *, n_val: int = 2000, n_adv: int = 500, eps: float = 0.03,
                   energies=(0.9, 0.95, 0.98, 0.99, 0.995), highs=(20, 30, 40, 60, 80, 120), low: float = 8.0,
                   max_drop: float = 0.01) -> dict:
    """Chooses the Feature-Distillation table: band statistics from the training images, then the
    (energy, high step) pair that keeps the most BIM examples correct with a clean-accuracy drop
    <= `max_drop` (FD's own benign-accuracy criterion), on the last `n_val` training images, which
    the test set never sees. Returns the table, the choice and the whole grid."""
    import nnjpeg
    from nnjpeg import analysis, attacks

    from nnjpeg.tables import fd_table

    std = analysis.band_std(train_data[0][:10000]).mean(axis=0)  # channels averaged: one table for all
    xv, yv = train_data[0][-n_val:], train_data[1][-n_val:]
    accuracy = lambda imgs, labels: float(np.mean(base.predict(_unit(imgs), batch_size=500, verbose=0).argmax(-1) == labels))  # noqa: E731
    clean = accuracy(xv, yv)
    adv = attacks.attack("bim", base, _unit(xv[:n_adv]), yv[:n_adv], eps, progress=True)
    adv = np.clip(np.round(adv * 255.0), 0, 255).astype(np.uint8)
    grid = []
    for energy in energies:
        for high in highs:
            table = fd_table(std, energy=energy, low=low, high=high)
            c = accuracy(nnjpeg.compress(xv, table, color="ycbcr"), yv)
            a = accuracy(nnjpeg.compress(adv, table, color="ycbcr"), yv[:n_adv])
            grid.append({"energy": energy, "high": high, "low": low, "clean_accuracy": c, "drop": clean - c,
                         "adversarial_accuracy": a, "low_bands": int(np.sum(table == np.float32(low)))})
    feasible = [g for g in grid if g["drop"] <= max_drop] or [min(grid, key=lambda g: g["drop"])]
    best = max(feasible, key=lambda g: (g["adversarial_accuracy"], -g["drop"]))
    return {"table": fd_table(std, energy=best["energy"], low=low, high=best["high"]).tolist(), "best": best,
            "grid": grid, "clean_accuracy": clean, "band_std": std.tolist(), "attack": "bim", "eps": eps,
            "validation_images": n_val, "adversarial_images": n_adv, "max_drop": max_drop,
            "constraint_met": best["drop"] <= max_drop}


def build_preprocessing(args: argparse.Namespace) -> dict:
    """JPEG(75), Feature Distillation or TVM in front of --base, as ONE model (nothing trained;
    FD's table is calibrated on held-out training images)."""
    import keras

    from .defenses import fd_classifier, jpeg_classifier, tvm_classifier

    if not args.base:
        raise ValueError(f"Expected --base PATH (the trained target classifier, .keras) for {args.model}. Received: none")
    out, train_data, test_data, _ = _prepare(args)
    base = keras.saving.load_model(args.base)
    shape = train_data[0].shape[1:]
    t0 = time.time()
    extra = {}
    if args.model == "jpeg75-classifier":
        model = jpeg_classifier(base, 75, input_shape=shape)
    elif args.model == "tvm-classifier":
        model = tvm_classifier(base, input_shape=shape, iterations=args.tvm_iterations, seed=args.seed)
        extra = {"tvm_iterations": args.tvm_iterations,
                 "note": "the target classifier is used as is; Guo et al. (2018) also retrain it on TVM outputs, "
                         "so the clean accuracy here is lower than a retrained TVM defense would reach"}
    else:
        calib = fd_calibration(base, train_data)
        (out / "fd_calibration.json").write_text(json.dumps(calib, indent=2))
        model = fd_classifier(base, calib["table"], input_shape=shape)
        extra = {"note": "table calibrated on the last 2000 training images (the grid: <name>.calibration.json): "
                         f"AS band = the {calib['best']['low_bands']} highest-variance DCT bands holding "
                         f"{calib['best']['energy']:.3f} of the benign variance, step {calib['best']['low']:g}; the rest step "
                         f"{calib['best']['high']:g}; YCbCr 4:4:4",
                 "fd_table": calib["table"], "fd_choice": calib["best"], "fd_constraint_met": calib["constraint_met"]}
    x_eval = _unit(test_data[0])
    acc = float(np.mean(model.predict(x_eval, batch_size=500, verbose=0).argmax(-1) == test_data[1]))
    base_acc = float(np.mean(base.predict(x_eval, batch_size=500, verbose=0).argmax(-1) == test_data[1]))
    args.epochs = 0
    metrics = {**_base_metrics(args, args.model, model, train_data, test_data, time.time() - t0), **extra,
               "test_accuracy": acc, "test_loss": None, "test_images": int(len(x_eval)),
               "target_test_accuracy": base_acc, "accuracy_drop": base_acc - acc, "base": str(args.base)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model.save(out / "final.keras")
    if args.export:
        export(out / "final.keras", metrics, Path(args.export), None)
        if (out / "fd_calibration.json").is_file() and args.model == "fd-classifier":
            shutil.copyfile(out / "fd_calibration.json", Path(args.export).with_suffix(".calibration.json"))
    print(json.dumps({k: metrics[k] for k in ("model", "test_accuracy", "accuracy_drop")}))
    return metrics


def save_for_inference(model_path: Path, dest: Path) -> None:
    """Saves the model at `model_path` to `dest` without compile state, its nested models' included:
    the optimizers' slots (Adam keeps two per weight) would triple the file for nothing a user of
    the weights needs."""
    import keras

    from nnjpeg.composition import save_for_inference as save
    from nnjpeg.pretrained import register_serializables

    register_serializables()
    save(keras.saving.load_model(model_path, compile=False), dest)


def export(model_path: Path, metrics: dict, dest: Path, log: Path | None) -> None:
    """Writes the model's inference copy and its card (`.md`) and metrics (`.json`) beside it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_for_inference(model_path, dest)
    size_mb = dest.stat().st_size / 1e6
    _write_card(dest, metrics, f"`{metrics['model']}`, {metrics['parameters']:,} parameters, {size_mb:.2f} MB", log)


def export_composition(model, parts: list[Path], metrics: dict, dest: Path) -> None:
    """Writes `model`, made of two saved models, as a composition of them (`<name>.compose.json`:
    what `nnjpeg.pretrained.load` assembles, e.g. a denoiser in front of a classifier) with its card
    and metrics, instead of a `.keras` file that would hold both models' weights again."""
    from nnjpeg import composition

    resolved = [path.resolve() for path in parts]
    if any(path.parent != dest.resolve().parent or path.suffix != ".keras" for path in resolved):
        raise ValueError(f"Expected the composed models as .keras files in the folder of --export ({dest.parent}). "
                         f"Received: {', '.join(str(path) for path in resolved)}")
    stem = dest.name[: -len(".keras")] if dest.name.endswith(".keras") else dest.name
    layout = composition.write(model, dest.with_name(f"{stem}{composition.SUFFIX}"), resolved, new_parts=False)
    names = " and ".join(f"`{Path(rel).stem}`" for rel in layout.values())
    _write_card(dest.with_name(f"{stem}.keras"), metrics, f"a composition of {names} "
                f"({metrics['parameters']:,} parameters in all, no weights of its own: "
                f"[`{stem}{composition.SUFFIX}`]({stem}{composition.SUFFIX}))", None)


def _epochs_line(metrics: dict) -> str:
    """The card's epochs; a denoiser pipeline counts its stages apart, and names the saved denoiser
    (--denoiser) it started from instead of counting that denoiser's epochs."""
    end_to_end = metrics.get("end_to_end_epochs") or 0
    if not metrics["epochs"] and not end_to_end:
        return "- Epochs: none (a preprocessing defense around the target classifier; nothing trained)"
    denoised = "denoiser_from" in metrics  # a denoiser in front of the classifier
    saved = metrics.get("denoiser_from")  # --denoiser: this command trained no epoch of the denoiser's own
    stages = []
    if metrics["epochs"] and not saved:
        stages.append(f"{metrics.get('epochs_logged', metrics['epochs_run'])} of {metrics['epochs']}"
                      + (" (the denoiser's)" if denoised and (metrics.get("classifier_epochs") or end_to_end) else ""))
    if denoised and metrics.get("classifier_epochs"):
        stages.append(f"{metrics['classifier_epochs']} of the classifier's fine-tuning")
    if end_to_end:
        stages.append(f"{end_to_end} of the denoiser and classifier fine-tuned end to end")
    return "- Epochs: " + ", then ".join(stages) + (f", on the saved denoiser {saved}" if saved else "")


def _architecture_line(settings: dict) -> str:
    """The card's line for a paper's classifier: its name, then every other setting."""
    return f"- Architecture: {settings['name']}; " + "; ".join(
        f"{key.replace('_', ' ')} {value}" for key, value in settings.items() if key != "name")


def _write_card(dest: Path, metrics: dict, model: str, log: Path | None) -> None:
    """The model card (`.md`) and metrics (`.json`) beside `dest`."""
    dest.with_suffix(".json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    lines = [
        f"# {dest.stem} ({metrics['dataset']})", "",
        f"- Model: {model}",
        f"- Command: `{metrics['command']}`",
        *([_architecture_line(metrics["architecture"])] if "architecture" in metrics else []),
        _epochs_line(metrics),
        f"- Wall time of the final invocation: {metrics['wall_time_s_this_invocation']:.0f} s on {metrics['machine']}",
        (f"- Test accuracy: {metrics['test_accuracy']:.4f} on {metrics['test_images']} test images"
         + (f" (loss {metrics['test_loss']:.4f})" if metrics["test_loss"] is not None else "")
         + (f"; target classifier {metrics['target_test_accuracy']:.4f}, drop {100 * metrics['accuracy_drop']:.2f} points"
            if "accuracy_drop" in metrics else "")
         if metrics["test_accuracy"] is not None else "- No test accuracy of its own"),
        *([f"- Adversarial training ({metrics['method']}, eps {metrics['eps']}): test PGD-20 accuracy "
           f"{metrics['test_pgd20_accuracy']:.4f}; epoch kept {metrics['epoch_kept']}; training time "
           f"{metrics['training_s_total']:.0f} s in all (resumed invocations summed)"]
          if "test_pgd20_accuracy" in metrics else []),
        *([f"- Note: {metrics['note']}"] if metrics.get("note") else []),
        *(["- Fine-tuning time of the members (may span resumed invocations): "
           + ", ".join(f"{k} {v:.0f} s" for k, v in metrics["members_training_s"].items())]
          if metrics.get("members_training_s") and None not in metrics["members_training_s"].values() else []),
        (f"- Data SHA-256: `{metrics['data_sha256']}`" if "data_sha256" in metrics else
         f"- Data: {metrics['train_images']} training images streamed from {metrics['data_source']}, "
         f"evaluated on its {metrics['test_split']} split"),
        f"- TensorFlow {metrics['tensorflow']}, Keras {metrics['keras']}, Python {metrics['python']}, finished {metrics['finished_utc']}",
        "", f"Metrics: [`{dest.with_suffix('.json').name}`]({dest.with_suffix('.json').name}).",
    ]
    if log is not None and log.is_file():
        lines += ["", f"Per-epoch log (`{log.name}`):", "", "```", log.read_text().strip(), "```"]
    dest.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _eps_list(spec: str) -> tuple[float, ...]:
    parse = _args.EPS
    try:
        budgets = tuple(parse(v) for v in spec.split(","))
    except argparse.ArgumentTypeError:
        budgets = ()
    if not budgets:
        raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers > 0, e.g. 0.03,0.1,0.2. "
                                         f"Received: {spec!r}")
    return budgets


def _depth_6n4(spec: str) -> int:
    """A WRN or DenseNet-BC depth: 6 n + 4 with n >= 1."""
    depth = _args.integer(10)(spec)
    if (depth - 4) % 6:
        raise argparse.ArgumentTypeError(f"expected a depth 6n+4 with n >= 1 (10, 16, 22, 28, ..., 100). "
                                         f"Received: {spec!r}")
    return depth


def _widths(spec: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in spec.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, e.g. 32,64,128,256. Received: {spec!r}")
    return widths


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model with model.fit (checkpoints, CSV log, resumable)")
    p.add_argument("model", help="classifier | surrogate-a | surrogate-b | surrogate-c | ensemble | vqunet | "
                                 "non-vq-unet | defense-vae | hfl-vae | cyclegan | pgd-at | fast-at | free-at | "
                                 "jpeg75-classifier | fd-classifier | tvm-classifier "
                                 "(these three wrap --base; FD calibrates its table, nothing is trained) | "
                                 "the papers' classifiers: wrn (WRN-28-10, the VQUNet paper's CIFAR-10 target) | "
                                 "densenet-a | densenet-b | densenet-c (DenseNet-BC-100 k=12, -250 k=24, -190 k=40: "
                                 "CIFAR-10 surrogates) | resnet50v2 | resnet101v2 (the NN-JPEG paper's ImageNet "
                                 "ResNet-v2-50 and -101) | inception-resnet-v2 (Keras' Inception-ResNet-v2, "
                                 "standing in for the paper's Inception-v4, which Keras does not have)")
    p.add_argument("--dataset", type=dataset_name, default="fashion-mnist",
                   help="fashion-mnist, cifar10, folder:DIR (class sub-folders of JPEG/PNG files, under DIR/train and "
                        "DIR/test or DIR/val) or tfds:NAME (prepared in --data); folders and TFDS are streamed to the "
                        "classifier and surrogate recipes, and read into memory with --limit N by the others")
    p.add_argument("--data", default=None,
                   help="dataset directory (default: Debian package / Keras cache; TFDS: its data_dir)")
    p.add_argument("--image-size", type=_args.size, default=None, metavar="H,W",
                   help="folder: and tfds: images resized and centre-cropped to H,W (default 224,224; "
                        "inception-resnet-v2: 299,299, its input size)")
    p.add_argument("--epochs", type=_args.COUNT, default=30)
    p.add_argument("--batch-size", type=_args.COUNT, default=128)
    p.add_argument("--lr", type=_args.real(0, low_open=True), default=None,
                   help="classifiers: peak learning rate, 1 epoch warm-up then cosine decay (default 0.1; the "
                        "ImageNet backbones from weights: 0.005, the NN-JPEG paper's fine-tuning rate); "
                        "ensemble: initial SGD rate (default 0.005, the paper's)")
    p.add_argument("--width", type=_args.COUNT, default=32, help="classifier: channels of the first stage")
    p.add_argument("--blocks", type=_args.COUNT, default=1, help="classifier: residual blocks per stage")
    p.add_argument("--wrn-depth", type=_depth_6n4, default=28, help="wrn: depth 6n+4 (default 28, the paper's)")
    p.add_argument("--wrn-width", type=_args.COUNT, default=10, help="wrn: widening factor k (default 10, the paper's)")
    p.add_argument("--wrn-dropout", type=_args.real(0, 0.99), default=0.0,
                   help="wrn: dropout between each block's convolutions (default 0: the VQUNet paper names none; "
                        "the WRN paper's dropout variant uses 0.3)")
    p.add_argument("--densenet-depth", type=_depth_6n4, default=None,
                   help="densenet-a/b/c: depth L = 6n+4 (default the kind's: 100, 250, 190)")
    p.add_argument("--densenet-growth", type=_args.COUNT, default=None,
                   help="densenet-a/b/c: growth rate k (default the kind's: 12, 24, 40)")
    p.add_argument("--backbone-weights", default="imagenet", metavar="imagenet|none|PATH",
                   help="resnet50v2, resnet101v2, inception-resnet-v2: start from ImageNet's weights (Keras downloads "
                        "them into its cache on first use), none (random), or a .keras / .h5 / .weights.h5 file of "
                        "the application's weights (with its 1000-class top for 1000 classes, else without: "
                        "Keras' *_notop.h5). With weights, 1000 classes keep the pretrained top; other data get "
                        "a new head. Default imagenet")
    p.add_argument("--seed", type=_args.SEED, default=0)
    p.add_argument("--patience", type=_args.integer(0), default=10, help="early stopping patience on val_loss (epochs)")
    p.add_argument("--no-augment", action="store_true", help="no flip / crop / random erasing")
    p.add_argument("--strategy", default="default", choices=STRATEGIES,
                   help="default: one device; mirrored: tf.distribute.MirroredStrategy over every GPU (else every "
                        "logical CPU device); multi-worker: MultiWorkerMirroredStrategy over the cluster of TF_CONFIG, "
                        "every worker running this command (the chief writes --out and --export, worker i "
                        "--out/worker-i and no export). --batch-size is the global batch. free-at and the "
                        "preprocessing defenses take default only")
    p.add_argument("--limit", type=_args.integer(0), default=0, help="use only the first N train and test images (smoke runs)")
    p.add_argument("--steps-per-epoch", type=_args.integer(0), default=0, help="cap on steps per epoch (smoke runs)")
    p.add_argument("--base", default=None, help="ensemble and denoisers: the trained target classifier (.keras)")
    p.add_argument("--sigma", type=_args.real(0), default=0.05,
                   help="ensemble: std of the Gaussian noise on x_q; denoisers with --inputs noisy: on x (images in [0, 1])")
    p.add_argument("--xi", type=_args.real(0, 1), default=0.9, help="ensemble: weight of CE(x) in J' (paper Eq. 9)")
    p.add_argument("--lr-decay", type=_args.real(0, low_open=True), default=0.94, help="ensemble: learning-rate factor per epoch")
    p.add_argument("--matrix-n", type=_args.COUNT, default=10000, help="ensemble: test images for the member x quality matrix")
    p.add_argument("--matrix-adv-n", type=_args.COUNT, default=2000, help="ensemble: test images attacked for the Fig. 6b matrix")
    p.add_argument("--matrix-eps", type=_args.EPS, default=0.03, help="ensemble: I-FGSM eps of the Fig. 6b matrix")
    p.add_argument("--eps", type=_args.EPS, default=0.1,
                   help="defense-vae, hfl-vae, cyclegan, pgd-at, fast-at, free-at: L-inf budget of the training "
                        "examples")
    p.add_argument("--at-steps", type=_args.COUNT, default=10, help="pgd-at: PGD steps per training example")
    p.add_argument("--step-size", type=_args.real(0, low_open=True), default=None,
                   help="pgd-at: PGD step (default eps/4); fast-at: FGSM step (default 1.25 eps); free-at: the "
                        "perturbation's step per replay (default eps, as its paper)")
    p.add_argument("--replays", type=_args.COUNT, default=4, help="free-at: times each minibatch is replayed")
    p.add_argument("--front-k", type=_args.integer(1, 15), default=None,
                   help="pgd-at, fast-at, free-at: NN-favored JPEG (OF band i + j < K) in front of the classifier, "
                        "attacked through with the straight-through gradient during training")
    p.add_argument("--init", default=None,
                   help="pgd-at, fast-at, free-at: start from this trained classifier (.keras) instead of a new one; "
                        "defense-vae, hfl-vae, cyclegan: from this saved denoiser, trained --epochs more")
    p.add_argument("--val-n", type=_args.COUNT, default=5000,
                   help="pgd-at, fast-at, free-at: training images held out to pick the epoch kept")
    p.add_argument("--unet-widths", type=_widths, default=(64, 128, 256, 512),
                   help="vqunet / non-vq-unet: encoder widths per depth, comma-separated (default 64,128,256,512, "
                        "the paper's 2x2x512 deepest level)")
    p.add_argument("--num-codes", type=_args.COUNT, default=256, help="vqunet: codebook size K at every depth")
    p.add_argument("--tvm-iterations", type=_args.COUNT, default=30, help="tvm-classifier: TVM solver iterations")
    p.add_argument("--restart-every", type=_args.integer(0), default=50,
                   help="vqunet: restart dead codes every this many steps (0: never)")
    p.add_argument("--adv-n", type=_args.integer(0), default=0,
                   help="defense-vae, hfl-vae, cyclegan, denoisers with --inputs adversarial: train images "
                        "attacked to make the (adversarial, clean) pairs (default: all)")
    p.add_argument("--adv-eps", type=_eps_list, default=None,
                   help="defense-vae, hfl-vae, cyclegan, denoisers with --inputs adversarial: several budgets "
                        "for the adversarial inputs, comma-separated (e.g. 0.03,0.1,0.2), the images split evenly among them "
                        "(default: --eps alone)")
    p.add_argument("--adv-models", type=_args.model_list, default=None,
                   help="defense-vae, hfl-vae, cyclegan, denoisers with --inputs adversarial: the models the adversarial "
                        "inputs are made on, comma-separated pretrained names or .keras paths, the images split evenly "
                        "among them (default: --base alone)")
    p.add_argument("--clean-pairs", action="store_true",
                   help="defense-vae, hfl-vae, cyclegan: also map every clean training image to itself "
                        "(denoisers with --inputs adversarial or noisy always do)")
    p.add_argument("--vae-layout", default="published", choices=("published", "compact"),
                   help="defense-vae, hfl-vae: Defense-VAE's published network (5x5 stem, three strided convolutions "
                        "64/128/256, batch normalization) or two strided convolutions (64/128) alone")
    p.add_argument("--kl-weight", type=_args.real(0), default=1.0, help="defense-vae, hfl-vae: weight of the KL term")
    p.add_argument("--gan-width", type=_args.COUNT, default=32,
                   help="cyclegan: channels of the generators' first convolution and the discriminators' (doubled "
                        "twice inside)")
    p.add_argument("--gan-blocks", type=_args.COUNT, default=4, help="cyclegan: residual blocks of each generator")
    p.add_argument("--hf-weight", type=_args.real(0), default=None,
                   help="hfl-vae: weight of the high-frequency loss (default 10; defense-vae: 0)")
    p.add_argument("--hf-cutoff", type=_args.real(0, 0.7071), default=0.25,
                   help="hfl-vae: the loss's band starts at this radial frequency (cycles per pixel)")
    p.add_argument("--inputs", default="clean", choices=("clean", "adversarial", "noisy"),
                   help="vqunet / non-vq-unet: what the denoiser learns to map to the clean image: the clean image "
                        "itself (the paper's recipe), or also its FGSM/PGD version made on --base (or --adv-models) at "
                        "--eps (the first --adv-n images), or its Gaussian-noised version (std --sigma)")
    p.add_argument("--restore-best", action="store_true",
                   help="denoisers: hold out the last 10 %% of the training images and keep the weights of the epoch "
                        "with the lowest reconstruction error on them (default: the last epoch's, all images trained on)")
    p.add_argument("--classifier-epochs", type=_args.integer(0), default=1,
                   help="denoisers: epochs fine-tuning --base on the denoiser's outputs (0: keep --base as is)")
    p.add_argument("--classifier-lr", type=_args.real(0, low_open=True), default=0.005, help="denoisers: SGD rate of that fine-tuning")
    p.add_argument("--classifier-schedule", default="constant", choices=("constant", "cosine"),
                   help="denoisers: that rate held constant, or decayed to 0 along a cosine over the fine-tuning")
    p.add_argument("--classifier-augment", action="store_true",
                   help="denoisers: fine-tune on the denoised images with the target's augmentation "
                        "(flip, pad-and-crop, random erasing)")
    p.add_argument("--end-to-end-epochs", type=_args.integer(0), default=0,
                   help="denoisers: then fine-tune the denoiser and the classifier together for this many epochs "
                        "(Defense-VAE's end-to-end fine-tuning: cross-entropy of the pipeline plus the denoiser's "
                        "L1 to the clean image, plus a VQUNet's codebook terms), on the clean images and the "
                        "denoiser's adversarial pairs")
    p.add_argument("--end-to-end-lr", type=_args.real(0, low_open=True), default=1e-4,
                   help="denoisers: Adam rate of the end-to-end fine-tuning, decayed along a cosine")
    p.add_argument("--end-to-end-rec-weight", type=_args.real(0), default=10.0,
                   help="denoisers: weight of the denoiser's L1 to the clean image in that fine-tuning")
    p.add_argument("--end-to-end-augment", action="store_true",
                   help="denoisers: in that fine-tuning, flip and shift (up to 2 pixels) each input and its clean "
                        "target alike, as the target classifier's training did (no random erasing)")
    p.add_argument("--compose", action="store_true",
                   help="denoisers with --denoiser and --classifier-epochs 0: export the pair as a composition of the "
                        "two saved models (<name>.compose.json, assembled by nnjpeg.pretrained.load), not one file "
                        "holding both models' weights again")
    p.add_argument("--denoiser", default=None,
                   help="denoisers: a denoiser trained before (e.g. models/weights/fmnist/vqunet.keras); its "
                        "training is skipped and only --base is fine-tuned on its outputs")
    p.add_argument("--verbose", type=_args.integer(0, 2), default=1, help="Keras verbosity: 1 progress bar, 2 a line per epoch")
    p.add_argument("--out", default=None, help="run folder (default runs/<model>)")
    p.add_argument("--export", default=None, help="save the final model here (.keras, no optimizer state) with a model card")
    p.set_defaults(func=_cmd)


# Options that shape one kind of model only: given for another, they are refused, not ignored.
ONLY_FOR = {"--vae-layout": VAES, "--kl-weight": VAES, "--hf-weight": VAES, "--hf-cutoff": VAES,
            "--gan-width": ("cyclegan",), "--gan-blocks": ("cyclegan",), "--width": ("classifier",),
            "--blocks": ("classifier",), "--wrn-depth": WRNS, "--wrn-width": WRNS, "--wrn-dropout": WRNS,
            "--densenet-depth": tuple(DENSENETS), "--densenet-growth": tuple(DENSENETS),
            "--backbone-weights": BACKBONES}

# Recipes that take --strategy default only, and why: a distributing strategy is refused, not ignored.
SINGLE_REPLICA = {"free-at": "its perturbation, kept from one minibatch to the next, has the global batch's shape",
                  **{name: "a preprocessing defense, nothing is trained" for name in PREPROCESSING}}


def check_strategy(model: str | None, strategy: str) -> None:
    """Refuses, before any work, a --strategy that the recipe of `model` (None: any recipe) cannot
    honour.

    Raises:
        ValueError: an unknown strategy, a distributing one for a recipe of `SINGLE_REPLICA`, or
            "multi-worker" with TF_CONFIG unset.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Expected --strategy in {STRATEGIES}. Received: {strategy!r}")
    if strategy != "default" and model in SINGLE_REPLICA:
        raise ValueError(f"Expected --strategy default for {model} ({SINGLE_REPLICA[model]}). "
                         f"Received: --strategy {strategy}")
    if strategy == "multi-worker" and not os.environ.get("TF_CONFIG"):
        raise ValueError("Expected the TF_CONFIG environment variable (JSON: the cluster and this worker's task) for "
                         f"--strategy multi-worker{f' ({model})' if model else ''}. Received: TF_CONFIG unset")


def _worker_outputs(args: argparse.Namespace) -> None:
    """Under --strategy multi-worker, every worker runs the same command and saves as it trains: the
    chief into --out, and it alone exports (--export); any other worker into a folder of its own in
    --out (models/distribute.py `worker_folder`, e.g. --out/worker-1), and exports nothing."""
    from .distribute import worker_folder

    # Made here, before any other TensorFlow work; the recipe gets this same object.
    folder = worker_folder(get_strategy("multi-worker"))
    if folder is not None:
        args.out, args.export = str(Path(args.out) / folder), None


def _cmd(args: argparse.Namespace) -> int:
    check_strategy(args.model, args.strategy)
    given = {a.split("=", 1)[0] for a in getattr(args, "argv", ()) if a.startswith("--")}
    if args.image_size and not datasets.streamed(args.dataset):
        raise ValueError(f"Expected --image-size only with --dataset folder:DIR or tfds:NAME, whose images it resizes. "
                         f"Received: --image-size {','.join(map(str, args.image_size))} with --dataset {args.dataset}")
    misplaced = sorted(f for f in given & set(ONLY_FOR) if args.model not in ONLY_FOR[f])
    if misplaced:
        raise ValueError(f"Expected {', '.join(misplaced)} only with {' or '.join(ONLY_FOR[misplaced[0]])}, the models "
                         f"they shape. Received: {' '.join(misplaced)} with {args.model}")
    idle = sorted(f for f in given if f.startswith("--end-to-end-") and f != "--end-to-end-epochs")
    if idle and not args.end_to_end_epochs:
        raise ValueError(f"Expected {', '.join(idle)} only with --end-to-end-epochs N > 0, the fine-tuning they "
                         f"shape. Received: {' '.join(idle)} with --end-to-end-epochs {args.end_to_end_epochs}")
    if args.adv_models and not _makes_adversarial_inputs(args):
        raise ValueError(f"Expected --adv-models only where adversarial inputs are made ({', '.join(ADVERSARIAL_PAIRS)}, "
                         f"or vqunet / non-vq-unet with --inputs adversarial). Received: --adv-models with {args.model}"
                         f"{f' --inputs {args.inputs}' if args.model in UNETS else ''}")
    if args.model in BACKBONES:
        _backbones.check_weights(_backbone_weights(args))  # a missing file, before the data is listed
        if datasets.streamed(args.dataset) and not args.image_size:  # the backbone's own input size
            args.image_size = (_backbones.BACKBONES[args.model].size,) * 2
    args.out = args.out or f"runs/{args.model}"
    if args.strategy == "multi-worker":
        _worker_outputs(args)
    if args.lr is None:
        args.lr = {"ensemble": 0.005, "vqunet": 1e-3, "non-vq-unet": 1e-3, "cyclegan": 2e-4,
                   **{name: 1e-3 for name in (*VAES, *ADVERSARIAL)}}.get(args.model, 0.1)
        if args.model in BACKBONES and _backbone_weights(args) is not None:
            args.lr = 0.005  # fine-tuning pretrained weights: the NN-JPEG paper's rate (Sec. 3.4)
    if args.model in (*UNETS, *ADVERSARIAL_PAIRS):
        train_denoiser(args)
    elif args.model in ADVERSARIAL:
        train_adversarial(args)
    elif args.model in PREPROCESSING:
        build_preprocessing(args)
    elif args.model == "ensemble":
        if not args.base:
            raise ValueError("Expected --base PATH (the trained classifier M, a .keras file) for the ensemble. Received: none")
        train_ensemble(args)
    else:
        train(args)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnjpeg")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
