"""The hostile load test's clients (``tools.loadtest_hostile``): normal requests mixed with attacks, every answer
recorded by kind and outcome (accepted, an error with its message, refused, a transport failure), with the
tracebacks and empty messages that must never reach a client; and the attack files they upload."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from mbm.paths import RETRIEVAL_ASSETS
from tools.bench import ASSETS, PORTRAIT_ASSETS
from tools.loadtest_tools import normal_request, raw_call

FLOOD_BURST = 6  # enrolments per enrol-flood turn (a client gets ~2-3 turns a minute; the cap is 10 a session)
ATTACKS = ["bomb_png", "hls_playlist", "big_data_url", "wrong_types", "enrol_flood", "bomb16_png",
           "remove_without_token", "concat_list", "no_arguments", "small_data_url", "big24mp_png",
           "reset_without_token", "owner_enrol", "collection_index_bomb", "collection_junk", "collection_notes"]


def write_zeros_npy(z, name: str, rows: int, cols: int) -> None:
    """A member ``name``.npy of the open zip ``z`` declaring rows x cols float32 zeros, streamed a MB at a time
    (deflated about 1000:1: 1 MB per GiB)."""
    from numpy.lib import format as npy

    with z.open(f"{name}.npy", "w", force_zip64=True) as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)})
        left, chunk = rows * cols * 4, b"\0" * (1 << 20)
        while left > 0:
            f.write(chunk[:left])
            left -= len(chunk)


def index_bomb(path: Path, rows: int = 1_398_101, cols: int = 192) -> Path:
    """A retrieval index whose vectors.npy declares rows x cols float32 zeros: 1 GiB deflated to ~1 MB."""
    import io
    import zipfile

    def member(arr) -> bytes:
        b = io.BytesIO()
        np.save(b, arr)
        return b.getvalue()

    manifest = json.dumps({"format": "mbm-retrieval-index-1", "root": str(path.parent), "root_relative": None,
                           "checkpoint": "", "items": [{"path": "a.jpg"}], "skipped": []})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        write_zeros_npy(z, "vectors", rows, cols)
        for k, width in (("photo_sem", 128), ("app", 64), ("extra_sem", 128)):
            z.writestr(f"{k}.npy", member(np.zeros((1, width), np.float32)))
        z.writestr("extra_mask.npy", member(np.zeros(1, bool)))
        z.writestr("manifest.npy", member(np.frombuffer(manifest.encode(), np.uint8)))
    return path


def collection_files(folder: Path) -> dict[str, list[Path]]:
    """Own-collection attacks: the same files every time (Gradio keeps one copy per content)."""
    import soundfile as sf

    photos = sorted((ASSETS.parent / "retrieval" / "collection").glob("*.jpg"))[:6]
    junk = []
    for j in range(3):
        junk.append(folder / f"junk{j}.bin")
        junk[-1].write_bytes(np.random.default_rng(j).bytes(300_000))
    notes_dir = folder / "notes"
    notes_dir.mkdir()
    notes = []
    for j, photo in enumerate(photos):
        shutil.copyfile(photo, notes_dir / f"p{j}.jpg")
        noise = (0.2 * np.random.default_rng(j).standard_normal(8000 * 30)).astype(np.float32)
        sf.write(notes_dir / f"p{j}.wav", noise, 8000, subtype="PCM_16")  # 30 s of noise, 480 KB
        notes += [notes_dir / f"p{j}.jpg", notes_dir / f"p{j}.wav"]
    return {"collection_index_bomb": [photos[0], index_bomb(folder / ".index.npz")],
            "collection_junk": [photos[1], *junk], "collection_notes": notes}


class HostileClients:
    """What the clients send and what came back. ``attack``: the attack files by kind; ``collection``: the
    own-collection uploads by kind; ``shipped_names``: the people the gallery ships with (removed without the
    token, in turn)."""

    def __init__(self, url: str, work: Path, token: str, attack: dict[str, Path],
                 collection: dict[str, list[Path]], shipped_names: list[str]):
        from gradio_client import handle_file

        self.url, self.work, self.token = url, work, token
        self.attack, self.collection, self.shipped_names = attack, collection, shipped_names
        self.lock = threading.Lock()
        self.normal_ms: dict[str, list[float]] = {"voice_control": [], "portrait": [], "search": []}
        self.normal_errors: list[str] = []
        self.attacks: dict[str, dict] = {}  # kind -> count, outcomes, a sample message
        self.tracebacks: list[str] = []
        self.unclear: list[str] = []  # attacks answered with an empty error
        self.acknowledged: list[str] = []  # owner enrolments the server acknowledged
        self.audio, self.lamp = handle_file(str(ASSETS / "up.wav")), handle_file(str(ASSETS / "lamp.jpg"))
        self.face = handle_file(str(PORTRAIT_ASSETS / "examples" / "s1_clear.png"))
        self.spoken = handle_file(str(RETRIEVAL_ASSETS / "queries" / "fan_spoken.wav"))
        self.s18 = handle_file(str(PORTRAIT_ASSETS / "faces" / "orl" / "s18" / "1.pgm"))
        self.face_b64 = base64.b64encode((PORTRAIT_ASSETS / "examples" / "s1_clear.png").read_bytes()).decode()
        self.big_body = json.dumps({"data": [{"url": "data:image/png;base64," + "A" * (3 * 1024 * 1024)}, None, ""]})

    def note(self, kind: str, outcome: str, message: str | None) -> None:
        """Record one attack's outcome (a traceback or an empty error message is kept apart)."""
        with self.lock:
            a = self.attacks.setdefault(kind, {"count": 0, "outcomes": {}, "sample": None})
            a["count"] += 1
            a["outcomes"][outcome] = a["outcomes"].get(outcome, 0) + 1
            if message and a["sample"] is None:
                a["sample"] = message[:160]
            if message and ("Traceback" in message or 'File "' in message):
                self.tracebacks.append(f"{kind}: {message[:200]}")
            if outcome == "error" and not (message or "").strip():
                self.unclear.append(kind)

    def expect_error(self, kind: str, fn, ok: str = "accepted") -> None:
        """Call fn (a client request) and record its outcome: ``ok`` if it was answered, else its error."""
        from gradio_client.exceptions import AppError

        try:
            fn()
            self.note(kind, ok, None)
        except AppError as e:
            self.note(kind, "error", e.message if isinstance(e.message, str) else str(e))
        except Exception as e:  # noqa: BLE001 - a transport failure is counted, not hidden
            self.note(kind, f"failed:{type(e).__name__}", str(e))

    def raw(self, kind: str, api: str, data=None, body: bytes | None = None, ok_event: str = "error") -> None:
        """One raw HTTP call of the API (a body the client would not send) and its outcome."""
        try:
            status, event, payload = raw_call(self.url, api, data, body)
        except Exception as e:  # noqa: BLE001
            self.note(kind, f"failed:{type(e).__name__}", str(e))
            return
        message = payload.get("error") if isinstance(payload, dict) else None
        if status == 413:
            self.note(kind, "refused_413", message or "413 request too large")
        elif event == "error":
            self.note(kind, "error", message)
        else:
            self.note(kind, "accepted" if ok_event == "error" else event, None)

    def client_loop(self, k: int, stop_at: float) -> None:
        """Client k until ``stop_at``: a normal request, then an attack (each kind in turn), and so on."""
        from gradio_client import Client

        client = Client(self.url, verbose=False, ssl_verify=False, download_files=False)
        i = 0
        while time.perf_counter() < stop_at:
            i += 1
            if i % 2:
                self.normal(client, ("voice_control", "portrait", "search")[(i // 2 + k) % 3])
            else:
                self.send_attack(client, ATTACKS[(i // 2 + k) % len(ATTACKS)], k, i)

    def normal(self, client, scenario: str) -> None:
        """One normal request, timed (it must succeed)."""
        try:
            ms = normal_request(client, scenario, self.audio, self.lamp, self.face, self.spoken)
            with self.lock:
                self.normal_ms[scenario].append(ms)
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.normal_errors.append(f"{scenario}: {type(e).__name__}: {str(e)[:160]}")

    def send_attack(self, client, kind: str, k: int, i: int) -> None:
        """One attack of ``kind`` by client k (its i-th request)."""
        from gradio_client import handle_file

        if kind == "bomb_png" or kind == "bomb16_png" or kind == "big24mp_png":
            self.expect_error(kind, lambda: client.predict(handle_file(str(self.attack[kind])), None, "",
                                                           api_name="/portrait"))
        elif kind in ("hls_playlist", "concat_list"):
            self.expect_error(kind, lambda: client.predict(None, handle_file(str(self.attack[kind])), "",
                                                           api_name="/portrait"))
        elif kind == "big_data_url":
            self.raw(kind, "portrait", body=self.big_body.encode())
        elif kind == "small_data_url":
            self.raw(kind, "portrait", [{"url": "data:image/png;base64," + self.face_b64}, None, ""],
                     ok_event="complete")
        elif kind == "wrong_types":
            self.raw(kind, "voice_control_explain", [None, None, 5, [1], "x", None, None, "maybe", 1, 2])
        elif kind == "no_arguments":
            self.raw(kind, "enroll", [])
        elif kind == "enrol_flood":  # a burst: past the per-session cap within the run
            for j in range(FLOOD_BURST):
                name = f"flood {k} {i} {j}"
                self.expect_error(kind, lambda name=name: client.predict(name, [self.s18], None, "x" * 400, "",
                                                                         api_name="/enroll"),
                                  ok="enrolled_within_cap")
        elif kind == "remove_without_token":
            victim = self.shipped_names[(i + k) % len(self.shipped_names)]
            self.expect_error(kind, lambda: client.predict(victim, "", api_name="/remove_person"))
        elif kind == "reset_without_token":
            self.expect_error(kind, lambda: client.predict("guess", api_name="/reset_gallery"))
        elif kind.startswith("collection_"):
            self.own_collection(client, kind, k, i)
        elif kind == "owner_enrol":
            self.owner_enrol(client, k, i)

    def own_collection(self, client, kind: str, k: int, i: int) -> None:
        """A search of an own collection: the extra files must be skipped and listed; the voice notes heard
        within the budget (or the search told to wait while another collection is indexed)."""
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError

        files = [handle_file(str(f)) for f in self.collection[kind]]
        if kind == "collection_notes":  # a new caption each time: the collection is new each time
            caption = self.work / f"notes_{k}" / "p0.txt"
            caption.parent.mkdir(exist_ok=True)
            caption.write_text(f"a lamp {k} {i}")
            files.append(handle_file(str(caption)))
        listed = {"collection_index_bomb": ".index.npz", "collection_junk": "junk0.bin"}.get(kind)
        try:
            _, _, details = client.predict(None, None, "a lamp", None, None, None, None, None, 4, files,
                                           api_name="/search")
            shown = " ".join(details.get("skipped", []))
            self.note(kind, "indexed_within_budget" if listed is None else
                      "skipped_and_listed" if listed in shown else "accepted", None)
        except AppError as e:  # e.g. another collection is being indexed: a message
            self.note(kind, "error", e.message if isinstance(e.message, str) else str(e))
        except Exception as e:  # noqa: BLE001
            self.note(kind, f"failed:{type(e).__name__}", str(e))

    def owner_enrol(self, client, k: int, i: int) -> None:
        """An enrolment with the admin token: once acknowledged, it must survive the restart."""
        from gradio_client.exceptions import AppError

        name = f"owner {k} {i}"
        try:
            client.predict(name, [self.s18], None, "", self.token, api_name="/enroll")
            with self.lock:
                self.acknowledged.append(name)
            self.note("owner_enrol", "acknowledged", None)
        except AppError as e:  # e.g. the shared gallery is full: a message
            self.note("owner_enrol", "error", e.message if isinstance(e.message, str) else str(e))
