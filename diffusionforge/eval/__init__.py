"""Evaluation: feature extractors, FID/KID/precision-recall, memorization."""

from diffusionforge.eval.features import (
    ClassifierFeatures,
    FeatureExtractor,
    cached_classifier,
    extract_features,
    train_classifier,
)
from diffusionforge.eval.fid import fid, frechet_distance, kid, precision_recall
from diffusionforge.eval.inception import InceptionFeatures
from diffusionforge.eval.memorization import memorization, save_worst_pairs

__all__ = [
    "ClassifierFeatures",
    "FeatureExtractor",
    "InceptionFeatures",
    "cached_classifier",
    "extract_features",
    "fid",
    "frechet_distance",
    "kid",
    "memorization",
    "precision_recall",
    "save_worst_pairs",
    "train_classifier",
]
