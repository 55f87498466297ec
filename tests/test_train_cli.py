"""The training command refuses out-of-range or meaningless options with a one-line usage error, before any work."""

from __future__ import annotations

import pytest

from mbm.train import main


@pytest.mark.parametrize("flags, message", [
    (["--real-share", "1.5"], "--real-share is a share: expected 0..1"),
    (["--real-share", "-0.1"], "--real-share is a share: expected 0..1"),
    (["--noise-modality", "1.2"], "--noise-modality is a share: expected 0..1"),
    (["--muffle", "1.5"], "--muffle is a share: expected 0..1"),
    (["--heavy-dropout-share", "2"], "--heavy-dropout-share is a share: expected 0..1"),
    (["--rank-weight", "-1"], "--rank-weight must be >= 0"),
    (["--rank-margin", "-0.2"], "--rank-margin must be >= 0"),
    (["--effect-weight", "-1"], "--effect-weight must be >= 0"),
    (["--noised-weight", "-1"], "--noised-weight must be >= 0"),
    (["--effect-temperature", "0"], "--effect-temperature must be > 0"),
    (["--mel-warp", "1"], "--mel-warp is a relative stretch"),
    (["--mel-warp", "abc"], "invalid float value"),
    # gate options only evidence pooling uses
    (["--gate-evidence-only"], "needs evidence pooling (--pooling evidence)"),
    (["--pooling", "joint", "--gate-evidence-only"], "needs evidence pooling"),
    (["--evidence-reattend"], "re-running the attention for the evidence needs evidence pooling"),
    (["--pooling", "nonsense"], "invalid choice"),
    (["--precision", "fp16"], "invalid choice"),
    (["--tts-seed", "abc"], "invalid int value"),
    (["--reattend-after-training"], "--reattend-after-training needs --pooling evidence"),
    (["--evidence-gain-after-training", "2"], "an evidence gain needs evidence pooling"),
    (["--pooling", "evidence", "--evidence-gain-after-training", "-1"], "the evidence gain must be >= 0"),
    (["--pooling", "evidence", "--evidence-reattend", "--reattend-after-training"],
     "--reattend-after-training needs --pooling evidence without --evidence-reattend"),
])
def test_bad_training_options_are_usage_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", "voice_control", "--data", str(tmp_path), *flags])
    assert exit_info.value.code == 2  # argparse's usage error, not a traceback
    assert message in capsys.readouterr().err
