"""Scoring a model's predictions against the labels and the float model's: the report's accuracy figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tuning.config.enums import PixelScale


@dataclass(frozen=True)
class Accuracy:
    """Top-1 results of one model at one pixel scale; rows of ``confusion`` are true labels."""

    pixel_scale: PixelScale
    confusion: np.ndarray
    agreement_with_float: float
    flips: int
    flips_to_correct: int  # float wrong, this model right
    flips_to_wrong: int  # float right, this model wrong

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1_accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.images)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1_accuracy

    @property
    def per_class_accuracy(self) -> list[float | None]:
        """Recall of each class; None for a class with no images in the split."""
        totals = self.confusion.sum(axis=1)
        return [float(self.confusion[k, k] / totals[k]) if totals[k] else None for k in range(len(totals))]

    def to_json(self) -> dict[str, Any]:
        return {
            "pixel_scale": self.pixel_scale.value,
            "top1_accuracy": self.top1_accuracy,
            "top1_error": self.top1_error,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion_matrix": self.confusion.tolist(),
            "agreement_with_float": self.agreement_with_float,
            "flips": self.flips,
            "flips_to_correct": self.flips_to_correct,
            "flips_to_wrong": self.flips_to_wrong,
            "images": self.images,
        }


def score(
    predictions: np.ndarray,
    labels: np.ndarray,
    float_predictions: np.ndarray,
    num_classes: int,
    pixel_scale: PixelScale,
) -> Accuracy:
    """Confusion matrix and agreement of one model's predictions; ``float_predictions`` at the same scale."""
    confusion = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    same = predictions == float_predictions
    float_right = float_predictions == labels
    return Accuracy(
        pixel_scale=pixel_scale,
        confusion=confusion.reshape(num_classes, num_classes).astype(np.int64),
        agreement_with_float=float(np.mean(same)),
        flips=int(np.sum(~same)),
        flips_to_correct=int(np.sum(~same & ~float_right & (predictions == labels))),
        flips_to_wrong=int(np.sum(~same & float_right)),
    )


@dataclass(frozen=True)
class Flip:
    """One evaluation image the int8 model classifies differently from the float model."""

    index: int  # position in the evaluation split, file order
    label: int
    float_prediction: int
    int8_prediction: int

    @property
    def kind(self) -> str:
        """``to_wrong`` (what quantization cost), ``to_correct`` or ``both_wrong``."""
        if self.float_prediction == self.label:
            return "to_wrong"
        return "to_correct" if self.int8_prediction == self.label else "both_wrong"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "float_prediction": self.float_prediction,
            "int8_prediction": self.int8_prediction,
        }


_FLIP_ORDER = {"to_wrong": 0, "to_correct": 1, "both_wrong": 2}


def find_flips(int8_predictions: np.ndarray, float_predictions: np.ndarray, labels: np.ndarray) -> list[Flip]:
    """Every image whose int8 prediction differs from the float one: those int8 gets wrong first."""
    flips = [
        Flip(int(index), int(labels[index]), int(float_predictions[index]), int(int8_predictions[index]))
        for index in np.flatnonzero(int8_predictions != float_predictions)
    ]
    return sorted(flips, key=lambda flip: (_FLIP_ORDER[flip.kind], flip.index))
