"""Accuracy measures without torch: COCO AP (``evaluate``) and detection matching (``matching``)."""
