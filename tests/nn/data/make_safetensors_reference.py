# Writes the reference .safetensors files that tests/nn/safetensors_format_test.cpp loads and compares.
#
# Run with a Python that has torch and the `safetensors` package (written with torch 1.13 and
# safetensors 0.8.0):  python3 tests/nn/data/make_safetensors_reference.py
# The files are committed, so the C++ tests need neither Python nor torch. The values below are
# repeated in the C++ test; change both together.
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def reference_tensors():
    # One tensor per dtype ember reads, plus a 0-d and an empty tensor. Values are exact in every
    # dtype (small integers, halves and quarters) so the C++ side can compare bit patterns.
    return {
        "weight": torch.tensor([[1.0, -2.0, 3.5], [0.25, 0.0, -0.5]], dtype=torch.float32),
        "bias": torch.tensor([1.5, -2.25], dtype=torch.float64),
        "steps": torch.tensor([1, -2, 1 << 40], dtype=torch.int64),
        "counts": torch.tensor([[7, -8], [9, 2147483647]], dtype=torch.int32),
        "half": torch.tensor([1.0, -0.5, 65504.0], dtype=torch.float16),
        "brain": torch.tensor([1.0, -3.0], dtype=torch.bfloat16),
        "bytes": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(42.0, dtype=torch.float32),
        "empty": torch.zeros(0, dtype=torch.float32),
    }


def main():
    # The file the C++ reader must load, and that the C++ writer must reproduce byte for byte.
    save_file(reference_tensors(), os.path.join(HERE, "reference_torch.safetensors"),
              metadata={"format": "pt"})

    # Names that need JSON escaping or are not ASCII, the empty name, and a metadata entry that needs
    # escaping. One metadata key only: the library keeps metadata in a Rust HashMap, so the order of
    # several keys in its header is not reproducible.
    odd = {
        "layer.0/weight": torch.tensor([1.0, 2.0], dtype=torch.float32),
        'quote"back\\slash': torch.tensor([3], dtype=torch.int64),
        "tab\tnew\nline\x01\x7f": torch.tensor([4], dtype=torch.uint8),
        "na\u00efve \u03b1\u03b2": torch.tensor([5.0], dtype=torch.float16),
        "": torch.tensor([6], dtype=torch.int32),
    }
    save_file(odd, os.path.join(HERE, "reference_names.safetensors"),
              metadata={"b key": "x\"y\u00e9\n"})


if __name__ == "__main__":
    main()
