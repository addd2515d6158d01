"""Pretraining Harmony and its baselines (CLIP, SLIP, MaskCLIP, iBOT, MAE) from one trainer."""
