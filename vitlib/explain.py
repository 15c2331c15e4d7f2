"""Six ways to ask a ViT "where did you look?", each a (B, gh, gw) map over the patch grid, and
their scores against the exact digit masks of ColoredMNIST (vitlib.interpret's scorer).

    maps = explain_batch(model, images)        # {method name: (B, gh, gw)}
    rows = score_methods(model, ds, n=1000)    # pointing game and mass on the digit, per method

Attention-based (what the model routes, whatever the class): `cls_attention`, `rollout`.
Class-specific (what moves the logit of one class, the predicted one unless `target` is given):
`grad_rollout` (Chefer, Gur & Wolf 2021), `occlusion` and `integrated_gradients` (via captum).
Every method runs the model in eval mode under its own dtype and gives it back as it found it.
"""
from __future__ import annotations

import inspect
import math
import time
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vitlib.checkpoint import unwrap
from vitlib.interpret import attention_rollout, mass_on_digit, pointing_game
from vitlib.model import as_heads

Target = torch.Tensor | int | None


# ----------------------------------------------------------------------------------- helpers

@contextmanager
def _eval(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for the explanation; the model's own mode back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _grid(model: torch.nn.Module) -> tuple[int, int]:
    return unwrap(model).config.grid_size


def _patch(model: torch.nn.Module) -> tuple[int, int]:
    gh, gw = _grid(model)
    H, W = unwrap(model).config.image_hw
    return H // gh, W // gw


def _as_model_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The images on the model's device and in its dtype (the explanation runs as the model does)."""
    p = next(model.parameters())
    return images.detach().to(device=p.device, dtype=p.dtype)


def _number_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, n_cls) digit logits, also from a model with texture and colour heads."""
    return as_heads(model(x))["number"]


def _targets(model: torch.nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """(B,) class per image: the given one(s), else the model's prediction."""
    if target is None:
        with torch.no_grad():
            return _number_logits(model, x).argmax(-1)
    t = torch.as_tensor(target, device=x.device, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(len(x))
    if t.shape != (len(x),):
        raise ValueError(f"target must be one class or one per image ({len(x)}), got shape {tuple(t.shape)}")
    return t


def _attentions(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The L attention maps (B, h, N+1, N+1) of one forward pass, no gradients."""
    with torch.no_grad():
        return model(x, return_attention=True)[1]


# ----------------------------------------------------------------------------------- methods

def cls_attention(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last layer's attention from the CLS token to each patch, mean over heads -> (B, gh, gw).

    The simplest map: where the token that feeds the classifier looks in its last read. It ignores
    every earlier layer, in which the patch tokens have already mixed with each other."""
    with _eval(model):
        last = _attentions(model, _as_model_input(model, images))[-1]   # (B, h, N+1, N+1)
    B = last.shape[0]
    return last[:, :, 0, 1:].mean(dim=1).float().reshape(B, *_grid(model)).cpu()


def rollout(model: torch.nn.Module, images: torch.Tensor, variant: str = "abnar",
            head_fusion: str | None = None) -> torch.Tensor:
    """Attention rollout -> (B, gh, gw): the CLS row of the product of all layers' attention.

    variant='abnar' (Abnar & Zuidema 2020, heads fused by `head_fusion`, mean by default) or
    'original' (the original project's, max over heads); see vitlib.interpret.attention_rollout."""
    with _eval(model):
        attentions = _attentions(model, _as_model_input(model, images))
    return attention_rollout(attentions, variant=variant, head_fusion=head_fusion, grid=_grid(model))


def grad_rollout(model: torch.nn.Module, images: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Gradient-weighted rollout (Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability")
    -> (B, gh, gw).

    Per layer, Ā = E_h[(∇A ⊙ A)^+]: attention weights scaled by how much the target logit rises with
    them, negative parts dropped, mean over the h heads; then R <- R + Ā R from R = I (the identity
    stands for the residual stream). The map is R[0, 1:], what the CLS token reads from each patch.
    `return_attention=True` makes every block take the manual attention path, whose weights carry
    gradients; the model's fused setting is not touched."""
    with _eval(model):
        x = _as_model_input(model, images)
        t = _targets(model, x, target)
        with torch.enable_grad():
            # an input that requires grad gives the weights gradients, even with frozen parameters
            out, attentions = model(x.requires_grad_(), return_attention=True)
            if any(a is None for a in attentions):
                raise ValueError("grad_rollout needs every block's attention weights: the model returned "
                                 "None for some; check that forward(x, return_attention=True) gives them")
            score = as_heads(out)["number"].gather(1, t[:, None]).sum()   # images are independent
            grads = torch.autograd.grad(score, attentions)
    B, _, N, _ = attentions[0].shape
    R = torch.eye(N, device=x.device).expand(B, N, N).clone()            # (B, N+1, N+1)
    for a, g in zip(attentions, grads):
        a_bar = (g * a).detach().float().clamp_min(0).mean(dim=1)        # (B, N+1, N+1)
        R = R + a_bar @ R
    return R[:, 0, 1:].reshape(B, *_grid(model)).cpu()


def occlusion(model: torch.nn.Module, images: torch.Tensor, target: Target = None) -> torch.Tensor:
    """How much the target logit drops when one patch is set to mid-grey (0 in [-1, 1]) -> (B, gh, gw).

    captum's Occlusion with one patch as the window and the stride: one forward pass per patch,
    N + 1 per image. Negative where hiding a patch raises the logit."""
    from captum.attr import Occlusion   # captum is only needed here and in integrated_gradients

    ph, pw = _patch(model)
    with _eval(model):
        x = _as_model_input(model, images)
        t = _targets(model, x, target)
        C, (gh, gw) = x.shape[1], _grid(model)
        attr = Occlusion(partial(_number_logits, model)).attribute(
            x, sliding_window_shapes=(C, ph, pw), strides=(C, ph, pw), baselines=0.0, target=t,
            perturbations_per_eval=gh * gw)                               # (B, C, H, W)
    # every pixel of a patch carries that patch's logit drop: the mean over the patch is it
    return F.avg_pool2d(attr.detach().float().mean(dim=1, keepdim=True), (ph, pw))[:, 0].cpu()


def blurred(x: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """(B, C, H, W) -> the images under a Gaussian blur of `sigma` pixels: IG's default baseline,
    an image with the digit smeared away but, unlike a constant, still varying inside each patch."""
    from torchvision.transforms.functional import gaussian_blur

    k = 2 * int(3 * sigma) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


def _baseline(baseline: float | str | torch.Tensor, x: torch.Tensor) -> float | torch.Tensor:
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline {baseline!r}: use 'blur', a number or a tensor")
        return blurred(x)
    if not torch.is_tensor(baseline):
        return float(baseline)
    b = baseline.to(device=x.device, dtype=x.dtype)
    if b.shape not in (x.shape, x.shape[1:]):
        raise ValueError(f"baseline {tuple(b.shape)} fits neither the images {tuple(x.shape)} nor one "
                         f"image {tuple(x.shape[1:])}; pass a number or a tensor of one of those shapes")
    return b.expand_as(x)


def integrated_gradients(model: torch.nn.Module, images: torch.Tensor, target: Target = None,
                         n_steps: int = 32, internal_batch_size: int = 512,
                         absolute: bool = True, baseline: float | str | torch.Tensor = "blur") -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017) from a blurred copy of the image -> (B, gh, gw).

    The gradient of the target logit averaged along the straight path from the baseline to the
    image, times (image - baseline); |attribution| summed over the C channels and over each patch's
    P x P pixels (absolute=False: the signed sum). The signed attributions of an image sum to
    f(image) - f(baseline) ("completeness"), up to the error of the n_steps-point integral.

    With patch_norm (the book's model) a constant baseline, grey or black, breaks completeness: the
    LayerNorm on the raw patch sees c + a(x - c) as x for every a above ~1e-3, so f is flat along
    the path and its whole rise sits in a sliver at a = 0 that no n_steps-point integral samples.
    The attributions then sum to ~0 and each is x_i df/dx_i times one constant: gradient x input.
    A baseline that is not constant over a patch keeps the path informative: the default 'blur'
    (`blurred`, Sturmfels et al. 2020), or any (C, H, W) or (B, C, H, W) tensor."""
    from captum.attr import IntegratedGradients

    ph, pw = _patch(model)
    with _eval(model):
        x = _as_model_input(model, images)
        t = _targets(model, x, target)
        attr = IntegratedGradients(partial(_number_logits, model)).attribute(
            x, baselines=_baseline(baseline, x), target=t, n_steps=n_steps,
            internal_batch_size=max(internal_batch_size, len(x)))         # (B, C, H, W)
    attr = attr.detach().float()
    per_pixel = (attr.abs() if absolute else attr).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    return (F.avg_pool2d(per_pixel, (ph, pw)) * (ph * pw))[:, 0].cpu()    # sum over each patch


Method = Callable[..., torch.Tensor]

METHODS: dict[str, Method] = {
    "CLS attention (last layer)": cls_attention,
    "rollout (mean)": partial(rollout, variant="abnar", head_fusion="mean"),
    "rollout (max, original)": partial(rollout, variant="original", head_fusion="max"),
    "gradient rollout": grad_rollout,
    "occlusion": occlusion,
    "integrated gradients": integrated_gradients,
}


# ----------------------------------------------------------------------------------- running

def _pick(methods: list[str] | dict[str, Method] | None) -> dict[str, Method]:
    if methods is None:
        return dict(METHODS)
    if isinstance(methods, dict):
        return dict(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)} "
                         f"(or pass a dict name -> callable(model, images[, target]))")
    return {m: METHODS[m] for m in methods}


def _run(fn: Method, model: torch.nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One method on one batch: class-specific methods get the target, the others do not take one."""
    if "target" in inspect.signature(fn).parameters:
        return fn(model, images, target=target)
    return fn(model, images)


def explain_batch(model: torch.nn.Module, images: torch.Tensor,
                  methods: list[str] | dict[str, Method] | None = None,
                  target: Target = None) -> dict[str, torch.Tensor]:
    """{method name: (B, gh, gw) map} for these images; every class-specific method explains the
    same class, the model's prediction unless `target` is given. methods: names from METHODS
    (default: all) or a dict name -> callable(model, images[, target])."""
    chosen = _pick(methods)
    with _eval(model):
        t = _targets(model, _as_model_input(model, images), target)
    return {name: _run(fn, model, images, t) for name, fn in chosen.items()}


def _mean_se(values: torch.Tensor) -> tuple[float, float, int]:
    """Mean and its standard error over the images, skipping nan (a map with no mass)."""
    v = values[~values.isnan()].double()
    if len(v) == 0:
        return math.nan, math.nan, 0
    se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return float(v.mean()), se, len(v)


def score_methods(model: torch.nn.Module, ds, n: int = 1000, batch_size: int = 50, seed: int = 0,
                  methods: list[str] | dict[str, Method] | None = None,
                  progress: bool = True) -> list[dict]:
    """Explain a seeded random sample of n images of `ds` (a ColoredMNIST) and score every map
    against the exact digit masks -> one row per method:
    {method, pointing, pointing_se, mass, mass_se, n, seconds}.

    pointing: share of images whose top patch touches the digit (vitlib.interpret.pointing_game);
    mass: mean mass on the digit relative to chance (1 = chance; interpret.mass_on_digit), over the
    images whose map has any positive mass; *_se: standard errors over the images; seconds: wall
    time spent in that method. Every method explains the model's predicted class."""
    chosen = _pick(methods)
    n = min(int(n), len(ds))
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    hits = {m: [] for m in chosen}
    mass = {m: [] for m in chosen}
    seconds = dict.fromkeys(chosen, 0.0)
    for start in tqdm(range(0, n, batch_size), desc="explaining", leave=False, disable=not progress):
        batch_idx = idx[start:start + batch_size]
        images, masks = ds.get_batch(batch_idx)["image"], ds.masks(batch_idx)
        with _eval(model):
            t = _targets(model, _as_model_input(model, images), None)
        for name, fn in chosen.items():
            t0 = time.perf_counter()
            maps = _run(fn, model, images, t).cpu()
            seconds[name] += time.perf_counter() - t0
            hits[name].append(pointing_game(maps, masks).float())
            mass[name].append(mass_on_digit(maps, masks))
    rows = []
    for name in chosen:
        p, p_se, _ = _mean_se(torch.cat(hits[name]))
        m, m_se, _ = _mean_se(torch.cat(mass[name]))
        rows.append({"method": name, "pointing": p, "pointing_se": p_se, "mass": m, "mass_se": m_se,
                     "n": n, "seconds": seconds[name]})
    return rows


__all__ = ["cls_attention", "rollout", "grad_rollout", "occlusion", "integrated_gradients", "METHODS",
           "explain_batch", "score_methods"]
