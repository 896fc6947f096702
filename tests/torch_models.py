"""Small classifiers this project has never seen, built and trained with torch in the tests.

``python tests/torch_models.py OUT_DIR`` writes the same models for use outside the tests.

Each is trained for a few seconds on the real train split (fixed seed, one thread) and exported to
ONNX with input/output names unlike mnist-12's (``pixels`` -> ``class_scores``) and a dynamic batch
dimension: a model at chance accuracy would test nothing, and a model shaped like mnist-12 would
hide what only mnist-12 satisfies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from tuning.config.enums import Split
from tuning.config.schema import DatasetSection
from tuning.data.datasets import load_pixels

INPUT_NAME = "pixels"
OUTPUT_NAME = "class_scores"
TRAIN_IMAGES = 12000  # a few seconds of training on one core; enough to be far above chance


class LeNet(nn.Module):
    """Two convolutions, two fully connected layers (two Gemm nodes once exported)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def mlp() -> nn.Module:
    """One hidden layer, no convolution."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 10))


class BatchNormCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU blocks; the BatchNorms are folded into the convolutions before export."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.head(x.flatten(1))

    def folded(self) -> nn.Module:
        """The same function with each BatchNorm folded into the convolution before it (eval mode)."""
        self.eval()
        fold = torch.nn.utils.fusion.fuse_conv_bn_eval
        self.conv1, self.bn1 = fold(self.conv1, self.bn1), nn.Identity()
        self.conv2, self.bn2 = fold(self.conv2, self.bn2), nn.Identity()
        return self


class ResidualCNN(nn.Module):
    """``convolutions`` 3x3 convolutions of ``width`` then 2 x ``width`` channels in residual pairs (an Add each),
    then two Linear layers: 5 convolutions make 7 compute nodes, 20 make 22."""

    def __init__(self, convolutions: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        middle = convolutions - 2
        self.before = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(middle // 2))
        self.after = nn.ModuleList(nn.Conv2d(2 * width, 2 * width, 3, padding=1) for _ in range(middle - middle // 2))
        self.fc1 = nn.Linear(2 * width * 7 * 7, 32)
        self.fc2 = nn.Linear(32, 10)

    @staticmethod
    def _residual(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for first in range(0, len(convs), 2):
            pair = convs[first : first + 2]
            y = x
            for conv in pair:
                y = torch.relu(conv(y))
            x = x + y  # the residual Add
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._residual(self.before, torch.relu(self.stem(x)))
        x = self._residual(self.after, torch.relu(self.down(x)))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "lenet": LeNet,
    "mlp": mlp,
    "bn-cnn": BatchNormCNN,
    "res-cnn": ResidualCNN,
    "res-cnn-20": lambda: ResidualCNN(20),
    "res-cnn-wide": lambda: ResidualCNN(5, 32),  # 32-64 channels, as a user's small CNN (for measurements)
}


def train_and_export(architecture: str, dataset: DatasetSection, path: Path, epochs: int = 1) -> Path:
    """Train ``architecture`` on the first TRAIN_IMAGES of ``dataset``'s train split for ``epochs`` epochs
    at batch 64 (unit pixels, mean 0, std 1), then export it to ``path``."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = ARCHITECTURES[architecture]()
        pixels, labels = load_pixels(dataset, Split.TRAIN)
        images = torch.from_numpy(pixels[:TRAIN_IMAGES].astype(np.float32) / 255.0).unsqueeze(1)
        targets = torch.from_numpy(labels[:TRAIN_IMAGES])
        optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(targets))
            for start in range(0, len(order), 64):
                batch = order[start : start + 64]
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(images[batch]), targets[batch]).backward()
                optimiser.step()
        model = model.folded() if isinstance(model, BatchNormCNN) else model
        model.eval()
        export(model, path)
    finally:
        torch.set_num_threads(threads)
    return path


def export(model: nn.Module, path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=13,
        dynamo=False,  # the TorchScript exporter needs no onnxscript
    )
    onnx.checker.check_model(onnx.load(str(path)))


def main(argv: list[str]) -> None:
    """``python tests/torch_models.py OUT_DIR``: the test classifiers, trained as the tests train them, written
    to OUT_DIR/<architecture>.onnx (the BatchNorm CNN on FashionMNIST, the others on MNIST)."""
    if len(argv) != 1:
        sys.exit("usage: python tests/torch_models.py OUT_DIR")
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    datasets = {
        "MNIST": DatasetSection(name="MNIST", root=root / "data"),
        "FashionMNIST": DatasetSection(name="FashionMNIST", root=Path("/usr/share/datasets/fashion-mnist")),
    }
    for architecture, dataset in (("lenet", "MNIST"), ("mlp", "MNIST"), ("bn-cnn", "FashionMNIST"),
                                  ("res-cnn", "MNIST"), ("res-cnn-20", "MNIST"), ("res-cnn-wide", "MNIST")):  # fmt: skip
        print(train_and_export(architecture, datasets[dataset], out / f"{architecture}.onnx"))


if __name__ == "__main__":
    main(sys.argv[1:])
