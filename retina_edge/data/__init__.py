"""Datasets: COCO-format folders and annotations, synthetic images and videos (torch only in
``detection_data``, the training/eval dataset)."""
