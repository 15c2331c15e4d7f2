"""vitlib: the Vision Transformer that the vit-book notebooks build, kept importable.

Modules (each one idea):
    data       coloured MNIST digits on textured backgrounds
    textures   procedural and folder texture banks
    imdb       the original project's on-disk dataset format
    model      the ViT itself (nanoGPT-style, one file)
    cnn        a small ResNet of the same size, chapter 07's baseline (`arch: cnn`)
    train      training loop and `python -m vitlib.train`
    inference  evaluation and figures, `python -m vitlib.inference`
    interpret  attention rollout, the ViT paper's Fig. 7 analyses, explanations scored against the digit
    explain    attribution methods for one image batch (rollouts, gradient rollout, occlusion, IG)
    probe      linear probes: what each layer's tokens know (digit, texture, colour)
    compare    ViT against CNN: matched-step runs and their summaries (chapter 07)
    diagram    the architecture figure of the book
    hub        the shipped pretrained models (load_pretrained)
    viz        plotting helpers
"""
__version__ = "0.1.0"
