"""Voice-control model forward p50 (batch 1, one thread) with the same typed text every call and with a new one.

    OMP_NUM_THREADS=1 PYTHONPATH=. python tools/experiments/text_scripts/forward_with_new_text.py CHECKPOINT ...

``tools.bench`` times the forward with one text again and again; a text encoder that keeps its last text's
vectors (MiniLM's, at 1b2cd75) then runs once, before the timing. A visitor types a new text, so this also
times calls whose text changes each time. Give several checkpoints, some twice: the machine is noisy,
compare the ratios within one run. A MiniLM checkpoint needs the code of commit 1b2cd75.
"""

import statistics
import sys
import time

import torch

from mbm.paths import VOICE_CONTROL_ASSETS as ASSETS
from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

TEXTS = ("turn it up", "turn the lamp up", "make it brighter", "volume up please", "switch it on now", "go up")
CALLS, WARM_UP = 65, 5


def forward_p50(predictor: VoiceControlPredictor, new_text: bool) -> float:
    """Median ms of the model's forward on up.wav + lamp.jpg + a text (the photo nudged every other call)."""
    times = []
    for i in range(CALLS):
        text = TEXTS[i % len(TEXTS)] if new_text else TEXTS[0]
        inputs = predictor.batch(predictor.prepare(audio=str(ASSETS / "up.wav"), image=str(ASSETS / "lamp.jpg"),
                                                   text=text))
        inputs["image"] = inputs["image"] + (i % 2) * 1e-3  # the image encoder reuses a pass on equal pixels
        start = time.perf_counter()
        with torch.inference_mode():
            predictor.model(inputs)
        if i >= WARM_UP:
            times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


torch.set_num_threads(1)
for path in sys.argv[1:]:
    predictor = VoiceControlPredictor.from_checkpoint(path)
    print(f"{path}: same text {forward_p50(predictor, False)} ms, new text each call {forward_p50(predictor, True)} ms",
          flush=True)
