"""What one request may cost: the bounds every way into the app obeys.

Kept free of heavy imports (no torch, no gradio) so the library, the app and the load test share them.
Each bound can be changed with an environment variable; the defaults are what ``docs/reliability.md``
lists.

- **Bytes**: an uploaded file, a data URL (``{"url": "data:..."}`` in a JSON payload) and an audio file
  given to FFmpeg all obey :data:`MAX_UPLOAD_BYTES`; a request body other than ``/upload`` (the JSON of
  an API call) obeys :data:`MAX_REQUEST_BYTES`, enforced by :class:`BodyLimitMiddleware` before Gradio
  parses or stores it.
- **Pixels**: an image whose header claims more than :data:`MAX_DECODE_PIXELS` is refused before it is
  decoded (a JPEG is first decoded at reduced size, so camera photos up to ``ImageConfig.max_pixels``
  pass); every decoded image is shrunk to at most :data:`WORK_PIXELS` before any conversion.
- **Gallery**: :data:`MAX_SESSION_PEOPLE`, :data:`MAX_SHARED_PEOPLE`, :data:`MAX_PROFILE_CHARS`.
- **Own search collections**: photos and audio seconds indexed per request, collections indexed at
  once, disk kept in all and per visitor, speech recognisers' memory, and a retrieval index's declared sizes.
"""

from __future__ import annotations

import json
import os


