"""Model zoo: CIFAR- and ImageNet-style ResNets, TAKD plain CNNs and MobileNetV2, user models, safe checkpoints.

One registry (:data:`MODELS`) filled by a decorator where each model is defined, one factory (:func:`create`) as the
only way in, as in timm::

    from edgekd.models import create
    model = create("resnet8", num_classes=10, in_channels=1)
    user = create("my_package.nets:build", num_classes=10)   # a user model, imported by path
    check_model(user, (3, 32, 32), 10, "my model")            # one batch: (N, 10) logits, or a UserError

A user model may return a tuple, a dict or an output object (Hugging Face style): edgekd takes a tensor, else
``.logits`` (attribute or dict key), else the first element (:mod:`edgekd.models.outputs`).

Every zoo model takes ``num_classes`` and ``in_channels``, is built from plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` /
activation modules (each activation module used once, so torch.fx and ONNX export see every layer), works on 8×8,
28×28 and 32×32 inputs, and lists in its registry entry the module paths of its stage outputs (``default_taps``)
for feature distillation. Models with a ``small_input`` switch get the layout that fits the data's image size
(:func:`layout_kwargs`); :func:`count_macs` gives the multiply-accumulates of a forward pass.
"""

from __future__ import annotations

from edgekd.models import mobilenetv2, plain, resnet, resnet_imagenet  # noqa: F401  (registration side effect)
from edgekd.models.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_weights,
    model_from_checkpoint,
    save_atomically,
    save_checkpoint,
)
from edgekd.models.complexity import count_macs
from edgekd.models.factory import (
    MODELS,
    SMALL_INPUT_BELOW,
    count_parameters,
    create,
    factory_of,
    layout_kwargs,
    model_info,
    model_size_bytes,
)
from edgekd.models.outputs import check_model, logits_of, return_logits

__all__ = [
    "FORMAT",
    "MODELS",
    "SMALL_INPUT_BELOW",
    "check_model",
    "count_macs",
    "count_parameters",
    "create",
    "factory_of",
    "layout_kwargs",
    "load_checkpoint",
    "load_weights",
    "logits_of",
    "model_from_checkpoint",
    "model_info",
    "model_size_bytes",
    "return_logits",
    "save_atomically",
    "save_checkpoint",
]
