"""Inference engines and their speed metering (no Textual import)."""
