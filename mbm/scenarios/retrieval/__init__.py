"""Retrieval: search a collection by any mix of a spoken clip, a photo and typed text.

``encoders`` (frozen: EfficientNet-Lite0, MiniLM, Resemblyzer, dlib), ``speech`` (PocketSphinx, no torch),
``model`` (the trained projection heads and the scoring), ``train`` (InfoNCE alignment), ``evaluate`` (the metrics).
The index format and its CLI are ``mbm.scenarios.retrieval.index``; the tab is ``mbm.ui.retrieval``.
"""
