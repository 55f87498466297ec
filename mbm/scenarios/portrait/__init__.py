"""Portrait recognition: face + voice + text profile -> who it is among the enrolled people, or unknown.

One module per part: ``spec`` (composed identities, profiles, voices), ``faces`` (the face data),
``features`` (pretrained face and speaker embeddings, hashed profiles), ``model`` (the shared fusion
over them), ``gallery`` and ``engine`` (enrolled people and scoring), ``predictor``, ``train``,
``evaluate``, ``faithfulness``.
"""
