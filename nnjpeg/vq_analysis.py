"""VQUNet analyses (VQUNet paper, Figs. 3-6): how much adversarial noise reaches each depth.

For clean images x and adversarial x_adv (e.g. FGSM at several eps):
- reconstruction l1 error of the denoiser against the clean image (Fig. 3), VQUNet vs non-VQ U-Net;
- per depth, the mean l1 change of the encoder features before quantization (a_d) and after (q_d)
  between x and x_adv (Figs. 4-5), also relative to the mean |a_d| of the clean features, since the
  scale of the features differs between depths and between models;
- per depth, the share of code indices that change (Fig. 6).
"""

from __future__ import annotations

import numpy as np


def depth_changes(model, x: np.ndarray, x_adv: np.ndarray) -> dict:
    """Per-depth statistics for a `nnjpeg.models.vqunet.VQUNet` (vq or not).

    Shape:
        x, x_adv: (N, H, W, C) float32 in [0, 1], the model's input size.

    Returns:
        dict with `reconstruction_l1` (mean |f(x_adv) - x|), and per depth lists `pre_vq_l1`,
        `post_vq_l1` (None entries for the non-VQ U-Net), the same divided by the clean features'
        mean |a_d| (`pre_vq_rel`, `post_vq_rel`) and `index_change` (share of changed codes).
    """
    clean_levels = model.encode(x)
    adv_levels = model.encode(x_adv)
    recon = np.asarray(model.decode(adv_levels))
    keys = ("pre_vq_l1", "post_vq_l1", "pre_vq_rel", "post_vq_rel", "index_change")
    out = {"reconstruction_l1": float(np.abs(recon - x).mean()), **{k: [] for k in keys}}
    for (a, q, idx), (a2, q2, idx2) in zip(clean_levels, adv_levels):
        scale = float(np.abs(np.asarray(a)).mean())
        pre = float(np.abs(np.asarray(a2) - np.asarray(a)).mean())
        post = None if q is None else float(np.abs(np.asarray(q2) - np.asarray(q)).mean())
        out["pre_vq_l1"].append(pre)
        out["post_vq_l1"].append(post)
        out["pre_vq_rel"].append(pre / scale if scale > 0 else None)
        out["post_vq_rel"].append(None if post is None or scale == 0 else post / scale)
        out["index_change"].append(None if q is None else float(np.mean(np.asarray(idx2) != np.asarray(idx))))
    return out


def sweep(models: dict, x: np.ndarray, adversarial: dict) -> dict:
    """`depth_changes` for every model name and every eps.

    Args:
        models: name -> VQUNet.
        x: clean images.
        adversarial: eps -> adversarial images of x.

    Returns:
        {name: {str(eps): depth_changes(...)}}.
    """
    return {name: {str(e): depth_changes(m, x, xa) for e, xa in adversarial.items()} for name, m in models.items()}


def plot(result: dict, path) -> None:
    """Reconstruction l1 vs eps (Fig. 3), pre/post-VQ feature change per depth (Figs. 4-5) and index
    change per depth (Fig. 6), one panel each: one colour per model, one marker per depth, pre-VQ
    solid and post-VQ dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    markers = "osD^v<>p"
    colours = {name: f"C{i}" for i, name in enumerate(result)}
    depths = 0
    for name, by_eps in result.items():
        eps = sorted(by_eps, key=float)
        xs = [float(e) for e in eps]
        c = colours[name]
        axes[0].plot(xs, [by_eps[e]["reconstruction_l1"] for e in eps], marker="o", color=c)
        n = len(by_eps[eps[0]]["pre_vq_l1"])
        depths = max(depths, n)
        for d in range(n):
            m = markers[d % len(markers)]
            axes[1].plot(xs, [_pct(by_eps[e]["pre_vq_rel"][d]) for e in eps], "-", marker=m, color=c)
            if by_eps[eps[0]]["post_vq_l1"][d] is not None:
                axes[1].plot(xs, [_pct(by_eps[e]["post_vq_rel"][d]) for e in eps], "--", marker=m, color=c, mfc="none")
                axes[2].plot(xs, [100 * by_eps[e]["index_change"][d] for e in eps], "-", marker=m, color=c)
    for ax, title, ylabel in zip(axes, ("reconstruction error (Fig. 3)", "feature change per depth (Figs. 4-5)",
                                        "code indices changed (Fig. 6)"),
                                 ("mean l1", "l1 change, % of the clean features' mean |a|", "%")):
        ax.set_title(title)
        ax.set_xlabel("eps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    model_keys = [Line2D([], [], color=colours[n], marker="o", label=n) for n in result]
    depth_keys = [Line2D([], [], color="0.3", marker=markers[d % len(markers)], ls="none", label=f"depth {d + 1}")
                  for d in range(depths)]
    style_keys = [Line2D([], [], color="0.3", ls="-", label="pre-VQ"),
                  Line2D([], [], color="0.3", ls="--", label="post-VQ")]
    axes[0].legend(handles=model_keys, fontsize=7)
    axes[1].legend(handles=depth_keys + style_keys, fontsize=7, ncol=2)
    axes[2].legend(handles=depth_keys, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pct(v):
    return float("nan") if v is None else 100.0 * v
