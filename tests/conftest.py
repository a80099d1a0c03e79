"""Shared pytest set-up: one torch thread per xdist worker, so two workers do not oversubscribe 2 cores."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
