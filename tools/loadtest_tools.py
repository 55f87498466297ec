"""The pieces of the hostile load test: the app as a killable server with its own temp and gallery
folders, the attack files, one ordinary request, a raw HTTP call that reads Gradio's event stream,
and the disk measurement (the memory and CPU ones are in tools.bench)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mbm.paths import ROOT
from tools.bench import _free_port


def normal_request(client, scenario: str, audio, image, face, spoken=None) -> float:
    """One ordinary request, its milliseconds. Voice control: a clip and a photo; portrait: a face; search
    (when ``spoken`` is given): the demo collection searched by that spoken clip and a typed text."""
    start = time.perf_counter()
    if scenario == "voice_control":
        client.predict(audio, image, "", api_name="/voice_control")
    elif scenario == "search":
        client.predict(spoken, None, "a desk fan", None, None, None, None, None, 4, None, api_name="/search")
    else:
        client.predict(face, None, "", api_name="/portrait")
    return (time.perf_counter() - start) * 1000


def _du_bytes(folder: Path) -> tuple[int, int]:
    size = files = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                size += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return size, files


class Server:
    """``python app.py`` on a loopback port with the given environment; start / kill -9 / stop."""

    def __init__(self, env: dict, log: Path):
        self.env, self.log, self.proc, self.url = env, log, None, None

    def start(self, timeout_s: float = 180.0) -> float:
        from gradio_client import Client

        port = _free_port()
        env = {**os.environ, **self.env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        t0 = time.perf_counter()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}/"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}; see {self.log}")
            if time.perf_counter() - t0 > timeout_s:
                self.stop()
                raise RuntimeError(f"app.py did not serve within {timeout_s:.0f} s")
            try:
                Client(self.url, verbose=False, ssl_verify=False, download_files=False)
                return time.perf_counter() - t0
            except Exception:  # noqa: BLE001 - not serving yet: any failure means try again
                time.sleep(0.5)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


def _attack_files(folder: Path) -> dict[str, Path]:
    from PIL import Image

    files = {"bomb_png": folder / "bomb.png", "bomb16_png": folder / "bomb16.png", "big24mp_png": folder / "big.png",
             "hls_playlist": folder / "playlist.wav", "concat_list": folder / "concat.wav"}
    Image.new("L", (10_000, 10_000), 200).save(files["bomb_png"])
    Image.new("I;16", (10_000, 10_000), 40_000).save(files["bomb16_png"])
    Image.new("RGB", (6000, 4000), (120, 130, 140)).save(files["big24mp_png"])
    target = next((ROOT / "assets" / "portrait" / "fsdd" / "recordings").glob("*.wav"))  # a file on the server
    files["hls_playlist"].write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n")
    files["concat_list"].write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    return files


def raw_call(url: str, api: str, data=None, body: bytes | None = None) -> tuple[int, str, object]:
    """POST /gradio_api/call/<api> and read the answer: (HTTP status, event, data)."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("POST", f"/gradio_api/call/{api}", body=body if body is not None else
                     json.dumps({"data": data}).encode(), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        if response.status != 200:
            return response.status, "http", json.loads(raw or b"null")
        event_id = json.loads(raw)["event_id"]
        conn.request("GET", f"/gradio_api/call/{api}/{event_id}")
        stream = conn.getresponse().read().decode()
    except (BrokenPipeError, ConnectionResetError):
        return 413, "reset", None
    finally:
        conn.close()
    lines = stream.splitlines()
    event = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("event:")), "")
    data = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("data:")), "null")
    return 200, event, json.loads(data)


