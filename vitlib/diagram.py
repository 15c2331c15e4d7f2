"""The book's architecture figure: the ViT as a vertical flow of boxes, each arrow labelled with
the tensor shape it carries for a given ViTConfig, symbolic and numeric, e.g.
`(B, N, K) = (B, 16, 192)`.

    python -m vitlib.diagram [--out book/assets/vit_architecture.svg]

writes the SVG the book shows. The output is deterministic (fixed fonts, fixed SVG ids, no date),
so regenerating it gives the same bytes and tests/test_diagram.py can compare it with the
committed file. Text stays text in the SVG (searchable, and the test reads it back).
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from vitlib.model import ViTConfig

OUT = Path(__file__).resolve().parent.parent / "book" / "assets" / "vit_architecture.svg"
TITLE = "The Vision Transformer (the book's model)"

# One colour per chapter that builds the boxes (Okabe-Ito hues: readable by colour-blind readers);
# (fill, edge) pairs, with the chapter's side note.
CHAPTERS = {
    "01": ("#ececec", "#6b6b6b", ("the dataset",)),
    "02": ("#d9eaf7", "#0072b2", ("patches and", "tokens")),
    "03": ("#fde8c8", "#d55e00", ("attention",)),
    "04": ("#d5f0e3", "#009e73", ("the model",)),
}
# rcParams that make the SVG the same bytes on every run and machine with the pinned matplotlib.
RC = {"svg.hashsalt": "vit-book", "svg.fonttype": "none", "font.family": "sans-serif",
      # DejaVu (bundled with matplotlib) lays the text out; the others are what a browser
      # without DejaVu falls back to (Verdana has DejaVu's widths)
      "font.sans-serif": ["DejaVu Sans", "Verdana"],
      "font.monospace": ["DejaVu Sans Mono", "Menlo", "Consolas"], "path.simplify": False}

W_FIG = 7.0                     # inches: about 700 px at book width
X_MID, BOX_W = 3.55, 2.9        # the column of boxes
BOX_H, GAP = 0.46, 0.36         # box height, arrow length (inches)
SKIP_X = X_MID + BOX_W / 2 + 0.25  # the lane of the residual skip arrows
BLOCK_PAD = 0.5                 # from the block frame's top to where the arrow into it ends
SIDE_X = 5.95                   # the chapter notes' brackets


@dataclass(frozen=True)
class Shapes:
    """The shape label of every arrow, '(symbols) = (numbers)'."""
    image: str
    patches: str
    embedded: str
    tokens: str
    pooled: str
    logits: str


def shapes(cfg: ViTConfig, batch: str | int = "B") -> Shapes:
    """The tensor shapes that flow through the ViT `cfg` describes, for a batch of `batch` images
    ("B" keeps it a symbol)."""
    (H, W), (gh, gw) = cfg.image_hw, cfg.grid_size
    C, D, N = cfg.in_channels, cfg.emb_dim, cfg.num_patches
    K = (H // gh) * (W // gw) * C                   # P*P*C values in one flattened patch

    def lab(symbols: str, *numbers: int) -> str:
        return f"({symbols}) = ({', '.join(map(str, (batch, *numbers)))})"

    return Shapes(image=lab("B, C, H, W", C, H, W), patches=lab("B, N, K", N, K),
                  embedded=lab("B, N, D", N, D), tokens=lab("B, N+1, D", N + 1, D),
                  pooled=lab("B, D", D), logits=lab("B, n_cls", cfg.num_classes))


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib.pyplot as plt  # deferred: importing vitlib must not pick a backend
    with plt.rc_context(RC):
        yield


def _box(ax, y: float, title: str, sub: str, ch: str) -> float:
    """A rounded box in chapter ch's colours whose top edge is at y, with a bold title and a line
    of detail; returns its bottom edge."""
    from matplotlib.patches import FancyBboxPatch
    fill, edge, _ = CHAPTERS[ch]
    r, w = 0.06, BOX_W
    ax.add_patch(FancyBboxPatch((X_MID - w / 2 + r, y - BOX_H + r), w - 2 * r, BOX_H - 2 * r,
                                boxstyle=f"round,pad={r}", fc=fill, ec=edge, lw=1.4))
    ax.text(X_MID, y - 0.16, title, ha="center", va="center", fontsize=10, weight="bold")
    ax.text(X_MID, y - 0.34, sub, ha="center", va="center", fontsize=8, color="#333333")
    return y - BOX_H


def _arrow(ax, y: float, label: str, length: float = GAP, label_y: float | None = None) -> float:
    """A downward arrow from y, its shape label on its left (at label_y, default: halfway);
    returns where it ends."""
    x = X_MID
    ax.annotate("", xy=(x, y - length), xytext=(x, y),
                arrowprops=dict(arrowstyle="-|>", color="#222222", lw=1.2, shrinkA=0, shrinkB=0))
    ax.text(x - 0.1, y - length / 2 if label_y is None else label_y, label, ha="right",
            va="center", fontsize=8.5, family="monospace", color="#1a1a1a")
    return y - length


def _plus(ax, y: float) -> float:
    """The residual addition: a circled '+' whose top is at y; returns its bottom."""
    from matplotlib.patches import Circle
    r = 0.13
    ax.add_patch(Circle((X_MID, y - r), r, fc="white", ec=CHAPTERS["04"][1], lw=1.4))
    ax.text(X_MID, y - r, "+", ha="center", va="center", fontsize=12, weight="bold")
    return y - 2 * r


def _skip(ax, y_from: float, y_plus: float) -> None:
    """The residual skip: leaves the stream at y_from, rejoins at the '+' centred at y_plus."""
    kw = dict(color="#222222", lw=1.2)
    ax.plot([X_MID, SKIP_X, SKIP_X], [y_from, y_from, y_plus], **kw, solid_joinstyle="round")
    ax.plot([X_MID], [y_from], "o", ms=4, color="#222222")
    ax.annotate("", xy=(X_MID + 0.13, y_plus), xytext=(SKIP_X, y_plus),
                arrowprops=dict(arrowstyle="-|>", shrinkA=0, shrinkB=0, **kw))


def _side_note(ax, top: float, bottom: float, ch: str, label: bool = True,
               ticks: tuple[bool, bool] = (True, True)) -> None:
    """A bracket in the chapter's colour from top to bottom, with the chapter's note beside it
    (label=False: the bracket only). ticks: whether the top and bottom ends turn in."""
    _, edge, note = CHAPTERS[ch]
    t, b, x = top - 0.04, bottom + 0.04, SIDE_X
    xs, ys = [x, x], [t, b]
    if ticks[0]:
        xs, ys = [x - 0.08] + xs, [t] + ys
    if ticks[1]:
        xs, ys = xs + [x - 0.08], ys + [b]
    ax.plot(xs, ys, color=edge, lw=1.6, solid_capstyle="butt")
    if label:  # one text per line: the same layout in every browser
        lines = (f"ch. {ch}", *note)
        for i, line in enumerate(lines):
            ax.text(x + 0.1, (t + b) / 2 + 0.075 * (len(lines) - 1) - 0.15 * i, line, ha="left",
                    va="center", fontsize=8.5, color=edge, weight="bold" if i == 0 else "normal")


def _stem(ax, cfg: ViTConfig, s: Shapes, y: float) -> float:
    """Image -> Patchify -> Patch embedding -> CLS + position, from y down; returns the end of
    the arrow that enters the transformer blocks."""
    (H, W), (gh, gw) = cfg.image_hw, cfg.grid_size
    ph, pw = H // gh, W // gw
    top = y
    y = _box(ax, y, "Image", f"a coloured digit on a texture, {H}×{W} px", "01")
    _side_note(ax, top, y, "01")
    y = _arrow(ax, y, s.image)
    top = y
    y = _box(ax, y, "Patchify", f"N = {cfg.num_patches} patches of P×P = {ph}×{pw} px", "02")
    y = _arrow(ax, y, s.patches)
    emb = "LayerNorm, Linear K → D, LayerNorm" if cfg.patch_norm else "Linear K → D"
    y = _box(ax, y, "Patch embedding", emb, "02")
    y = _arrow(ax, y, s.embedded)
    table = "a fixed sin-cos" if cfg.pos_embed == "sincos" else "a learned"
    y = _box(ax, y, "CLS token + position embedding",
             f"N+1 = {cfg.num_patches + 1} tokens, plus {table} table", "02")
    _side_note(ax, top, y, "02")
    # longer: it crosses into the block's frame, which starts BLOCK_PAD above where it ends
    return _arrow(ax, y, s.tokens, length=GAP + BLOCK_PAD, label_y=y - GAP / 2)


def _block(ax, cfg: ViTConfig, s: Shapes, y: float) -> tuple[float, float]:
    """The pre-norm transformer block, x + MHA(LN(x)) then x + MLP(LN(x)), inside a container
    whose top edge is BLOCK_PAD above y; returns the container's bottom edge and the attention
    box's."""
    top = y + BLOCK_PAD
    y_skip1 = y - 0.06
    y = _box(ax, y - 0.12, "LayerNorm", "per token, over D", "04")
    y = _arrow(ax, y, s.tokens)
    mha_top = y
    y = _box(ax, y, "Multi-head attention",
             f"h = {cfg.n_heads} heads of d = {cfg.attn_head_dim}", "03")
    mha_bottom = y
    y = _arrow(ax, y, s.tokens)
    _skip(ax, y_skip1, y - 0.13)
    y = _plus(ax, y)
    y_skip2 = y - 0.12
    y = _arrow(ax, y, s.tokens, length=GAP + 0.12)
    y = _box(ax, y, "LayerNorm", "per token, over D", "04")
    y = _arrow(ax, y, s.tokens)
    D, F = cfg.emb_dim, cfg.mlp_dim
    y = _box(ax, y, "MLP", f"D → D_ff → D = {D} → {F} → {D}, GELU", "04")
    y = _arrow(ax, y, s.tokens)
    _skip(ax, y_skip2, y - 0.13)
    y = _plus(ax, y)
    bottom = y - 0.12
    _container(ax, top, bottom, cfg.n_layers)
    _side_note(ax, top, mha_top + 0.08, "04", label=False, ticks=(True, False))
    _side_note(ax, mha_top, mha_bottom, "03")
    return bottom, mha_bottom


