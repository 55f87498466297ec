"""The portrait scenario: composed identities (face + a voice + a generated profile).

Our data has no recordings of the people in the face databases, so every gallery
person is *composed*: the face is theirs (ORL / Yale), the voice is a real speaker
from our speech data (Speech Commands or FSDD) — a different real person — and the
text profile is generated from a few invented attributes. Say so wherever the
identities are shown.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mbm.data.readers import AUDIO_SUFFIXES

MODALITY_NAMES = {"image": "face", "audio": "voice", "text": "profile"}  # model modality -> scenario name
VOICE_ENROL_CLIPS = 3  # clips of the assigned speaker averaged into the voice prototype
COMPOSED_NOTE = ("identities are composed: face and voice come from different real people "
                 "(faces: ORL/Yale; voices: Speech Commands/FSDD speakers); profiles are generated")

HEIGHTS = ["tall", "short", "of medium height"]
LOOKS = ["wears glasses", "has a beard", "has short hair", "has long hair", "wears a hat", "has curly hair",
         "wears a scarf"]
PLACES = ["works in the lab", "works in the library", "works in the kitchen", "works at the front desk",
          "works in the workshop", "works in the garden", "works in the office", "works at the clinic"]
ACCENTS = ["speaks with a Scottish accent", "speaks with an Irish accent", "speaks with a Welsh accent",
           "speaks with a French accent", "speaks with a Spanish accent", "speaks with an Indian accent",
           "speaks with an American accent", "speaks with a German accent", "speaks with an Italian accent"]
HOBBIES = ["plays chess", "plays the guitar", "runs marathons", "loves cycling", "paints", "bakes bread",
           "plays football", "sings in a choir", "collects stamps", "climbs", "swims"]


# Readable names for the composed identities, in dataset order: ORL s1..s40, then Yale subject01..15.
# Names used for any gender: a face comes from one real person and the voice from another
# (s1, a man, has a man's voice), so a woman's name beside a man's face or voice misled.
READABLE_NAMES = (
    "Alex", "Blake", "Casey", "Drew", "Eden", "Finley", "Gray", "Harper", "Indigo", "Jordan", "Kai", "Logan",
    "Morgan", "Noor", "Oakley", "Parker", "Quinn", "Riley", "Sam", "Taylor", "Avery", "Bailey", "Cameron", "Dakota",
    "Emerson", "Hayden", "Jesse", "Kendall", "Lane", "Marley", "Peyton", "Reese", "Rowan", "Sage", "Skyler", "Tatum",
    "Robin", "Remy", "Sasha", "Ari", "Charlie", "Jules", "Kit", "Micah", "River", "Rory", "Shay", "Ellis", "Emery",
    "Hollis", "Jody", "Kerry", "Phoenix", "Reagan", "Sidney")
assert len(READABLE_NAMES) == len(set(READABLE_NAMES)) == 55


def readable_name(person: str) -> str:
    """A composed identity's dataset id as a name a person reads, with the id: ``"s1"`` -> ``"Alex (s1)"``.

    ORL ids ``s1``..``s40`` and Yale ids ``subject01``..``subject15`` get a fixed first name; any
    other name (an enrolled person's) is returned unchanged.
    """
    import re

    orl, yale = re.fullmatch(r"s([1-9]|[1-3][0-9]|40)", person), re.fullmatch(r"subject(0[1-9]|1[0-5])", person)
    if orl:
        return f"{READABLE_NAMES[int(orl.group(1)) - 1]} ({person})"
    if yale:
        return f"{READABLE_NAMES[40 + int(yale.group(1)) - 1]} ({person})"
    return person


def _rng(key: str) -> random.Random:
    return random.Random(int(hashlib.md5(key.encode()).hexdigest(), 16))


def make_profile(name: str) -> str:
    """A deterministic, invented profile for a gallery person ("tall, wears glasses, ...")."""
    r = _rng("profile:" + name)
    return ", ".join([r.choice(HEIGHTS), r.choice(LOOKS), r.choice(PLACES), r.choice(ACCENTS), r.choice(HOBBIES)])


def profile_hint(profile: str, key: str, parts: int = 2) -> str:
    """A shorter description a user might type: ``parts`` of the profile's phrases."""
    phrases = [p.strip() for p in profile.split(",") if p.strip()]
    r = _rng("hint:" + key)
    return ", ".join(r.sample(phrases, min(parts, len(phrases))))


@dataclass(frozen=True)
class VoiceClip:
    path: Path
    speaker: str  # "sc:<id>" (Speech Commands) or "fsdd:<name>"

    @property
    def key(self) -> str:
        """``<folder>/<file>``: Speech Commands file names repeat across word folders."""
        return f"{self.path.parent.name}/{self.path.name}"


def list_voice_clips(data_dir: str | Path) -> dict[str, list[VoiceClip]]:
    """speaker -> clips sorted by file name, from DIR/speech_commands/*/ and DIR/fsdd/recordings/."""
    data_dir = Path(data_dir)
    out: dict[str, list[VoiceClip]] = defaultdict(list)
    sc = data_dir / "speech_commands"
    if sc.is_dir():
        for word in sorted(p for p in sc.iterdir() if p.is_dir() and not p.name.startswith("_")):
            for path in sorted(word.iterdir()):
                if path.suffix.lower() in AUDIO_SUFFIXES and "_nohash_" in path.name:
                    out["sc:" + path.name.split("_")[0]].append(VoiceClip(path, "sc:" + path.name.split("_")[0]))
    fsdd = data_dir / "fsdd" / "recordings"
    if fsdd.is_dir():
        for path in sorted(fsdd.iterdir()):
            parts = path.stem.split("_")
            if path.suffix.lower() in AUDIO_SUFFIXES and len(parts) >= 3:
                out["fsdd:" + parts[1]].append(VoiceClip(path, "fsdd:" + parts[1]))
    return {k: sorted(v, key=lambda c: (c.path.parent.name, c.path.name)) for k, v in sorted(out.items())}


def enrol_and_query_clips(clips: list[VoiceClip], n_query: int = 4) -> tuple[list[VoiceClip], list[VoiceClip]]:
    """A speaker's clips -> (first clips for the voice prototype, a few others as queries).

    FSDD speakers have hundreds of takes: use a spread of them, not just the first digit.
    """
    ordered = sorted(clips, key=lambda c: hashlib.md5(c.key.encode()).hexdigest())
    return ordered[:VOICE_ENROL_CLIPS], ordered[VOICE_ENROL_CLIPS:VOICE_ENROL_CLIPS + n_query]


def assign_voices(people: list[str], speakers: dict[str, list[VoiceClip]], min_clips: int = 4) -> dict[str, str]:
    """person -> speaker, deterministic: speakers with enough clips, round robin over sorted people.

    With more people than usable speakers a voice is shared by several people (then the
    voice alone cannot tell them apart; the face still can).
    """
    usable = sorted((s for s, c in speakers.items() if len(c) >= min_clips), key=lambda s: (-len(speakers[s]), s))
    if not usable:
        return {}
    return {p: usable[i % len(usable)] for i, p in enumerate(sorted(people))}
