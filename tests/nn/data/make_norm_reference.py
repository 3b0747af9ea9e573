#!/usr/bin/python3
"""Developer script: reference values for tests/nn/norm_test.cpp from PyTorch 1.13.

Run `/usr/bin/python3 tests/nn/data/make_norm_reference.py` and paste the printed numbers into the test.
"""
import torch
import torch.nn as nn


def show(name, t):
    vals = ", ".join(repr(float(v)) for v in t.detach().reshape(-1).double())
    print(f"  // {name}: shape {list(t.shape)}\n  {{{vals}}}")


# BatchNorm1d(3) on [4, 3], one training step then eval.
x = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, 1.5], [-1.0, 4.0, 2.5], [2.0, 1.0, -0.5]], dtype=torch.float64)
bn = nn.BatchNorm1d(3).double()
with torch.no_grad():
    bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    bn.bias.copy_(torch.tensor([0.0, -1.0, 0.25], dtype=torch.float64))
show("bn1d train out", bn(x))
show("bn1d running_mean", bn.running_mean)
show("bn1d running_var", bn.running_var)
print("  // num_batches_tracked", int(bn.num_batches_tracked))
bn.eval()
show("bn1d eval out", bn(x))

# BatchNorm2d(2) on [2, 2, 2, 2] (default affine), two training steps.
x2 = torch.arange(16, dtype=torch.float64).reshape(2, 2, 2, 2) * 0.5 - 3.0
x2[1, 0, 1, 1] = 7.0
bn2 = nn.BatchNorm2d(2).double()
show("bn2d train out", bn2(x2))
bn2(x2 * 2.0)
show("bn2d running_mean after 2 steps", bn2.running_mean)
show("bn2d running_var after 2 steps", bn2.running_var)

# BatchNorm1d on [N, C, L] with momentum None (cumulative average) after two steps.
x3 = torch.tensor([[[1.0, 2.0], [0.0, -1.0]], [[3.0, -2.0], [0.5, 0.5]]], dtype=torch.float64)
bn3 = nn.BatchNorm1d(2, momentum=None).double()
bn3(x3)
bn3(x3 + 1.0)
show("bn1d [2,2,2] momentum=None running_mean", bn3.running_mean)
show("bn1d [2,2,2] momentum=None running_var", bn3.running_var)

# LayerNorm([4]) with affine parameters on [2, 3, 4].
xl = torch.tensor([[[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 3.0], [-2.0, 0.5, 0.25, 4.0]],
                   [[0.0, 0.0, 1.0, -1.0], [3.5, -0.5, 2.0, 1.0], [0.1, 0.2, 0.3, 0.4]]], dtype=torch.float64)
ln = nn.LayerNorm([4]).double()
with torch.no_grad():
    ln.weight.copy_(torch.tensor([1.0, 0.5, -1.0, 2.0], dtype=torch.float64))
    ln.bias.copy_(torch.tensor([0.0, 0.1, 0.2, -0.3], dtype=torch.float64))
show("layer_norm [4] out", ln(xl))
ln2 = nn.LayerNorm([3, 4], eps=1e-3, elementwise_affine=False).double()
show("layer_norm [3, 4] eps=1e-3 no affine out", ln2(xl))
