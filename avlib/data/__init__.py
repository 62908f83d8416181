"""Clip indexes, datasets and the synthetic audio-visual world."""
