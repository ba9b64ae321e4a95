"""The MLPerf Tiny ResNet8 (16/32/64 filters) as a PyTorch module, NCHW, raw pixels 0..255 in."""

import torch
from torch import nn

INPUT_SIZE = 32
WIDTHS = (16, 32, 64)
NUM_CLASSES = 10


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF 'same': the odd pixel goes after, so stride 2 on an even
    input pads 0 before and 1 after, which a symmetric PyTorch ``padding`` cannot express."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_conv(cin: int, cout: int, kernel: int, stride: int, size: int) -> nn.Sequential:
    """(pad, conv) with TF 'same' padding: symmetric padding stays in the conv, an asymmetric one
    becomes an explicit ZeroPad2d (an Identity stands in its place otherwise)."""
    before, after = tf_same_padding(size, kernel, stride)
    if before == after:
        return nn.Sequential(nn.Identity(), nn.Conv2d(cin, cout, kernel, stride, padding=before))
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)), nn.Conv2d(cin, cout, kernel, stride))


class Add(nn.Module):
    """Residual add as a module, so hooks and eager-mode quantization can find it."""

    def __init__(self):
        super().__init__()
        self.op = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.op.add(a, b)


class Stage(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, size: int, eps: float):
        super().__init__()
        self.conv1 = same_conv(cin, cout, 3, stride, size)
        self.bn1 = nn.BatchNorm2d(cout, eps=eps)
        self.relu1 = nn.ReLU()
        self.conv2 = same_conv(cout, cout, 3, 1, -(-size // stride))
        self.bn2 = nn.BatchNorm2d(cout, eps=eps)
        self.shortcut = same_conv(cin, cout, 1, stride, size) if stride != 1 or cin != cout else nn.Identity()
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(self.add(self.shortcut(x), y))


class ResNet8(nn.Module):
    def __init__(self, eps: float = 1e-3):
        super().__init__()
        w1, w2, w3 = WIDTHS
        self.conv = same_conv(3, w1, 3, 1, INPUT_SIZE)
        self.bn = nn.BatchNorm2d(w1, eps=eps)
        self.relu = nn.ReLU()
        self.stage1 = Stage(w1, w1, 1, INPUT_SIZE, eps)
        self.stage2 = Stage(w1, w2, 2, INPUT_SIZE, eps)
        self.stage3 = Stage(w2, w3, 2, INPUT_SIZE // 2, eps)
        self.pool = nn.AvgPool2d(INPUT_SIZE // 4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(w3, NUM_CLASSES)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.softmax(self.fc(self.flatten(self.pool(x))))
