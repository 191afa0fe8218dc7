"""SET-ITOP on Fashion-MNIST at 98% sparsity with the core API only (MLP 784-1000-1000-10).

Reads the IDX files installed by Debian's ``dataset-fashion-mnist`` (or SPARSETIME_DATA).
"""
import gzip
import os
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sparsetime as st

PLACES = [os.environ.get("SPARSETIME_DATA", ""), "/usr/share/datasets/fashion-mnist"]


def load(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    for place in filter(None, PLACES):
        root = pathlib.Path(place)
        img, lab = root / f"{kind}-images-idx3-ubyte.gz", root / f"{kind}-labels-idx1-ubyte.gz"
        if img.exists() and lab.exists():
            x = np.frombuffer(gzip.open(img).read(), np.uint8, offset=16).reshape(-1, 784)
            y = np.frombuffer(gzip.open(lab).read(), np.uint8, offset=8)
            x = (torch.from_numpy(x.copy()).float() / 255 - 0.2860) / 0.3530
            return x, torch.from_numpy(y.copy()).long()
    sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or set SPARSETIME_DATA")


def main(epochs: int = 3, batch: int = 128) -> None:
    torch.manual_seed(0)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    model = nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * ((len(xtr) + batch - 1) // batch)
    sp = st.SET(model, opt, density=0.02, total_steps=steps, update_interval=200)
    g = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for idx in torch.randperm(len(xtr), generator=g).split(batch):
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sp.step()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f}  density {sp.density():.4f}  "
              f"Rs {sp.exploration_rate():.4f}  ({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