def _container(ax, top: float, bottom: float, n_layers: int) -> None:
    """The frame around one block, titled 'Transformer block × L' with L's value."""
    from matplotlib.patches import FancyBboxPatch
    edge = CHAPTERS["04"][1]
    x0, x1 = 1.2, SKIP_X + 0.22
    ax.add_patch(FancyBboxPatch((x0, bottom), x1 - x0, top - bottom, zorder=0,
                                boxstyle="round,pad=0,rounding_size=0.1",
                                fc="#f4fbf8", ec=edge, lw=1.6, ls=(0, (5, 2))))
    ax.text(x0 + 0.12, top - 0.17, "Transformer block × L", ha="left", va="center",
            fontsize=10.5, weight="bold", color="#00694d")
    ax.text(x0 + 0.12, top - 0.37, f"L = {n_layers} blocks, one after another", ha="left",
            va="center", fontsize=8, color="#00694d")


def _head(ax, cfg: ViTConfig, s: Shapes, y: float, note_top: float) -> float:
    """Final LayerNorm (CLS) -> Classification head -> logits, from y down; returns the bottom.
    Chapter 04's note runs from note_top down to the head."""
    y = _arrow(ax, y, s.tokens)
    y = _box(ax, y, "Final LayerNorm (CLS)", "only the CLS token goes on", "04")
    y = _arrow(ax, y, s.pooled)
    y = _box(ax, y, "Classification head",
             f"Linear D → n_cls = {cfg.emb_dim} → {cfg.num_classes}", "04")
    _side_note(ax, note_top, y, "04", ticks=(False, True))
    y = _arrow(ax, y, s.logits)
    ax.text(X_MID, y - 0.14, "logits: one score per digit class", ha="center", va="center",
            fontsize=9, style="italic")
    return y - 0.3


