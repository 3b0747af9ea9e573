# Reference values for tests/nn/conv_test.cpp and tests/nn/pool_test.cpp, from PyTorch 1.13 (float64).
# Run: /usr/bin/python3 tests/nn/data/conv_pool_reference.py  (prints the numbers pasted into the tests)
# Inputs are the deterministic pattern the tests build: value i (row-major) = scale * sin(0.7 * i + offset).
import math

import torch
import torch.nn.functional as F


def pattern(shape, scale=1.0, offset=0.0):
    n = math.prod(shape)
    return torch.tensor([scale * math.sin(0.7 * i + offset) for i in range(n)], dtype=torch.float64).view(shape)


def show(name, t):
    vals = ", ".join(repr(round(v, 12)) for v in t.flatten().tolist())
    print(f"// {name}: shape {list(t.shape)}\n{{{vals}}}")


# conv2d with padding and stride, with bias
x = pattern([1, 2, 5, 5])
w = pattern([3, 2, 3, 3], 0.5, 1.0)
b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
show("conv stride 2 padding 1 bias", F.conv2d(x, w, b, stride=2, padding=1))
# dilation, no bias, asymmetric stride/padding
x = pattern([1, 1, 6, 7])
w = pattern([2, 1, 3, 3], 1.0, 0.5)
show("conv dilation 2 stride (1,2) padding (2,1)", F.conv2d(x, w, None, stride=(1, 2), padding=(2, 1), dilation=2))
# groups
x = pattern([2, 4, 4, 4])
w = pattern([4, 2, 2, 2], 1.0, 2.0)
b = torch.tensor([0.5, 0.25, -0.5, 1.0], dtype=torch.float64)
show("conv groups 2", F.conv2d(x, w, b, groups=2))
# rectangular kernel, stride 3, unbatched
x = pattern([3, 7, 8])
w = pattern([2, 3, 2, 3], 0.3, 0.2)
show("conv unbatched kernel (2,3) stride 3", F.conv2d(x, w, None, stride=3))

# max_pool2d: padding counts as -inf (all-negative input), with indices
x = -(torch.arange(16, dtype=torch.float64) + 1).view(1, 1, 4, 4)
v, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
show("max_pool2d negative k3 s2 p1 values", v)
show("max_pool2d negative k3 s2 p1 indices", i)
x = pattern([1, 2, 5, 5])
v, i = F.max_pool2d(x, 2, 2, 0, ceil_mode=True, return_indices=True)
show("max_pool2d k2 s2 ceil values", v)
show("max_pool2d k2 s2 ceil indices", i)
v, i = F.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1), return_indices=True)
show("max_pool2d k(2,3) s(1,2) p1 d(2,1) values", v)
show("max_pool2d k(2,3) s(1,2) p1 d(2,1) indices", i)

# avg_pool2d
x = pattern([1, 1, 5, 5])
show("avg_pool2d k3 s2 p1 include_pad", F.avg_pool2d(x, 3, 2, 1))
show("avg_pool2d k3 s2 p1 exclude_pad", F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
show("avg_pool2d k2 s2 ceil include_pad", F.avg_pool2d(x, 2, 2, 0, ceil_mode=True))
show("avg_pool2d k3 s2 p1 ceil include_pad", F.avg_pool2d(pattern([1, 1, 6, 6]), 3, 2, 1, ceil_mode=True))
show("avg_pool2d k2 divisor_override 3", F.avg_pool2d(x, 2, divisor_override=3))

# adaptive_avg_pool2d with uneven splits
show("adaptive 7x7 -> 3", F.adaptive_avg_pool2d(pattern([1, 1, 7, 7]), 3))
show("adaptive 7x5 -> (3, 2)", F.adaptive_avg_pool2d(pattern([1, 2, 7, 5]), (3, 2)))
show("adaptive 2x3 -> (4, 5) (upsampling)", F.adaptive_avg_pool2d(pattern([1, 1, 2, 3]), (4, 5)))
