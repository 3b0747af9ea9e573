#!/usr/bin/python3
"""Developer script: reference values for tests/nn/loss_test.cpp from PyTorch 1.13.

Run `/usr/bin/python3 tests/nn/data/make_loss_reference.py` and paste the printed numbers into the test.
The inputs are written out literally here and in the test, so no random state has to match.
"""
import torch
import torch.nn.functional as F

torch.set_printoptions(precision=10)


def show(name, t):
    vals = ", ".join(repr(float(v)) for v in t.detach().reshape(-1).double())
    print(f"  // {name}: shape {list(t.shape)}\n  {{{vals}}}")


logits = torch.tensor([[0.5, -1.25, 2.0, 0.0, 0.75],
                       [1.5, 0.25, -0.5, -2.0, 1.0],
                       [-0.75, 0.5, 0.25, 1.75, -1.0],
                       [2.5, -0.25, 0.0, 0.5, -1.5]], dtype=torch.float64, requires_grad=True)
target = torch.tensor([2, 0, -100, 1])

for red in ["mean", "sum", "none"]:
    for ls in [0.0, 0.1]:
        logits.grad = None
        out = F.cross_entropy(logits, target, reduction=red, ignore_index=-100, label_smoothing=ls)
        show(f"cross_entropy reduction={red} label_smoothing={ls}", out)
        (out * torch.arange(1, out.numel() + 1, dtype=torch.float64).reshape(out.shape)).sum().backward()
        show(f"  grad (of sum(out * [1, 2, ...]))", logits.grad)

# [N, C, d] input: N=2, C=3, d=2; one ignored position.
x3 = torch.tensor([[[0.1, -0.4], [1.2, 0.3], [-0.7, 0.9]],
                   [[0.6, 0.0], [-1.1, 0.8], [0.25, -0.35]]], dtype=torch.float64)
t3 = torch.tensor([[2, 0], [1, -100]])
show("cross_entropy [2,3,2] mean ls=0.1", F.cross_entropy(x3, t3, label_smoothing=0.1))
show("cross_entropy [2,3,2] none", F.cross_entropy(x3, t3, reduction="none"))

# nll_loss on log-probabilities.
lp = F.log_softmax(logits.detach(), dim=1)
show("log_softmax(logits)", lp)
show("nll_loss mean", F.nll_loss(lp, target))
show("nll_loss sum", F.nll_loss(lp, target, reduction="sum"))
show("nll_loss none", F.nll_loss(lp, target, reduction="none"))
show("nll_loss mean ignore_index=0", F.nll_loss(lp, torch.tensor([2, 0, 3, 1]), ignore_index=0))

# mse_loss.
a = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.25]], dtype=torch.float64)
b = torch.tensor([[1.0, -0.5, 1.0], [0.0, 0.5, 0.25]], dtype=torch.float64)
show("mse_loss mean", F.mse_loss(a, b))
show("mse_loss sum", F.mse_loss(a, b, reduction="sum"))
show("mse_loss none", F.mse_loss(a, b, reduction="none"))