def draw_architecture(cfg: ViTConfig | None = None, batch: str | int = "B",
                      path: str | Path | None = None):
    """Draw the ViT `cfg` describes (default: the book's model) as a flow of boxes, every arrow
    labelled with its tensor shape for a batch of `batch` images. Returns the Figure; given
    `path`, also saves it there (SVG: byte-for-byte reproducible) and closes it."""
    cfg = cfg if cfg is not None else ViTConfig()
    book = all(getattr(cfg, f) == getattr(ViTConfig(), f) for f in ViTConfig.fields_of_kind("arch"))
    title = TITLE if book else "The Vision Transformer (this config)"
    if cfg.pool != "cls":
        raise ValueError(f"draw_architecture draws the CLS-token model, but this config has "
                         f"pool={cfg.pool!r}: draw it with pool='cls'")
    import matplotlib.pyplot as plt
    with _style():
        fig = plt.figure(figsize=(W_FIG, 10))
        ax = fig.add_axes((0, 0, 1, 1))
        s = shapes(cfg, batch)
        ax.text(W_FIG / 2, -0.3, title, ha="center", va="center", fontsize=13, weight="bold")
        y = _stem(ax, cfg, s, -0.7)
        y, mha_bottom = _block(ax, cfg, s, y)
        bottom = _head(ax, cfg, s, y, mha_bottom - 0.08)
        ax.set_xlim(0, W_FIG)
        ax.set_ylim(bottom, 0)
        ax.set_aspect("equal")
        ax.axis("off")
        fig.set_size_inches(W_FIG, -bottom)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, metadata={"Date": None} if str(path).endswith(".svg") else None)
            plt.close(fig)
    return fig


def main(argv: Sequence[str] | None = None) -> Path:
    """`python -m vitlib.diagram [--out PATH]`: write the book's figure (SVG, or PNG by suffix)."""
    p = argparse.ArgumentParser(description="Draw the book's ViT architecture figure.")
    p.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT})")
    args = p.parse_args(argv)
    draw_architecture(path=args.out)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
