"""The fake ``smartctl``, ``zpool``, ``btrfs`` and ``upsc`` (tests/support/homebin) first on
PATH, with their data in a temporary folder; and a loopback server that answers with a
public address, for the dynamic-IP check."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HOMEBIN = Path(__file__).resolve().parent / "homebin"
SMART = Path(__file__).resolve().parent / "smartctl"


class HomeFakes:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "home-path"
        self.data = self.dir / "home-fakes"
        for folder in ("smartctl", "btrfs", "upsc"):
            (self.data / folder).mkdir(parents=True, exist_ok=True)
        self.path = os.pathsep.join([str(self.dir), str(HOMEBIN), os.environ.get("PATH", "")])

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", self.path)

    def disks(self, **documents: str) -> None:
        """``sda="sata-healthy"`` serves tests/support/smartctl/sata-healthy.json as /dev/sda;
        the scan lists exactly these disks."""
        folder = self.data / "smartctl"
        for old in folder.glob("*.json"):
            old.unlink()
        devices = []
        for device, recorded in documents.items():
            doc = json.loads((SMART / f"{recorded}.json").read_text())
            doc.setdefault("device", {})["name"] = f"/dev/{device}"
            (folder / f"{device}.json").write_text(json.dumps(doc))
            kind = "nvme" if device.startswith("nvme") else "sat"
            devices.append({"name": f"/dev/{device}", "type": kind})
        scan = json.loads((SMART / "scan.json").read_text()) | {"devices": devices}
        (folder / "scan.json").write_text(json.dumps(scan))

    def zpool(self, text: str) -> None:
        (self.data / "zpool-status.txt").write_text(text)

    def btrfs(self, mount: str, text: str) -> None:
        (self.data / "btrfs" / f"{mount.strip('/').replace('/', '_') or '_'}.txt").write_text(text)

    def ups(self, name: str, text: str | None) -> None:
        path = self.data / "upsc" / f"{name}.txt"
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)

    def calls(self, tool: str) -> list[list[str]]:
        path = self.data / "calls.jsonl"
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text().splitlines()]
        return [call[1:] for call in calls if call[0] == tool]

    def without(self, tool: str) -> str:
        """A PATH on which ``tool`` is missing (the others stay)."""
        bare = self.dir / "bare"
        bare.mkdir(exist_ok=True)
        for other in ("smartctl", "zpool", "btrfs", "upsc"):
            if other != tool and not (bare / other).exists():
                (bare / other).symlink_to(HOMEBIN / other)
        # The fakes run under the python3 next to the test's own interpreter.
        return os.pathsep.join([str(self.dir), str(bare), str(Path(sys.executable).parent)])


class AddressServer:
    """``GET /`` answers with ``answer`` (the bare address, as api.ipify.org does)."""

    def __init__(self) -> None:
        self.answer = "203.0.113.10"
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.answer.encode()
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    @contextlib.contextmanager
    def running(self) -> Iterator[AddressServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HomeFakes:
    fakes = HomeFakes(tmp_path)
    fakes.install(monkeypatch)
    return fakes


@pytest.fixture
def address_server() -> Iterator[AddressServer]:
    with AddressServer().running() as server:
        yield server
