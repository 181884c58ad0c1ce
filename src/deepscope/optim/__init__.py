"""Optimizers (and, later, learning-rate schedules)."""
