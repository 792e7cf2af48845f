"""Stages of the fine-tuning pipeline: one small module per DVC stage plus the shared modules they call."""
