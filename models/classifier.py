"""Target classifier (a pre-activation wide residual network) and surrogate classifiers.

The target follows WRN-n-k (Zagoruyko & Komodakis, 2016) with pre-activation blocks (He et al.,
2016), sized for CPU training: depth 6 * blocks + 4, widths `base * (1, 2, 4)`. The VQUNet paper
uses WRN-28-10 on Fashion-MNIST (94.31 %, its Sec. 4.1); this is the same family, much narrower.
Surrogates for black-box transfer are small DenseNets (Huang et al., 2017) and a plain CNN, as
different from the target as practical.

The VQUNet paper's own CIFAR-10 classifiers (its Sec. 4.1) are `build_wrn` (WRN-28-10 at its
defaults) and `build_densenet_bc` (DenseNet-BC, the CIFAR layout of Huang et al., 2017).
"""

from __future__ import annotations

import keras
from keras import layers

# Fashion-MNIST training-set pixel mean and standard deviation (of x / 255), computed from the data.
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530
# CIFAR-10 training-set per-channel (R, G, B) mean and standard deviation of x / 255.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _standardize(x, mean, std):
    """(x - mean) / std, with scalars or one value per channel."""
    if isinstance(mean, (int, float)) and isinstance(std, (int, float)):
        return layers.Rescaling(1.0 / std, offset=-mean / std, name="standardize")(x)
    channels = x.shape[-1]
    mean, std = _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")
    return layers.Rescaling([1.0 / s for s in std], offset=[-m / s for m, s in zip(mean, std)], name="standardize")(x)


def _per_channel(values, channels: int, what: str) -> list[float]:
    values = [float(v) for v in ((values,) if isinstance(values, (int, float)) else values)]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels or (what == "std" and min(values) <= 0):
        raise ValueError(f"Expected {what} as one number or one per channel ({channels})"
                         f"{', each > 0' if what == 'std' else ''}. Received: {what}={values}")
    return values


def _preact_block(x, width: int, stride: int, weight_decay: float, name: str, dropout: float = 0.0):
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
    if dropout:  # between the two convolutions, as WRN's dropout (its Sec. 2.4)
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
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


def build_wrn(input_shape=(32, 32, 3), num_classes: int = 10, *, depth: int = 28, width: int = 10,
              dropout: float = 0.0, weight_decay: float = 5e-4, mean=CIFAR10_MEAN, std=CIFAR10_STD,
              name: str | None = None) -> keras.Model:
    """WRN-depth-width (Zagoruyko & Komodakis, 2016), the VQUNet paper's CIFAR-10 target (WRN-28-10,
    its Sec. 4.1).

    A 3 x 3 convolution of 16 channels, then three groups of (depth - 4) / 6 pre-activation basic
    blocks (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3) of 16 k, 32 k and 64 k channels (k = width),
    the second and third starting with stride 2, a 1 x 1 projection where the shape changes; then
    BN-ReLU, global average pooling and a dense layer. WRN-28-10 has 36.5 M parameters (the WRN
    paper's Table 4).

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: (N, num_classes) logits.

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: number of classes.
        depth: 6 n + 4 with n >= 1 blocks per group (28: the paper's).
        width: widening factor k (10: the paper's).
        dropout: rate between the two convolutions of each block (the WRN paper's dropout variant
            uses 0.3; the VQUNet paper does not say, so 0).
        weight_decay: the WRN paper's weight decay (5e-4): it adds weight_decay * w to each kernel's
            gradient, a Keras L2 penalty of weight_decay / 2.
        mean, std: standardization inside the model, one number or one per channel.
        name: model name (default "wrn_<depth>_<width>").

    Returns:
        An uncompiled `keras.Model`.

    Raises:
        ValueError: a depth that is not 6 n + 4, a width below 1, a dropout outside [0, 1), or a
            mean / std that does not fit the channels.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"Expected a WRN depth 6 n + 4 with n >= 1 (10, 16, 22, 28, ...). Received: depth={depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"Expected a WRN width (widening factor) >= 1. Received: width={width!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"Expected dropout in [0, 1). Received: dropout={dropout!r}")
    inputs = keras.Input(input_shape, name="image")
    x = _standardize(inputs, mean, std)
    reg = keras.regularizers.L2(weight_decay / 2)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_regularizer=reg, name="stem")(x)
    for group in range(3):
        for b in range((depth - 4) // 6):
            stride = 2 if group > 0 and b == 0 else 1
            x = _preact_block(x, 16 * width * 2**group, stride, weight_decay / 2, f"g{group + 1}b{b + 1}", dropout)
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"wrn_{depth}_{width}")


def _bottleneck_layer(x, growth: int, reg, dropout: float, name: str):
    """DenseNet-BC's layer: BN-ReLU-conv1x1(4 k)-BN-ReLU-conv3x3(k), its output concatenated."""
    y = x
    for i, (channels, size) in enumerate(((4 * growth, 1), (growth, 3))):
        y = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(y)
        y = layers.ReLU(name=f"{name}_relu{i + 1}")(y)
        y = layers.Conv2D(channels, size, padding="same", use_bias=False, kernel_regularizer=reg,
                          name=f"{name}_conv{i + 1}")(y)
        if dropout:
            y = layers.Dropout(dropout, name=f"{name}_dropout{i + 1}")(y)
    return layers.Concatenate(name=f"{name}_cat")([x, y])


