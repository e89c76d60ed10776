"""Airflow components as real processes, bounded in time, for the reliability and security tests.

Each component runs in its own process group (``start_new_session``) and is stopped by group,
so no scheduler, worker or server outlives its test. Output goes to a log file in the test's
temporary directory, whose tail is shown when something times out.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from fixtures_e2e import AIRFLOW, REPO, env_sh


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ui_settings(home: Path, env_file: Path, port: int, **overrides: str) -> dict[str, str]:
    """The environment scripts/ui.sh gives `airflow standalone` (sourced with --env), for an
    Airflow home, a secrets file and a port of the test's own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VBP_"))}
    base.update(AIRFLOW_HOME=str(home), VBP_ENV_FILE=str(env_file), VBP_UI_PORT=str(port), **overrides)
    out = subprocess.run(["bash", "-c", ". scripts/ui.sh --env && env -0"], cwd=REPO, env=base,
                         capture_output=True, check=True, timeout=60)
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def airflow(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one `airflow` CLI command to completion; fail with its output."""
    result = subprocess.run([str(AIRFLOW), *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


class Component:
    """`airflow <args>` running in its own process group, logging to ``log``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen([str(AIRFLOW), *args], cwd=REPO, env=env, stdout=self._out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def memory(self) -> tuple[int, int]:
        """(RSS, PSS) in bytes summed over the component's process group."""
        return group_memory(self.process.pid)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM to the whole group, SIGKILL after ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_members(self.process.pid):
                self.process.poll()
                time.sleep(0.2)
            if not _group_members(self.process.pid):
                break
        self.process.poll()
        self._out.close()


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (after the command name), fields[2] the process group
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def group_memory(pgid: int) -> tuple[int, int]:
    rss = pss = 0
    for pid in _group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 1.0,
               watch: list[Component] = ()) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds, or
    as soon as a watched component died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for component in watch:
            assert component.alive, f"{component.name} died while waiting for {what}:\n{component.tail()}"
        time.sleep(interval)
    logs = "\n".join(f"--- {c.name}\n{c.tail(2500)}" for c in watch)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def http(method: str, url: str, *, token: str | None = None, json_body: object = None,
         form: dict | None = None, follow: bool = True) -> tuple[int, dict | str, dict]:
    """(status, JSON or text body, headers) of one request; never raises on HTTP errors."""
    data, headers = None, {"Accept": "application/json"}
    if json_body is not None:
        data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    elif form is not None:
        from urllib.parse import urlencode
        data, headers["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            status, body, head = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, body, head = error.code, error.read(), dict(error.headers)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, "", {}
    text = body.decode(errors="replace")
    try:
        return status, json.loads(text), head
    except ValueError:
        return status, text, head


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


__all__ = ["AIRFLOW", "REPO", "Component", "airflow", "env_sh", "free_port", "group_memory", "http",
           "ui_settings", "wait_until"]
