"""Metrics, confusion matrices, reports and plots."""