def build_densenet_bc(input_shape=(32, 32, 3), num_classes: int = 10, *, depth: int = 100, growth: int = 12,
                      compression: float = 0.5, dropout: float = 0.0, weight_decay: float = 1e-4,
                      mean=CIFAR10_MEAN, std=CIFAR10_STD, name: str | None = None) -> keras.Model:
    """DenseNet-BC-depth with growth rate k (Huang et al., 2017), in its CIFAR layout (its Sec. 3,
    "Implementation Details"): a 3 x 3 convolution of 2 k channels, three dense blocks of
    (depth - 4) / 6 bottleneck layers each, 1 x 1 convolution + 2 x 2 average pooling transitions
    keeping `compression` of the channels, then BN-ReLU, global average pooling and a dense layer.
    The VQUNet paper makes black-box attacks on three DenseNets "with different structures" (its
    Sec. 4.1) without naming them; DenseNet-BC (L, k) = (100, 12), (250, 24) and (190, 40), the
    DenseNet paper's CIFAR rows (0.8 M, 15.3 M and 25.6 M parameters), stand in for them.

    Shape:
        inputs: (N, H, W, C) float32 in [0, 1]; outputs: (N, num_classes) logits.

    Args:
        input_shape: (H, W, C) of the images.
        num_classes: number of classes.
        depth: L = 6 n + 4 with n >= 1 bottleneck layers per block.
        growth: growth rate k, the channels each layer adds.
        compression: theta, the share of channels a transition keeps (0.5 in DenseNet-BC).
        dropout: rate after each convolution but the first (the DenseNet paper's 0.2 is for
            training without augmentation; this recipe augments, so 0).
        weight_decay: the DenseNet paper's weight decay (1e-4), a Keras L2 penalty of half of it.
        mean, std: standardization inside the model, one number or one per channel.
        name: model name (default "densenet_bc_<depth>_<growth>").

    Returns:
        An uncompiled `keras.Model`.

    Raises:
        ValueError: a depth that is not 6 n + 4, a growth rate below 1, a compression outside
            (0, 1], a dropout outside [0, 1), or a mean / std that does not fit the channels.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"Expected a DenseNet-BC depth 6 n + 4 with n >= 1 (10, 16, ..., 100, 190, 250). "
                         f"Received: depth={depth!r}")
    if isinstance(growth, bool) or not isinstance(growth, int) or growth < 1:
        raise ValueError(f"Expected a growth rate >= 1. Received: growth={growth!r}")
    if not 0 < compression <= 1:
        raise ValueError(f"Expected compression in (0, 1]. Received: compression={compression!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"Expected dropout in [0, 1). Received: dropout={dropout!r}")
    inputs = keras.Input(input_shape, name="image")
    x = _standardize(inputs, mean, std)
    reg = keras.regularizers.L2(weight_decay / 2)
    x = layers.Conv2D(2 * growth, 3, padding="same", use_bias=False, kernel_regularizer=reg, name="stem")(x)
    for block in range(3):
        for i in range((depth - 4) // 6):
            x = _bottleneck_layer(x, growth, reg, dropout, f"d{block + 1}l{i + 1}")
        if block < 2:
            x = _transition(x, f"t{block + 1}", channels=int(compression * x.shape[-1]), reg=reg, dropout=dropout)
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"densenet_bc_{depth}_{growth}")


def _dense_block(x, layers_n: int, growth: int, name: str):
    for i in range(layers_n):
        y = layers.BatchNormalization(name=f"{name}_l{i}_bn")(x)
        y = layers.ReLU(name=f"{name}_l{i}_relu")(y)
        y = layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"{name}_l{i}_conv")(y)
        x = layers.Concatenate(name=f"{name}_l{i}_cat")([x, y])
    return x


def _transition(x, name: str, channels: int | None = None, reg=None, dropout: float = 0.0):
    """BN-ReLU-conv1x1 to `channels` (default: half) and 2 x 2 average pooling."""
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.Conv2D(channels or x.shape[-1] // 2, 1, use_bias=False, kernel_regularizer=reg, name=f"{name}_conv")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
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