def _env_setting(name: str, default, minimum, parse, kind: str):
    """A setting from the environment, parsed and at least ``minimum``; a clear exit for a bad value."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise SystemExit(f"{name}={raw!r}: expected {kind} >= {minimum:g}")
    return value


def _env_number(name: str, default: float, minimum: float) -> float:
    return _env_setting(name, default, minimum, float, "a number")


def env_int(name: str, default: int, minimum: int) -> int:
    """An integer setting from the environment; a clear error (not a traceback) for a bad value."""
    return _env_setting(name, default, minimum, int, "a whole number")


MB = 1024 * 1024
MAX_UPLOAD_BYTES = int(_env_number("MBM_MAX_UPLOAD_MB", 20, 0.01) * MB)  # a file, however it arrives
MAX_REQUEST_BYTES = int(_env_number("MBM_MAX_REQUEST_MB", 2, 0.01) * MB)  # the JSON body of one API call
MAX_DECODE_PIXELS = int(_env_number("MBM_MAX_DECODE_MP", 25, 0.01) * 1_000_000)  # decoded at full size
WORK_PIXELS = 4_000_000  # decoded images are shrunk to this before any conversion (faces stay ~>100 px)
MAX_AUDIO_DECODE_SECONDS = 30.0  # FFmpeg decodes at most this much
FFMPEG_TIMEOUT_S = 20.0
FFMPEG_MEMORY_BYTES = 768 * MB  # address-space limit of one FFmpeg child

MAX_PROFILE_CHARS = 500
MAX_SESSION_PEOPLE = int(_env_number("MBM_MAX_SESSION_PEOPLE", 10, 0))  # one visitor's own enrolments
MAX_SHARED_PEOPLE = int(_env_number("MBM_MAX_SHARED_PEOPLE", 200, 1))  # the persistent gallery (admin)
MAX_SESSIONS = int(_env_number("MBM_MAX_SESSIONS", 500, 1))  # visitors' galleries kept in memory at once
HEAVY_CONCURRENCY_ID = "heavy"  # every event that decodes a file shares this Gradio concurrency group
DRAIN_BYTES = 64 * MB  # an oversized body up to this is read and dropped before the 413 (see BodyLimitMiddleware)

# A visitor's own search collection: what one upload may cost, on disk and in time.
COLLECTION_CONCURRENCY_ID = "collection"  # indexing an uploaded collection: its own group, not the heavy slots
COLLECTION_CONCURRENCY = int(_env_number("MBM_COLLECTION_CONCURRENCY", 1, 1))  # collections indexed at once
MAX_COLLECTION_PHOTOS = int(_env_number("MBM_COLLECTION_PHOTOS", 60, 1))  # photos indexed per request
MAX_COLLECTION_AUDIO_SECONDS = _env_number("MBM_COLLECTION_AUDIO_S", 60, 0)  # voice-note audio heard per request
MAX_COLLECTIONS_BYTES = int(_env_number("MBM_COLLECTIONS_MB", 250, 1) * MB)  # all uploaded collections on disk
MAX_VISITOR_COLLECTIONS_BYTES = int(_env_number("MBM_VISITOR_COLLECTIONS_MB", 50, 0.01) * MB)  # one visitor's
# Speech grammars kept for collection vocabularies (one each, a search on the one PocketSphinx decoder): bounded
# by an estimate of their memory (the RSS each one added when built, at least SPEECH_GRAMMAR_BYTES), not by count.
SPEECH_CACHE_BYTES = int(_env_number("MBM_SPEECH_CACHE_MB", 200, 0) * MB)
SPEECH_GRAMMAR_BYTES = 1 * MB
SPEECH_CHILDREN = int(_env_number("MBM_SPEECH_CHILDREN", 2, 1))  # voice-note children at once
SPEECH_WORKER_IDLE_S = _env_number("MBM_SPEECH_WORKER_IDLE_S", 20, 1)  # the spoken-query worker exits after
# A retrieval index file (``mbm.scenarios.retrieval.index``): every array's declared size is checked before it is read.
MAX_INDEX_BYTES = int(_env_number("MBM_MAX_INDEX_MB", 2048, 0.01) * MB)  # all arrays of one index together
MAX_INDEX_DIM = 8192  # columns of one vector array (a backbone's width; the shipped ones are 64-192)
MAX_MANIFEST_BYTES = int(_env_number("MBM_MAX_MANIFEST_MB", 256, 0.01) * MB)  # the index's JSON manifest


def size_text(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n / 1024:.0f} KB"


class BodyLimitMiddleware:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app reads it.

    File uploads (paths ending in ``/upload``) are left to Gradio's own ``max_file_size``; every other
    request (the JSON of ``/gradio_api/queue/join``, ``/gradio_api/call/...``, ``/run/...``) is limited,
    so a file inlined as a data URL cannot be bigger than this, and is never parsed or kept in a session.
    """

    def __init__(self, app, limit: int = MAX_REQUEST_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path", "").rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = True
            if too_big:
                return await self._refuse(send, receive, int(declared) if declared.isdigit() else 0)
            return await self.app(scope, receive, send)
        # No Content-Length (chunked): read the body here, up to the limit, then hand it on.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(send, receive, DRAIN_BYTES)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send, receive, declared: int):
        # Read (and drop) a moderately large body first, so the client gets the 413 and its message rather
        # than a reset connection; a huge one is answered at once.
        if declared <= DRAIN_BYTES:
            drained = 0
            while drained <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    break
                drained += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
        body = json.dumps({"error": f"the request is larger than {size_text(self.limit)}; upload files "
                                    f"(up to {size_text(MAX_UPLOAD_BYTES)}) instead of inlining them"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def tame_malloc(arenas: int = 2, trim_every_s: float = 5.0) -> bool:
    """Give freed memory back to the system (glibc only; a no-op elsewhere). Call once at start.

    With one malloc arena per thread, memory a big request freed stays mapped in its thread's arena
    (the server held 1.2 GB 30 s after a load that peaked at 1.3 GB). This caps the arenas
    (``mallopt(M_ARENA_MAX)``) and, every ``trim_every_s`` seconds from a daemon thread, collects
    garbage cycles (``gc.collect()``: a cycle that has reached the oldest generation waits for a full
    collection, which an idle server never triggers; 30 s after ``python -m tools.loadtest --hostile``
    the server held 1,228 MB without it and 1,130 MB with it) and trims the heap (``malloc_trim(0)``). Call :func:`freeze_startup_objects` once the
    app is built, so that each collection scans only what requests made. Returns whether glibc was found.
    """
    import ctypes
    import ctypes.util
    import gc
    import threading

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim, mallopt = libc.malloc_trim, libc.mallopt
    except (OSError, AttributeError):
        return False
    M_ARENA_MAX = -8
    mallopt(M_ARENA_MAX, int(arenas))

    def trimmer() -> None:
        stop = threading.Event()
        while not stop.wait(trim_every_s):
            gc.collect()
            trim(0)

    threading.Thread(target=trimmer, name="malloc-trim", daemon=True).start()
    return True


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, models, the built app) out of the garbage collector's view.

    A full collection of the built app scans about 590,000 objects (0.5 s holding the interpreter);
    after this, the periodic collection of :func:`tame_malloc` scans only objects made later.
    """
    import gc

    gc.collect()
    gc.freeze()
