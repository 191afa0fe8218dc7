"""Shared test settings: deterministic, few threads (CI machines have 2 cores)."""
import torch

torch.set_num_threads(2)
