"""Check `moeaudio serve`'s demo page in a real headless browser and screenshot it.

Starts the server on 127.0.0.1 (a free port) with CHECKPOINT, opens the page in Debian's chromium
(headless, driven over the DevTools protocol on a pipe: no websocket library, no Playwright), puts
CLIP into the page's file input as a user's upload would (DOM.setFileInputFiles), picks the task,
clicks Run, waits for the answer and the routing picture, and writes a PNG of the page::

    python scripts/serve_demo_screenshot.py runs/quickstart data/synth/audio/test/speech/x.wav \\
        --out docs/serve_demo.png [--question "What is said?"]

Exits non-zero when the page shows an error or no answer within --timeout seconds; prints the
answer the page shows.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moeaudio.serve.main import build_server, start_in_thread
from moeaudio.serve.options import ServeOptions


class Chromium:
    """Headless chromium spoken to over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out, NUL-framed JSON)."""

    def __init__(self, binary: str, width: int, height: int):
        self.profile = tempfile.mkdtemp(prefix="moeaudio-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends where chromium expects them
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [
                binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank",
            ],
            preexec_fn=wire, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.next_id = 0
        self.buffer = b""
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def attach(self) -> None:
        targets = self.send("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}, session=False
        )["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_for(browser: Chromium, expression: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"the page did not {what} within {timeout:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("clip", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/serve_demo.png"))
    parser.add_argument("--question", default=None, help="ask this instead of transcribing")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    if not args.clip.is_file():
        parser.error(f"{args.clip}: no such file")

    server = build_server(ServeOptions(args.checkpoint, device="cpu"))
    uv, port = start_in_thread(server.app)
    browser = Chromium(args.chromium, 1000, 1200)
    try:
        browser.attach()
        browser.send("Page.enable")
        browser.send("Runtime.enable")
        browser.send("Page.navigate", {"url": f"http://127.0.0.1:{port}/"})
        wait_for(browser, "document.getElementById('model').textContent !== '…'", 30, "load the model name")
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "#file"})["nodeId"]
        browser.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(args.clip.resolve())]})
        wait_for(browser, "!document.getElementById('run').disabled", 10, "take the uploaded clip")
        if args.question:
            browser.evaluate(
                "document.querySelector('input[value=question]').click();"
                f"document.getElementById('question').value = {json.dumps(args.question)}; true"
            )
        browser.evaluate("document.getElementById('run').click(); true")
        wait_for(
            browser,
            "document.getElementById('status').textContent.startsWith('done') || "
            "document.getElementById('error').textContent",
            args.timeout,
            "show an answer",
        )
        error = browser.evaluate("document.getElementById('error').textContent")
        answer = browser.evaluate("document.getElementById('answer').textContent")
        routing = browser.evaluate("document.getElementById('routing-title').textContent")
        height = browser.evaluate("document.documentElement.scrollHeight")
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1000, "height": int(height) + 20, "deviceScaleFactor": 1, "mobile": False},
        )
        png = browser.send("Page.captureScreenshot", {"format": "png"})["data"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".png.tmp")
        tmp.write_bytes(base64.b64decode(png))
        tmp.replace(args.out)
    finally:
        browser.close()
        uv.should_exit = True
        server.engine.stop()
    print(json.dumps({"answer": answer, "error": error, "routing": routing, "png": str(args.out)}, indent=1))
    return 1 if error or not answer else 0


if __name__ == "__main__":
    sys.exit(main())
