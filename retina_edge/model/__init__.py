"""The PyTorch reference model and its parts (torch; imported only where the model is needed).

``archs`` (no torch) registers the named architectures and their builders; ``retinanet`` composes
backbone (``backbone``), FPN (``fpn``) and heads (``head``) with the anchors, box coding, matching,
losses, transform and postprocessing of torchvision's RetinaNet; ``checkpoints`` loads and saves.
"""
