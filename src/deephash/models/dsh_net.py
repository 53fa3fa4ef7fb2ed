"""The DSH paper's small network, from the authors' released Caffe definition."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WithinChannelLRN(nn.Module):
    """Caffe LRN with norm_region WITHIN_CHANNEL: x / (1 + α·mean_{k×k}(x²))^β.

    PyTorch's LocalResponseNorm normalises *across* channels, which is not what DSH used.
    """

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75):
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
        return x / (1.0 + self.alpha * sq).pow(self.beta)


class DSHBackbone(nn.Module):
    """conv32 5×5 → maxpool 3/2 → ReLU → LRN; conv32 → avgpool 3/2 → ReLU → LRN;
    conv64 → ReLU → avgpool 3/2; fc500 → ReLU. Pools round up as Caffe does (32→16→8→4)."""

    def __init__(self, image_size: tuple[int, int] = (32, 32), batch_norm: bool = False, width: int = 1):
        super().__init__()
        c1, c2, c3 = 32 * width, 32 * width, 64 * width
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: WithinChannelLRN())
        self.conv = nn.Sequential(
            nn.Conv2d(3, c1, 5, padding=2),
            nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(inplace=True), norm(c1),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.AvgPool2d(3, 2, ceil_mode=True), nn.ReLU(inplace=True), norm(c2),
            nn.Conv2d(c2, c3, 5, padding=2), nn.ReLU(inplace=True),
            nn.AvgPool2d(3, 2, ceil_mode=True),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 3, *image_size)).numel()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, 500), nn.ReLU(inplace=True))
        self.out_features = 500
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))
