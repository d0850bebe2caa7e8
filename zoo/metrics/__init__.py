"""Metrics torchmetrics lacks: the FID feature extractor trained on the data itself."""
