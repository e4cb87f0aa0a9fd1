"""Pipelines: load a checkpoint folder, generate samples, draw pictures of them."""
