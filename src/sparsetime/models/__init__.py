"""Model zoo for sparse training: ``build_model(name, input_shape, num_classes, **options)``.

Importing this package registers every model; ``available_models()`` lists them.
"""
from __future__ import annotations

from . import lenet5, mlp, resnet, vgg, wide_resnet  # noqa: F401  (registration side effect)
from .registry import available_models, build_model, model_options, register_model

__all__ = ["available_models", "build_model", "model_options", "register_model"]
