"""Which ImageNet classes mean which voice-control device: the zero-shot prior of the device head.

The mapping was measured on photos of other sources (48 of 51 right with it
alone). ``zero_shot`` sums a device's classes' probabilities; what is left (1 - the sum over all
devices) is the ImageNet mass on anything else, the first hint that a photo shows no device.
"""

from __future__ import annotations

import torch

from mbm.data.labels import DEVICES

IMAGENET_CLASSES: dict[str, tuple[int, ...]] = {
    "blinds": (905, 904, 794, 854),  # window shade, window screen, shower curtain, theater curtain
    "door": (799,),  # sliding door
    "fan": (545,),  # electric fan
    "heater": (811,),  # space heater
    "lamp": (846, 619),  # table lamp, lampshade
    "music_player": (485, 482, 754, 632, 605, 848),  # CD player, cassette player, radio, loudspeaker, iPod, tape player
    "tv": (851, 664, 782),  # television, monitor, screen
}
assert tuple(IMAGENET_CLASSES) == DEVICES


def mapping_matrix(n_classes: int = 1000) -> torch.Tensor:
    """(1000, n_devices) 0/1: ImageNet class -> device."""
    m = torch.zeros(n_classes, len(DEVICES))
    for d, device in enumerate(DEVICES):
        m[list(IMAGENET_CLASSES[device]), d] = 1.0
    return m


def zero_shot(imagenet_logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """ImageNet logits (..., 1000 along ``dim``, ...) -> device probabilities (..., n_devices, ...).

    Not normalised over the devices: each row sums to the ImageNet mass on device classes (<= 1).
    """
    p = imagenet_logits.softmax(dim).movedim(dim, -1)
    return (p @ mapping_matrix().to(p)).movedim(-1, dim)
