"""Voice control: a spoken command + a photo of the device + typed text -> the device action.

One module per part: ``spec`` (devices, words, the action table, typed commands), ``data`` (training
batches), ``predictor``, ``train`` (with ``recipe.json``, the shipped recipe), ``evaluate``,
``removal_loss`` and ``faithfulness`` (weights that follow measured effects), ``robustness`` (live
corruptions). The demo examples are chosen by ``python -m tools.make_voice_control_assets``.
"""
