"""Linear probes: what each layer of a ViT knows, read off its residual stream with a linear model.

At depth 0 (the tokens entering block 1: patch embedding + CLS + position) and after each of the
L blocks we take two (B, D) summaries of the residual stream: the CLS token and the mean of the N
patch tokens. A linear probe fitted on the features of one part of a sample and scored on the rest
asks: is the digit (n_cls = 10 classes), the background texture (n_tex classes) or the digit's
colour (3 numbers) linearly readable here? Accuracy for the two classes, R² for the colour.

    feats = collect_features(model, ColoredMNIST("test"), n=3000)
    rows = probe_layers(feats)            # one row per (depth, token); vitlib.viz.plot_probes(rows)

A probe measures what is *decodable*, not what the model *uses*: a linear readout can find a
direction the later layers ignore. Standardising the features with the train part's statistics
makes one small L2 strength mean the same thing at every depth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vitlib.checkpoint import unwrap

TOKENS = ("cls", "mean")


@torch.no_grad()
def layer_features(model: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The CLS token and the mean patch token at every depth, for one batch of images (B, C, H, W).

    Returns {'cls': (L+1, B, D), 'mean': (L+1, B, D)} as float32 on the CPU; index 0 is the input
    of block 1, index l the output of block l. Forward hooks read the residual stream as the
    model's own forward pass computes it (in eval mode, so no dropout); the model's mode is restored.
    """
    vit = unwrap(model)
    if not hasattr(vit, "blocks") or len(vit.blocks) == 0:
        raise ValueError(f"layer_features needs a vitlib ViT with blocks, got {type(vit).__name__}")
    stream: list[torch.Tensor] = []  # L+1 tensors (B, N+1, D)

    def keep(x: torch.Tensor) -> None:
        stream.append(x.detach().float().cpu())

    handles = [vit.blocks[0].register_forward_pre_hook(lambda m, args: keep(args[0]))]
    handles += [b.register_forward_hook(lambda m, args, out: keep(out[0])) for b in vit.blocks]
    was_training = vit.training
    try:
        vit.eval()
        device = next(vit.parameters()).device
        vit(images.to(device))
    finally:
        for h in handles:
            h.remove()
        vit.train(was_training)
    x = torch.stack(stream)                                  # (L+1, B, N+1, D)
    return {"cls": x[:, :, 0], "mean": x[:, :, 1:].mean(2)}  # each (L+1, B, D)


