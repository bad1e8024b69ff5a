"""Choosing the torch device: `auto` picks CUDA when present, else CPU."""

from __future__ import annotations

import torch

from multisource.common.validation import InputError, check_choice

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """Map a user's device choice to a `torch.device`; `cuda` without a GPU is an InputError."""
    check_choice("device", device, DEVICE_CHOICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device must be auto or cpu on this machine: CUDA is not available")
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    """A human-readable device name for provenance records."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"
