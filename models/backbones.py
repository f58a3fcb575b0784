"""The NN-JPEG paper's ImageNet classifiers as `keras.applications` backbones (its Sec. 4.1).

The paper attacks ResNet-v2-50 (He et al., 2016, "Identity Mappings in Deep Residual Networks") in
its gray-box and black-box scenarios, with transfers from ResNet-v2-101, and Inception-v4 (Szegedy
et al., 2017, "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning")
in its white-box scenario. Keras has the two ResNets (`ResNet50V2`, `ResNet101V2`) but no
Inception-v4; Inception-ResNet-v2, from the same paper and of about its accuracy on ImageNet, stands
in for it (`InceptionResNetV2`).

Every backbone takes images in [0, 1], as every nnjpeg model does: its own preprocessing
(`keras.applications.<family>.preprocess_input`, "tf" mode for all three: x / 127.5 - 1 on
[0, 255]) is the model's first layer, `Rescaling(2, offset=-1)`. Keras is imported on first use,
so the command line can read this table without it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

IMAGENET_CLASSES = 1000
WEIGHT_SUFFIXES = (".keras", ".h5")  # .weights.h5 ends in .h5


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One row: the `keras.applications` constructor, its ImageNet input size and smallest input,
    and the paper's network it is."""

    application: str
    size: int
    min_size: int
    paper: str


BACKBONES = {
    "resnet50v2": Backbone("ResNet50V2", 224, 32, "ResNet-v2-50 (gray-box and black-box target)"),
    "resnet101v2": Backbone("ResNet101V2", 224, 32, "ResNet-v2-101 (the black-box scenario's source model)"),
    "inception-resnet-v2": Backbone("InceptionResNetV2", 299, 75,
                                    "Inception-v4 (white-box target), which Keras does not have: Inception-ResNet-v2 "
                                    "of the same paper stands in"),
}


def check_weights(weights) -> str | None:
    """The `weights` argument of `build_backbone`: None, "imagenet", or an existing weights file.

    Raises:
        TypeError: not None or a string / path.
        ValueError: a file that does not exist or is neither .keras nor .h5 (.weights.h5 included).
    """
    if weights is None or weights == "imagenet":
        return weights
    if not isinstance(weights, (str, Path)):
        raise TypeError(f"Expected weights None, 'imagenet' or the path of a .keras or .h5 file. "
                        f"Received: {type(weights).__name__}")
    path = Path(weights)
    if path.suffix not in WEIGHT_SUFFIXES or not path.is_file():
        raise ValueError(f"Expected weights None, 'imagenet' or an existing .keras or .h5 (.weights.h5) file of the "
                         f"backbone's weights. Received: {str(weights)!r}"
                         f"{'' if path.is_file() else ', which is not a file'}")
    return str(path)


def _check_params(name: str, input_shape, num_classes: int, weights) -> tuple[Backbone, tuple, bool]:
    """The row of `name`, the input shape and whether the application's own top is kept."""
    if name not in BACKBONES:
        raise ValueError(f"Expected a backbone in {sorted(BACKBONES)}. Received: {name!r}")
    row = BACKBONES[name]
    input_shape = tuple(input_shape) if input_shape is not None else (row.size, row.size, 3)
    if len(input_shape) != 3 or min(input_shape[:2]) < row.min_size or input_shape[2] not in (1, 3):
        raise ValueError(f"Expected an input shape (H, W, C) with H, W >= {row.min_size} and C in {{1, 3}} for {name}. "
                         f"Received: {input_shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1. Received: {num_classes!r}")
    weights = check_weights(weights)
    if weights is not None and input_shape[2] != 3:
        raise ValueError(f"Expected 3-channel images for {name} with weights {weights!r} (trained on RGB). "
                         f"Received: input shape {input_shape}")
    # The ImageNet top is kept where the weights come with one for the data's classes; otherwise a
    # new dense head (from scratch, the application builds the same one with `classes`).
    top = weights is None or num_classes == IMAGENET_CLASSES
    if weights == "imagenet" and top and input_shape != (row.size, row.size, 3):
        raise ValueError(f"Expected input shape {(row.size, row.size, 3)} for {name} with ImageNet weights and its "
                         f"{IMAGENET_CLASSES}-class top (Keras ships that top for this size only). Received: "
                         f"{input_shape}")
    return row, input_shape, top


def build_backbone(name: str, input_shape=None, num_classes: int = IMAGENET_CLASSES, *, weights=None):
    """The `keras.applications` network `name` with its preprocessing folded in.

    With weights (ImageNet's or a file) and 1000 classes, the application's own top is kept: the
    pretrained classifier as is (the NN-JPEG paper's starting model M). With weights and another
    number of classes, the backbone is taken without its top (global average pooling) and a new
    dense head `logits` follows, to be fine-tuned. Without weights, the application is built with
    `classes=num_classes`.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: (N, num_classes) logits.

    Args:
        name: a key of `BACKBONES`: "resnet50v2", "resnet101v2" or "inception-resnet-v2".
        input_shape: (H, W, C); default the backbone's ImageNet size (224 or 299) in RGB.
        num_classes: number of classes.
        weights: None (random), "imagenet" (downloaded by Keras into its cache on first use) or the
            path of a .keras / .h5 / .weights.h5 file of the application's weights, with its top
            where num_classes is 1000, else without (Keras' `..._notop.h5`).

    Returns:
        An uncompiled `keras.Model` named after `name`.

    Raises:
        ValueError: an unknown name, an input shape below the backbone's smallest or with C not in
            {1, 3}, grey images with weights, ImageNet's top at another size, or a weights file that
            is not there.
    """
    row, input_shape, top = _check_params(name, input_shape, num_classes, weights)
    import keras

    application = getattr(keras.applications, row.application)
    net = application(include_top=top, weights=check_weights(weights), input_shape=input_shape,
                      classes=num_classes if top else IMAGENET_CLASSES, pooling=None if top else "avg",
                      classifier_activation=None)
    inputs = keras.Input(input_shape, name="image")
    # preprocess_input's "tf" mode, x / 127.5 - 1 on [0, 255], on images in [0, 1].
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="preprocess")(inputs)
    outputs = net(x)
    if not top:
        outputs = keras.layers.Dense(num_classes, name="logits")(outputs)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def describe(name: str, input_shape, num_classes: int, weights) -> dict:
    """What a model card records about `build_backbone(name, input_shape, num_classes, weights=weights)`."""
    row, input_shape, top = _check_params(name, input_shape, num_classes, weights)
    return {"name": f"{row.application} (keras.applications)", "paper_network": row.paper,
            "weights": weights or "none (random initialization)", "input_shape": list(input_shape),
            "top": ("the application's own" if weights is None else f"the weights' own {IMAGENET_CLASSES}-class")
            if top else f"a new {num_classes}-class dense head on global average pooling",
            "preprocessing": "Rescaling(2, offset=-1) on [0, 1]: preprocess_input's 'tf' mode"}
