"""Lesion segmentation from box prompts (classic threshold baseline; MedSAM backends)."""
