"""The public Python API (#18 point 8): help(diffusionforge) shows more than `sample`; one
load() returns a pipeline whose call gives PIL images; labels as a list (indices or names)
work and a bad one is one ValueError line."""

from __future__ import annotations

import pydoc

import pytest
from PIL import Image

import diffusionforge as df


def test_help_shows_the_api():
    text = pydoc.render_doc(df, renderer=pydoc.plaintext)
    for name in ("load", "sample", "SAMPLERS", "SCHEDULES", "SAMPLER_INFO", "fit_schedule"):
        assert name in text
    assert set(df.__all__) >= {"load", "sample", "SAMPLERS", "SCHEDULES", "SAMPLER_INFO"}


def test_load_returns_a_pipeline_whose_call_gives_pil_images():
    pipe = df.load("digits")
    images = pipe(2, seed=0, labels=[3, 7], nfe=2)
    assert len(images) == 2 and all(isinstance(im, Image.Image) for im in images)
    assert images[0].size == (8, 8)
    again = pipe(2, seed=0, labels=["3", "7"], nfe=2)  # class names
    assert [im.tobytes() for im in images] == [im.tobytes() for im in again]


def test_generate_images_takes_a_list_of_labels():
    pipe = df.load("digits")
    x = pipe.generate_images([0, 1], labels=[3, 7], nfe=2)
    assert x.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="not a class"):
        pipe.generate_images([0, 1], labels=[3, 12], nfe=2)
    with pytest.raises(ValueError, match="one per seed"):
        pipe.generate_images([0, 1, 2], labels=[3, 7], nfe=2)