def collect_features(model: torch.nn.Module, ds, n: int, batch_size: int = 256, seed: int = 0,
                     progress: bool = True) -> dict[str, torch.Tensor]:
    """layer_features over a seeded sample of n images of `ds` (a ColoredMNIST).

    Returns 'cls' and 'mean' (L+1, n, D), the labels 'number_cls' (n,), 'texture_cls' (n,),
    'color' (n, 3), and 'indices' (n,): which images of ds were drawn.
    """
    if not 1 <= n <= len(ds):
        raise ValueError(f"n={n} images requested from a dataset of {len(ds)}: pick 1 <= n <= {len(ds)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n]
    parts: dict[str, list[torch.Tensor]] = {}
    for start in tqdm(range(0, n, batch_size), desc="layer features", leave=False, disable=not progress):
        batch = ds.get_batch(idx[start:start + batch_size], generator=g)  # g: a train split's draws
        feats = layer_features(model, batch["image"])
        for k, v in {**feats, **{k: batch[k] for k in ("number_cls", "texture_cls", "color")}}.items():
            parts.setdefault(k, []).append(v.cpu())
    out = {k: torch.cat(v, dim=1 if k in TOKENS else 0) for k, v in parts.items()}
    out["indices"] = idx
    return out


# --------------------------------------------------------------------------------------------
@dataclass
class LinearProbe:
    """A linear readout of standardised features: (X - mean) / std @ weight + bias."""
    mean: torch.Tensor    # (D,)   train-part feature means
    std: torch.Tensor     # (D,)   train-part feature stds
    weight: torch.Tensor  # (D, k) k classes or outputs
    bias: torch.Tensor    # (k,)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """(n, D) features -> (n, k) logits (classifier) or predictions (ridge)."""
        return ((X.double() - self.mean) / self.std) @ self.weight + self.bias


def _standardise(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if X.dim() != 2 or len(X) < 2:
        raise ValueError(f"features must be (n, D) with n >= 2, got shape {tuple(X.shape)}")
    X = X.double()  # tiny problems (n ~ 10^3, D ~ 10^2): float64 costs nothing and LBFGS is steadier
    mean, std = X.mean(0), X.std(0).clamp_min(1e-6)  # a constant feature gets std 1e-6, not 0
    return (X - mean) / std, mean, std


def fit_linear_classifier(X_train: torch.Tensor, y_train: torch.Tensor, n_classes: int,
                          l2: float = 1e-3, max_iter: int = 100) -> LinearProbe:
    """Multinomial logistic regression on standardised features: full-batch LBFGS on the mean
    cross-entropy + l2 * ||W||² (the bias is not penalised). The L2 keeps the weights finite when
    the classes are linearly separable, which they often are deep in a trained model. On the
    default model's features 100 LBFGS iterations give the held-out accuracy of 1,000 to 0.002."""
    Xs, mean, std = _standardise(X_train)
    y = y_train.long().reshape(-1)
    if len(y) != len(Xs) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y_train must be {len(Xs)} labels in [0, {n_classes}), got shape "
                         f"{tuple(y_train.shape)} with values {int(y.min())}..{int(y.max())}")
    W = torch.zeros(Xs.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Xs @ W + b, y) + l2 * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(mean, std, W.detach(), b.detach())


def probe_accuracy(probe: LinearProbe, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of the rows of X whose largest logit is the true class y."""
    return (probe(X).argmax(1) == y.reshape(-1).to(probe.weight.device)).double().mean().item()


def fit_ridge(X: torch.Tensor, Y: torch.Tensor, l2: float = 1e-3) -> LinearProbe:
    """Ridge regression in closed form on standardised features:
    W = (Xsᵀ Xs / n + l2 I)⁻¹ Xsᵀ (Y - Ȳ) / n, bias Ȳ; the same per-sample L2 scale as the classifier."""
    Xs, mean, std = _standardise(X)
    Y = Y.double().reshape(len(Y), -1)                        # (n, k)
    if len(Y) != len(Xs):
        raise ValueError(f"X has {len(Xs)} rows but Y has {len(Y)}: they must be the same samples")
    n, D = Xs.shape
    ybar = Y.mean(0)
    A = Xs.T @ Xs / n + l2 * torch.eye(D, dtype=torch.float64)  # (D, D), positive definite for l2 > 0
    W = torch.linalg.solve(A, Xs.T @ (Y - ybar) / n)            # (D, k)
    return LinearProbe(mean, std, W, ybar)


def r2_score(Y_true: torch.Tensor, Y_pred: torch.Tensor) -> float:
    """Coefficient of determination 1 - SSE/SST per output column, averaged over the columns
    (the 3 colour channels). 1 is perfect, 0 is as good as predicting the mean, < 0 worse."""
    Yt = Y_true.double().reshape(len(Y_true), -1)
    Yp = Y_pred.double().reshape(len(Y_pred), -1)
    if Yt.shape != Yp.shape:
        raise ValueError(f"Y_true {tuple(Yt.shape)} and Y_pred {tuple(Yp.shape)} must have the same shape")
    sst = ((Yt - Yt.mean(0)) ** 2).sum(0)
    if (sst == 0).any():
        raise ValueError("a column of Y_true is constant, so R² is undefined: probe a target that varies")
    return (1 - ((Yt - Yp) ** 2).sum(0) / sst).mean().item()


# --------------------------------------------------------------------------------------------
def _chance(y_train: torch.Tensor, y_test: torch.Tensor) -> float:
    """Accuracy of always answering the train part's most common class (majority class share)."""
    return (y_test == torch.bincount(y_train).argmax()).double().mean().item()


def probe_layers(features: dict[str, torch.Tensor], train_frac: float = 0.7, seed: int = 0,
                 l2: float = 1e-3, progress: bool = False) -> list[dict]:
    """Fit digit, texture and colour probes at every depth and token type on a seeded `train_frac`
    of the sample (collect_features' output) and score them on the rest.

    One row per (depth, token): depth 0..L, token 'cls' or 'mean', digit_acc, texture_acc,
    color_r2, and the chance levels digit_chance, texture_chance (majority class share on the
    held-out part) and color_r2_chance (0: predicting the mean colour).
    """
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac={train_frac} must be strictly between 0 and 1 (e.g. 0.7)")
    n = len(features["number_cls"])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:int(train_frac * n)], perm[int(train_frac * n):]
    if len(tr) < 2 or len(te) < 1:
        raise ValueError(f"{n} samples split {train_frac:.0%}/{1 - train_frac:.0%} leave too few on one "
                         f"side: collect more features")
    ys = {k: features[k].long() for k in ("number_cls", "texture_cls")}
    n_cls = {k: int(y.max()) + 1 for k, y in ys.items()}
    chance = {f"{name}_chance": _chance(ys[k][tr], ys[k][te])
              for name, k in (("digit", "number_cls"), ("texture", "texture_cls"))}
    color = features["color"]
    L1 = features["cls"].shape[0]  # L+1 depths
    jobs = [(depth, tok) for depth in range(L1) for tok in TOKENS]
    rows = []
    for depth, tok in tqdm(jobs, desc="probes", leave=False, disable=not progress):
        X = features[tok][depth]   # (n, D)
        row = {"depth": depth, "token": tok}
        for name, k in (("digit", "number_cls"), ("texture", "texture_cls")):
            probe = fit_linear_classifier(X[tr], ys[k][tr], n_cls[k], l2=l2)
            row[f"{name}_acc"] = probe_accuracy(probe, X[te], ys[k][te])
        row["color_r2"] = r2_score(color[te], fit_ridge(X[tr], color[tr], l2=l2)(X[te]))
        rows.append({**row, **chance, "color_r2_chance": 0.0})
    return rows
