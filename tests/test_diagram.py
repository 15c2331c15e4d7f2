"""The book's architecture figure (vitlib.diagram): reproducible, and its labels are the model's.

    .venv/bin/python -m pytest tests/test_diagram.py -q
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vitlib.diagram import OUT, draw_architecture, main
from vitlib.model import ViTConfig

COMMITTED = Path(__file__).resolve().parent.parent / "book" / "assets" / "vit_architecture.svg"
BOXES = ["Image", "Patchify", "Patch embedding", "CLS token + position embedding",
         "Transformer block × L", "LayerNorm", "Multi-head attention", "+", "LayerNorm", "MLP", "+",
         "Final LayerNorm (CLS)", "Classification head"]


def svg_texts(path: Path) -> list[tuple[float, str]]:
    """Every <text> of an SVG as (y, text), top to bottom (SVG's y grows downwards)."""
    texts = [(float(e.get("y")), "".join(e.itertext()))
             for e in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")]
    return sorted(texts, key=lambda t: t[0])


def expected_shapes(cfg: ViTConfig, batch: str | int = "B") -> list[str]:
    """The arrows' labels worked out from the config by hand, top to bottom."""
    H, W = (cfg.image_size,) * 2 if isinstance(cfg.image_size, int) else cfg.image_size
    P = cfg.patch_size
    C, D = cfg.in_channels, cfg.emb_dim
    N = (H // P) * (W // P)
    K = P * P * C
    b = batch
    tokens = f"(B, N+1, D) = ({b}, {N + 1}, {D})"
    return ([f"(B, C, H, W) = ({b}, {C}, {H}, {W})", f"(B, N, K) = ({b}, {N}, {K})",
             f"(B, N, D) = ({b}, {N}, {D})"] + [tokens] * 7   # into, inside and out of the block
            + [f"(B, D) = ({b}, {D})", f"(B, n_cls) = ({b}, {cfg.num_classes})"])


def test_the_committed_figure_is_what_the_code_draws(tmp_path):
    assert OUT == COMMITTED
    fresh = main(["--out", str(tmp_path / "fig.svg")])
    again = tmp_path / "again.svg"
    draw_architecture(path=again)
    assert fresh.read_bytes() == again.read_bytes(), "two drawings differ: the SVG is not deterministic"
    assert COMMITTED.is_file() and fresh.read_bytes() == COMMITTED.read_bytes(), (
        f"{COMMITTED} is not what vitlib/diagram.py draws: regenerate it with "
        f"`.venv/bin/python -m vitlib.diagram` and commit the result")


def test_the_figure_names_every_box_top_to_bottom_with_the_book_models_shapes():
    texts = [t for _, t in svg_texts(COMMITTED)]
    assert texts[0] == "The Vision Transformer (the book's model)"
    boxes = [t for t in texts if t in set(BOXES)]
    assert boxes == BOXES
    shapes = [t for t in texts if t.startswith("(B")]
    assert shapes == expected_shapes(ViTConfig())
    # the numbers the book's notation table gives: N = 16, K = 192, N+1 = 17, D = 128, n_cls = 10
    assert shapes[1] == "(B, N, K) = (B, 16, 192)" and shapes[3] == "(B, N+1, D) = (B, 17, 128)"
    for note in ["h = 4 heads of d = 32", "D → D_ff → D = 128 → 256 → 128, GELU",
                 "L = 6 blocks, one after another", "N = 16 patches of P×P = 8×8 px"]:
        assert note in texts
    for ch in ["ch. 01", "ch. 02", "ch. 03", "ch. 04"]:
        assert ch in texts


def test_another_config_or_batch_changes_the_labels(tmp_path):
    fine = ViTConfig.fine()
    draw_architecture(fine, path=tmp_path / "fine.svg")
    texts = [t for _, t in svg_texts(tmp_path / "fine.svg")]
    shapes = [t for t in texts if t.startswith("(B")]
    assert shapes == expected_shapes(fine)
    assert "(B, N, K) = (B, 64, 48)" in shapes and "(B, N, K) = (B, 16, 192)" not in shapes
    assert "(B, N+1, D) = (B, 65, 128)" in shapes and "N = 64 patches of P×P = 4×4 px" in texts
    assert texts[0] == "The Vision Transformer (this config)"  # not the book's model any more

    orig = ViTConfig.original()
    draw_architecture(orig, batch=128, path=tmp_path / "orig.svg")
    texts = [t for _, t in svg_texts(tmp_path / "orig.svg")]
    assert [t for t in texts if t.startswith("(B")] == expected_shapes(orig, 128)
    assert "(B, N, K) = (128, 196, 768)" in texts and "h = 8 heads of d = 64" in texts


def test_a_model_the_figure_cannot_show_is_refused():
    with pytest.raises(ValueError, match="pool='cls'"):
        draw_architecture(ViTConfig(pool="mean"))
