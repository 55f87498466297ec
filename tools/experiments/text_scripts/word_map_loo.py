"""Could an unknown typed word be read as its nearest known word? (stop 37; measured, not built)

    PYTHONPATH=. python tools/experiments/text_scripts/word_map_loo.py

Each content word of the training phrasings (a word of one device's names or one command word's phrases)
is left out in turn and matched to its nearest other content word by MiniLM's cosine of the single words;
right when that word has the same meaning. Beside it, the share of stopwords and unrelated words
(``unrelated_words.json``, written first) whose nearest content word is nearer than each line. The held-out
phrasings of the evaluation are not used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mbm.scenarios.retrieval.encoders import text_vectors
from mbm.scenarios.voice_control.spec import (
    DEVICE_SYNONYMS,
    DEVICE_WORD_PHRASES,
    DIGITS,
    WORD_PHRASES,
    _split,
    training_vocabulary,
)


def meanings() -> dict[str, set[str]]:
    """Each word of the training phrasings -> the meanings (device or command word) it is part of."""
    out: dict[str, set[str]] = {}

    def add(phrase: str, meaning: str) -> None:
        for w in phrase.split():
            out.setdefault(w, set()).add(meaning)

    for d, (names, _) in DEVICE_SYNONYMS.items():
        for n in names:
            add(n, "device:" + d)
    for w, phrases in WORD_PHRASES.items():
        for p in _split(phrases, False):
            add(p, "word:" + w)
    for (_, w), phrases in DEVICE_WORD_PHRASES.items():
        for p in phrases:
            add(p, "word:" + w)
    for i, d in enumerate(DIGITS):
        add(d, "word:" + d)
        add(str(i), "word:" + d)
    return out


def main() -> None:
    cls = meanings()
    content = sorted(w for w in training_vocabulary() if len(cls.get(w, ())) == 1 and not w.isdigit())
    negatives = json.loads((Path(__file__).parent / "unrelated_words.json").read_text(encoding="utf-8"))
    v = text_vectors(content)
    s = v @ v.T
    np.fill_diagonal(s, -1)
    best, cos = s.argmax(1), s.max(1)
    right = np.array([cls[content[b]] == cls[content[i]] for i, b in enumerate(best)])
    stop = (text_vectors(negatives["stopwords"]) @ v.T).max(1)
    unrelated = (text_vectors(negatives["unrelated"]) @ v.T).max(1)
    print(f"{len(content)} content words")
    for line in (0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75):
        m = cos >= line
        print(f"line {line}: left-out words read {m.mean():.2f}, of them right {right[m].mean():.2f} | stopwords "
              f"read {(stop >= line).mean():.2f}, unrelated words read {(unrelated >= line).mean():.2f}")
    for i in np.argsort(-cos)[:30]:
        print(f"  {content[i]} -> {content[best[i]]} {cos[i]:.2f} {'right' if right[i] else 'wrong'}")


if __name__ == "__main__":
    main()
