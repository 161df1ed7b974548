"""Tracks out and in: the Cell Tracking Challenge layout, GEFF, napari, CSV, and tracking scores."""
