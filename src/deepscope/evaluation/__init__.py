"""Evaluation: predictions, metrics on a split, figures."""
