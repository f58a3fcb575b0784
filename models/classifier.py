"""Target classifier (a pre-activation wide residual network) and surrogate classifiers.

The target follows WRN-n-k (Zagoruyko & Komodakis, 2016) with pre-activation blocks (He et al.,
2016), sized for CPU training: depth 6 * blocks + 4, widths `base * (1, 2, 4)`. The VQUNet paper
uses WRN-28-10 on Fashion-MNIST (94.31 %, its Sec. 4.1); this is the same family, much narrower.
Surrogates for black-box transfer are small DenseNets (Huang et al., 2017) and a plain CNN, as
different from the target as practical.
"""

from __future__ import annotations

import keras
from keras import layers

# Fashion-MNIST training-set pixel mean and standard deviation (of x / 255), computed from the data.
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530


def _standardize(x, mean: float, std: float):
    return layers.Rescaling(1.0 / std, offset=-mean / std, name="standardize")(x)


def _preact_block(x, width: int, stride: int, weight_decay: float, name: str):
    reg = keras.regularizers.L2(weight_decay)
    y = layers.BatchNormalization(name=f"{name}_bn1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != width:
        # The projection takes the pre-activated input, as in the pre-activation ResNet.
        shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, kernel_regularizer=reg, name=f"{name}_proj")(y)
    y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{name}_conv1")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def build_classifier(input_shape=(28, 28, 1), num_classes: int = 10, *, base_width: int = 24, blocks: int = 2,
                     weight_decay: float = 5e-4, mean: float = FMNIST_MEAN, std: float = FMNIST_STD,
                     name: str = "wrn_classifier") -> keras.Model:
    """Pre-activation WRN-(6*blocks+4)-(base_width/16) classifier.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: (N, num_classes) logits.

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: number of classes.
        base_width: channels of the first stage; stages have base, 2 base, 4 base.
        blocks: residual blocks per stage.
        weight_decay: L2 penalty on convolution and dense kernels.
        mean, std: per-pixel standardization applied inside the model.
        name: model name.

    Returns:
        An uncompiled `keras.Model`.
    """
    inputs = keras.Input(input_shape, name="image")
    x = _standardize(inputs, mean, std)
    reg = keras.regularizers.L2(weight_decay)
    x = layers.Conv2D(base_width, 3, padding="same", use_bias=False, kernel_regularizer=reg, name="stem")(x)
    for stage, mult in enumerate((1, 2, 4)):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            x = _preact_block(x, base_width * mult, stride, weight_decay, f"s{stage + 1}b{b + 1}")
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _dense_block(x, layers_n: int, growth: int, name: str):
    for i in range(layers_n):
        y = layers.BatchNormalization(name=f"{name}_l{i}_bn")(x)
        y = layers.ReLU(name=f"{name}_l{i}_relu")(y)
        y = layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"{name}_l{i}_conv")(y)
        x = layers.Concatenate(name=f"{name}_l{i}_cat")([x, y])
    return x


def _transition(x, name: str):
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.Conv2D(x.shape[-1] // 2, 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


SURROGATES = {
    # name: (kind, parameters)
    "a": ("densenet", {"growth": 12, "layers": (4, 4, 4)}),
    "b": ("densenet", {"growth": 8, "layers": (6, 6, 6)}),
    "c": ("cnn", {"widths": (32, 64, 128)}),
}


def build_surrogate(which: str, input_shape=(28, 28, 1), num_classes: int = 10, *, mean: float = FMNIST_MEAN,
                    std: float = FMNIST_STD) -> keras.Model:
    """Surrogate classifier `which` in {"a", "b", "c"}: two small DenseNets and a plain CNN.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: (N, num_classes) logits.

    Raises:
        ValueError: unknown `which`.
    """
    if which not in SURROGATES:
        raise ValueError(f"Expected a surrogate in {sorted(SURROGATES)}. Received: {which!r}")
    kind, p = SURROGATES[which]
    inputs = keras.Input(input_shape, name="image")
    x = _standardize(inputs, mean, std)
    if kind == "densenet":
        x = layers.Conv2D(2 * p["growth"], 3, padding="same", use_bias=False, name="stem")(x)
        for i, n in enumerate(p["layers"]):
            x = _dense_block(x, n, p["growth"], f"d{i + 1}")
            if i < len(p["layers"]) - 1:
                x = _transition(x, f"t{i + 1}")
        x = layers.BatchNormalization(name="final_bn")(x)
        x = layers.ReLU(name="final_relu")(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        for i, w in enumerate(p["widths"]):
            x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"c{i + 1}a")(x)
            x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"c{i + 1}b")(x)
            x = layers.MaxPooling2D(2, name=f"p{i + 1}")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dropout(0.3, name="dropout")(x)
        x = layers.Dense(256, activation="relu", name="fc")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"surrogate_{which}")
