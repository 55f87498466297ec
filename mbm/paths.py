"""Where the repository keeps things: defined once, imported everywhere else.

Every path is absolute (from this file's location), so commands work from any directory.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root
CHECKPOINTS = ROOT / "checkpoints"  # shipped trained weights (committed, small)
ASSETS = ROOT / "assets"  # demo examples, credits, shipped evaluation results
VOICE_CONTROL_ASSETS = ASSETS / "voice_control"
PORTRAIT_ASSETS = ASSETS / "portrait"
VOICE_CONTROL_CHECKPOINT = CHECKPOINTS / "voice_control.pt"
PORTRAIT_CHECKPOINT = CHECKPOINTS / "portrait.pt"
RETRIEVAL_CHECKPOINT = CHECKPOINTS / "retrieval.pt"  # the heads of the shared search space
RETRIEVAL_ASSETS = ASSETS / "retrieval"  # the demo collection and its prebuilt index
RETRIEVAL_DEMO_INDEX = RETRIEVAL_ASSETS / "demo_index.npz"
PORTRAIT_SHIPPED_GALLERY = CHECKPOINTS / "portrait_gallery.json"
VOICE_CONTROL_EXAMPLES = VOICE_CONTROL_ASSETS / "examples.json"
PORTRAIT_EXAMPLES = PORTRAIT_ASSETS / "examples.json"
EVAL_RESULTS = VOICE_CONTROL_ASSETS / "eval_results.json"  # written by `mbm.evaluate --results`
CACHE = ROOT / "cache"  # derived files (synthetic speech, cached features); gitignored
