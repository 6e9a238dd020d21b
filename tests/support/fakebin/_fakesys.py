"""Shared logic of the fake ``systemctl``, ``journalctl``, ``nixos-rebuild`` and ``nix``.

Standard library only: the executables run under whatever ``python3`` is on PATH.

The state is one JSON file: ``$FAKE_SYSTEM_STATE``, or else ``fake-system-state.json`` in the
first PATH folder that holds one (a caller that passes a minimal environment with only PATH,
as Steward's adapters do, still finds it). Every change happens under an exclusive ``flock`` on
a side lock file and is written atomically (temporary file, then rename), so several fake
processes can run at once and a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import getopt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

State = dict[str, Any]
Unit = dict[str, Any]

STATE_ENV = "FAKE_SYSTEM_STATE"
STATE_FILENAME = "fake-system-state.json"
UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".mount",
    ".path",
    ".slice",
    ".scope",
    ".device",
    ".swap",
    ".automount",
)
# The oneshot units of Steward's NixOS module and what they run.
STEWARD_UNITS = {
    "steward-rebuild.service": ("switch", "Steward: nixos-rebuild switch"),
    "steward-upgrade.service": ("upgrade", "Steward: upgrade and nixos-rebuild switch"),
    "steward-rollback.service": ("rollback", "Steward: nixos-rebuild switch --rollback"),
}
# steward-rollback@N.service switches to generation N (a template unit, instantiated on use).
ROLLBACK_TEMPLATE = re.compile(r"steward-rollback@([0-9]{1,9})\.service")
# steward-backup@SERVICE:REASON and steward-restore@SERVICE:ARG run `steward worker KIND ARG`
# as root (steward-restore-foreign@ runs `steward worker restore ARG --foreign`); here they run
# state["data_worker"] ({"argv": [...], "env": {...}}, set by a test) with KIND and the
# instance appended, and its output goes to the unit's journal.
DATA_TEMPLATE = re.compile(
    r"steward-(backup|restore|restore-foreign)@([a-z0-9][a-z0-9_-]{0,63}:[a-z0-9-]{1,64})\.service"
)
NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"
ANSI_RED, ANSI_GREEN, ANSI_NORMAL = "\x1b[31;1m", "\x1b[32;1m", "\x1b[0m"
DEFAULT_PACKAGES: dict[str, list[Any]] = {
    "nginx": ["1.26.2", 1_585_152],
    "openssh": ["9.9p1", 3_145_728],
    "postgresql": ["16.4", 41_943_040],
    "python3": ["3.12.7", 115_343_360],
    "systemd": ["256.8", 30_408_704],
}


class ToolError(Exception):
    """Leave with exit ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- state file ------------------------------------------------------------------------------


def state_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV])
    for folder in env.get("PATH", "").split(os.pathsep):
        if folder and (Path(folder) / STATE_FILENAME).is_file():
            return Path(folder) / STATE_FILENAME
    raise ToolError(
        1, f"fake system: set {STATE_ENV} or put a folder with {STATE_FILENAME} on PATH"
    )


def load(path: Path) -> State:
    with path.open(encoding="utf-8") as fd:
        data: State = json.load(fd)
    return data


def save(path: Path, state: State) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[State]:
    """Load, let the caller change, save: all under the lock. An exception saves nothing."""
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = load(path)
            yield state
            save(path, state)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record_call(path: Path, tool: str, argv: Sequence[str]) -> None:
    with locked(path) as state:
        state["calls"].append([tool, *argv])


# --- time and names --------------------------------------------------------------------------


def now_us() -> int:
    return time.time_ns() // 1000


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def show_timestamp(us: int) -> str:
    """``systemctl show`` style: ``Sat 2026-11-28 14:03:11 UTC``; empty when unset."""
    return _dt(us).strftime("%a %Y-%m-%d %H:%M:%S UTC") if us else ""


def unit_name(name: str) -> str:
    """systemd appends ``.service`` to a name without a unit type suffix."""
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def nix_hash(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(NIX32[b % 32] for b in digest[:32])


def next_pid(state: State) -> int:
    state["pid_counter"] += 1
    pid: int = state["pid_counter"]
    return pid


# --- units and journal -----------------------------------------------------------------------


def new_state(hostname: str = "steward", root: str | None = None) -> State:
    state: State = {
        "hostname": hostname,
        "root": root,
        "admin_user": "admin",
        "pid_counter": 1000,
        "cursor": 0,
        "units": {},
        "journal": {},
        "generations": [],
        "current_system": None,
        "booted_system": None,
        "failures": {"start": {}, "rebuild": None, "rebuild_delay": 0.0},
        "staged": {},
        "flake_inputs": {
            "nixpkgs": {
                "owner": "NixOS",
                "repo": "nixpkgs",
                "rev": "1a2b3c4d",
                "date": "2026-11-20",
            }
        },
        "calls": [],
    }
    for name, (_, description) in STEWARD_UNITS.items():
        add_unit(state, name, description=description, active_state="inactive", unit_type="oneshot")
    add_generation(state, nixos_version="25.11.20261120.1a2b3c4", kernel="6.12.1", current=True)
    state["booted_system"] = dict(state["current_system"])
    sync_links(state)
    return state


def steward_action(name: str) -> tuple[str, int | None] | None:
    """What a steward unit runs: ("switch" | "upgrade" | "rollback", target generation)."""
    if name in STEWARD_UNITS:
        return STEWARD_UNITS[name][0], None
    match = ROLLBACK_TEMPLATE.fullmatch(name)
    return ("rollback", int(match.group(1))) if match else None


def add_unit(
    state: State,
    name: str,
    *,
    description: str | None = None,
    active_state: str = "active",
    sub_state: str | None = None,
    unit_type: str = "simple",
    memory: int | None = 52_428_800,
) -> Unit:
    name = unit_name(name)
    base = name.rsplit(".", 1)[0]
    unit: Unit = {
        "Id": name,
        "Type": unit_type,
        "Description": description or base,
        "LoadState": "loaded",
        "ActiveState": "inactive",
        "SubState": "dead",
        "Result": "success",
        "MainPID": 0,
        "ExecMainStatus": 0,
        "MemoryCurrent": None,
        "MemoryBase": memory,
        "StateChangeTimestamp": 0,
        "ActiveEnterTimestamp": 0,
        "ActiveExitTimestamp": 0,
        "InactiveEnterTimestamp": 0,
        "InvocationID": "",
        "FragmentPath": f"/etc/systemd/system/{name}",
        "SyslogIdentifier": f"{base}-start" if name in STEWARD_UNITS else base,
        "failed": False,
    }
    state["units"][name] = unit
    state["journal"].setdefault(name, [])
    set_active(state, name, active_state, sub_state)
    return unit


def set_active(
    state: State, name: str, active: str, sub: str | None = None, result: str | None = None
) -> None:
    unit = state["units"][name]
    stamp = now_us()
    if active in {"activating", "active"} and unit["ActiveState"] in {"inactive", "failed"}:
        # Each start is a new invocation, as systemd numbers them.
        unit["InvocationID"] = nix_hash(f"{name}-{stamp}-{state['cursor']}")[:32]
    if unit["ActiveState"] != active or not unit["StateChangeTimestamp"]:
        unit["StateChangeTimestamp"] = stamp
        if active == "active":
            unit["ActiveEnterTimestamp"] = stamp
        if unit["ActiveState"] == "active":
            unit["ActiveExitTimestamp"] = stamp
        if active in {"inactive", "failed"}:
            unit["InactiveEnterTimestamp"] = stamp
    default_sub = {
        "active": "running" if unit["Type"] != "oneshot" else "exited",
        "inactive": "dead",
        "failed": "failed",
        "activating": "start",
        "deactivating": "stop",
        "reloading": "reload",
    }
    unit["ActiveState"] = active
    unit["SubState"] = sub or default_sub.get(active, "dead")
    if result is not None:
        unit["Result"] = result
    unit["failed"] = active == "failed"
    if active in {"inactive", "failed"}:
        unit["MainPID"] = 0
        unit["MemoryCurrent"] = None
    else:
        if not unit["MainPID"]:
            unit["MainPID"] = next_pid(state)
        unit["MemoryCurrent"] = unit["MemoryBase"]


def append_journal(
    state: State,
    unit: str,
    message: str,
    *,
    ident: str | None = None,
    pid: int | None = None,
    at_us: int | None = None,
    priority: int = 6,
) -> None:
    """One journal line of ``unit``; ``ident="systemd"`` lines are systemd's own (pid 1)."""
    state["cursor"] += 1
    record = state["units"].get(unit, {})
    if ident is None:
        ident = record.get("SyslogIdentifier") or unit.rsplit(".", 1)[0]
    if pid is None:
        pid = 1 if ident == "systemd" else record.get("MainPID") or state["pid_counter"]
    state["journal"].setdefault(unit, []).append(
        {
            "cursor": state["cursor"],
            "ts": now_us() if at_us is None else at_us,
            "ident": ident,
            "pid": pid,
            "message": message,
            "priority": priority,
        }
    )


def _systemd(state: State, unit: str, message: str, priority: int = 6) -> None:
    append_journal(state, unit, message, ident="systemd", pid=1, priority=priority)


# --- generations -----------------------------------------------------------------------------


def store_path(state: State, generation: Mapping[str, Any]) -> str:
    seed = f"{generation['generation']}-{generation['nixosVersion']}-{generation['kernelVersion']}"
    return (
        f"/nix/store/{nix_hash(seed)}-nixos-system-{state['hostname']}-{generation['nixosVersion']}"
    )


def add_generation(
    state: State,
    *,
    nixos_version: str | None = None,
    kernel: str | None = None,
    packages: Mapping[str, Sequence[Any]] | None = None,
    current: bool = True,
    date: str | None = None,
) -> State:
    gens: list[State] = state["generations"]
    previous = current_generation(state) if gens else None
    number = max((g["generation"] for g in gens), default=0) + 1
    base = previous["packages"] if previous else DEFAULT_PACKAGES
    pkgs = {k: list(v) for k, v in base.items()}
    if packages:
        pkgs.update({k: list(v) for k, v in packages.items()})
    kernel = kernel or (previous["kernelVersion"] if previous else "6.12.1")
    pkgs["linux"] = [kernel, 136_314_880]
    generation: State = {
        "generation": number,
        "date": date or _dt(now_us()).strftime("%Y-%m-%d %H:%M:%S"),
        "nixosVersion": nixos_version or (previous["nixosVersion"] if previous else "25.11"),
        "kernelVersion": kernel,
        "configurationRevision": "",
        "specialisations": [],
        "current": False,
        "packages": pkgs,
    }
    generation["storePath"] = store_path(state, generation)
    gens.append(generation)
    if current:
        make_current(state, number, activate=True)
    return generation


def current_generation(state: State) -> State:
    for generation in state["generations"]:
        if generation["current"]:
            found: State = generation
            return found
    last: State = state["generations"][-1]
    return last


def generation_by_number(state: State, number: int) -> State | None:
    for generation in state["generations"]:
        if generation["generation"] == number:
            found: State = generation
            return found
    return None


def make_current(state: State, number: int, *, activate: bool) -> None:
    """Point the system profile at ``number``; ``activate`` also switches /run/current-system."""
    for generation in state["generations"]:
        generation["current"] = generation["generation"] == number
    if activate:
        generation = current_generation(state)
        state["current_system"] = {"generation": number, "kernel": generation["kernelVersion"]}
    sync_links(state)


def sync_links(state: State) -> None:
    """Mirror /run/current-system and /run/booted-system as symlinks under the fake root."""
    if not state.get("root"):
        return
    for name in ("current-system", "booted-system"):
        system = state.get(name.replace("-", "_"))
        if not system:
            continue
        folder = Path(state["root"]) / "run" / name
        folder.mkdir(parents=True, exist_ok=True)
        kernel = system["kernel"]
        base = f"/nix/store/{nix_hash('linux-' + kernel)}-linux-{kernel}"
        targets = {
            "kernel": f"{base}/bzImage",
            "kernel-modules": f"/nix/store/{nix_hash('mods-' + kernel)}-kernel-modules",
            "initrd": f"/nix/store/{nix_hash('initrd-' + kernel)}-initrd-linux-{kernel}/initrd",
        }
        for link, target in targets.items():
            tmp = folder / f".{link}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(target, tmp)
            os.replace(tmp, folder / link)


# --- systemctl -------------------------------------------------------------------------------

# Properties in the order systemd prints them (the Service interface first, then the Unit one).
PROPERTY_ORDER = (
    "Type",
    "Restart",
    "MainPID",
    "Result",
    "ExecMainStartTimestamp",
    "ExecMainStatus",
    "MemoryCurrent",
    "Id",
    "Names",
    "Description",
    "LoadState",
    "ActiveState",
    "FreezerState",
    "SubState",
    "FragmentPath",
    "StateChangeTimestamp",
    "ActiveEnterTimestamp",
    "ActiveExitTimestamp",
    "InactiveEnterTimestamp",
    "InvocationID",
    "CanStart",
    "CanStop",
)


def unit_properties(state: State, name: str) -> dict[str, str]:
    unit = state["units"].get(name)
    if unit is None or unit["LoadState"] == "not-found":
        return {
            "Type": "simple",
            "Restart": "no",
            "MainPID": "0",
            "Result": "success",
            "ExecMainStartTimestamp": "",
            "ExecMainStatus": "0",
            "MemoryCurrent": "[not set]",
            "Id": name,
            "Names": name,
            "Description": name,
            "LoadState": "not-found",
            "ActiveState": "inactive",
            "FreezerState": "running",
            "SubState": "dead",
            "FragmentPath": "",
            "StateChangeTimestamp": "",
            "ActiveEnterTimestamp": "",
            "ActiveExitTimestamp": "",
            "InactiveEnterTimestamp": "",
            "InvocationID": "",
            "CanStart": "no",
            "CanStop": "yes",
        }
    memory = unit["MemoryCurrent"]
    running = unit["ActiveState"] in {"active", "activating", "reloading", "deactivating"}
    return {
        "Type": unit["Type"],
        "Restart": "no" if unit["Type"] == "oneshot" else "on-failure",
        "MainPID": str(unit["MainPID"]),
        "Result": unit["Result"],
        "ExecMainStartTimestamp": show_timestamp(unit["ActiveEnterTimestamp"]) if running else "",
        "ExecMainStatus": str(unit["ExecMainStatus"]),
        "MemoryCurrent": "[not set]" if memory is None else str(memory),
        "Id": name,
        "Names": name,
        "Description": unit["Description"],
        "LoadState": unit["LoadState"],
        "ActiveState": unit["ActiveState"],
        "FreezerState": "running",
        "SubState": unit["SubState"],
        "FragmentPath": unit["FragmentPath"],
        "StateChangeTimestamp": show_timestamp(unit["StateChangeTimestamp"]),
        "ActiveEnterTimestamp": show_timestamp(unit["ActiveEnterTimestamp"]),
        "ActiveExitTimestamp": show_timestamp(unit["ActiveExitTimestamp"]),
        "InactiveEnterTimestamp": show_timestamp(unit["InactiveEnterTimestamp"]),
        "InvocationID": unit.get("InvocationID", ""),
        "CanStart": "yes",
        "CanStop": "yes",
    }


def _getopt(
    tool: str, argv: Sequence[str], short: str, long: list[str]
) -> tuple[dict[str, list[str]], list[str]]:
    try:
        pairs, args = getopt.gnu_getopt(list(argv), short, long)
    except getopt.GetoptError as exc:
        if exc.opt and len(exc.opt) > 1:
            raise ToolError(1, f"{tool}: unrecognized option '--{exc.opt}'") from None
        raise ToolError(1, f"{tool}: invalid option -- '{exc.opt}'") from None
    opts: dict[str, list[str]] = {}
    for key, value in pairs:
        opts.setdefault(key, []).append(value)
    return opts, args


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


SYSTEMCTL_SHORT = "p:t:aqn:o:l"
SYSTEMCTL_LONG = [
    "property=",
    "value",
    "no-pager",
    "plain",
    "no-legend",
    "no-block",
    "output=",
    "state=",
    "type=",
    "all",
    "failed",
    "quiet",
    "system",
    "full",
    "lines=",
    "no-ask-password",
    "wait",
    "job-mode=",
]


def systemctl(argv: Sequence[str]) -> int:  # noqa: PLR0911 - one return per verb
    path = state_path()
    record_call(path, "systemctl", argv)
    opts, args = _getopt("systemctl", argv, SYSTEMCTL_SHORT, SYSTEMCTL_LONG)
    verb, names = (args[0], args[1:]) if args else ("list-units", [])
    units = [unit_name(n) for n in names]
    quiet = "-q" in opts or "--quiet" in opts
    if verb == "show":
        return _show(path, units, opts)
    if verb in {"is-active", "is-failed"}:
        return _is(path, verb, units, quiet)
    if verb in {"start", "stop", "restart", "try-restart", "reload-or-restart"}:
        if not units:
            raise ToolError(1, "Too few arguments.")
        return _control(
            path, verb if verb in {"start", "stop"} else "restart", units, "--no-block" in opts
        )
    if verb in {"list-units", "list"}:
        return _list_units(path, names, opts)
    if verb == "reset-failed":
        with locked(path) as state:
            for name in units or [n for n, u in state["units"].items() if u["failed"]]:
                if name in state["units"] and state["units"][name]["ActiveState"] == "failed":
                    set_active(state, name, "inactive", result="success")
        return 0
    if verb == "daemon-reload":
        return 0
    if verb in {"reboot", "poweroff"}:
        # The machine would go down now; the fake notes it, as a test wants to see.
        with locked(path) as state:
            state[verb + "s"] = state.get(verb + "s", 0) + 1
        return 0
    raise ToolError(1, f"Unknown command verb '{verb}'.")


def _show(path: Path, units: list[str], opts: Mapping[str, list[str]]) -> int:
    wanted: list[str] = []
    for value in opts.get("-p", []) + opts.get("--property", []):
        wanted.extend(p for p in value.split(",") if p)
    state = load(path)
    blocks = []
    for name in units:
        props = unit_properties(state, name)
        keys = [k for k in PROPERTY_ORDER if not wanted or k in wanted]
        if "--value" in opts:
            blocks.append("".join(f"{props[k]}\n" for k in keys))
        else:
            blocks.append("".join(f"{k}={props[k]}\n" for k in keys))
    _out("\n".join(blocks))
    return 0


def _is(path: Path, verb: str, units: list[str], quiet: bool) -> int:
    state = load(path)
    hit = False
    for name in units:
        props = unit_properties(state, name)
        active = props["ActiveState"]
        hit = hit or (active == "active" if verb == "is-active" else active == "failed")
        if not quiet:
            _out(active + "\n")
    return 0 if hit else (3 if verb == "is-active" else 1)


def _job_failed(unit: str) -> str:
    return (
        f"Job for {unit} failed because the control process exited with error code.\n"
        f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.'
    )


def _take(failures: dict[str, Any], key: str) -> str | None:
    entry = failures.get(key)
    if entry is None:
        return None
    entry["times"] -= 1
    if entry["times"] <= 0:
        del failures[key]
    message: str = entry["message"]
    return message


def _stop(state: State, name: str) -> None:
    unit = state["units"][name]
    if unit["ActiveState"] in {"inactive", "failed"}:
        return
    _systemd(state, name, f"Stopping {unit['Description']}...")
    set_active(state, name, "inactive", result="success")
    _systemd(state, name, f"{name}: Deactivated successfully.")
    _systemd(state, name, f"Stopped {unit['Description']}.")


def _fail_start(state: State, name: str, message: str) -> None:
    unit = state["units"][name]
    _systemd(state, name, f"Starting {unit['Description']}...")
    unit["MainPID"] = next_pid(state)
    append_journal(state, name, message, priority=3)
    unit["ExecMainStatus"] = 1
    set_active(state, name, "failed", result="exit-code")
    _systemd(state, name, f"{name}: Control process exited, code=exited, status=1/FAILURE", 5)
    _systemd(state, name, f"{name}: Failed with result 'exit-code'.", 4)
    _systemd(state, name, f"Failed to start {unit['Description']}.", 3)


def _control(path: Path, verb: str, units: list[str], no_block: bool) -> int:  # noqa: PLR0912
    errors: list[str] = []
    code = 0
    rebuilds: list[str] = []
    waits: list[str] = []
    failed: list[str] = []
    data_jobs: list[str] = []
    with locked(path) as state:
        for name in units:
            unit = state["units"].get(name)
            if unit is None and DATA_TEMPLATE.fullmatch(name):
                unit = add_unit(state, name, description=f"Steward: {name}",
                                active_state="inactive", unit_type="oneshot")  # fmt: skip
            if unit is None and ROLLBACK_TEMPLATE.fullmatch(name):
                number = ROLLBACK_TEMPLATE.fullmatch(name).group(1)  # type: ignore[union-attr]
                description = f"Steward: switch to generation {number}"
                unit = add_unit(
                    state, name, description=description, active_state="inactive",
                    unit_type="oneshot",
                )  # fmt: skip
            if unit is None or unit["LoadState"] == "not-found":
                why = "not loaded" if verb == "stop" else "not found"
                errors.append(f"Failed to {verb} {name}: Unit {name} {why}.")
                code = 5
                continue
            if verb == "stop":
                _stop(state, name)
                continue
            if DATA_TEMPLATE.fullmatch(name):
                if unit["ActiveState"] != "activating":
                    _systemd(state, name, f"Starting {unit['Description']}...")
                    unit["MainPID"] = next_pid(state)
                    set_active(state, name, "activating", "start")
                    data_jobs.append(name)
                waits.append(name)
                continue
            if steward_action(name) is not None:
                # A start while the oneshot runs joins the running job.
                if unit["ActiveState"] != "activating":
                    _systemd(state, name, f"Starting {unit['Description']}...")
                    unit["MainPID"] = next_pid(state)
                    set_active(state, name, "activating", "start")
                    rebuilds.append(name)
                waits.append(name)
                continue
            if verb == "restart":
                _stop(state, name)
            elif unit["ActiveState"] == "active":
                continue
            message = _take(state["failures"]["start"], name)
            if message is not None:
                _fail_start(state, name, message)
                failed.append(name)
                continue
            _systemd(state, name, f"Starting {unit['Description']}...")
            unit["ExecMainStatus"] = 0
            set_active(state, name, "active", result="success")
            _systemd(state, name, f"Started {unit['Description']}.")
    for name in data_jobs:
        run_data_job(path, name)
    for name in rebuilds:
        if no_block:
            spawn_worker(path, name)
        else:
            rebuild_unit(path, name)
    if not no_block:
        for name in waits:
            while load(path)["units"][name]["ActiveState"] == "activating":
                time.sleep(0.05)
            if load(path)["units"][name]["ActiveState"] == "failed":
                failed.append(name)
        errors.extend(_job_failed(name) for name in failed)
        if failed and not code:
            code = 1
    for line in errors:
        _err(line)
    return code


def _list_units(path: Path, patterns: list[str], opts: Mapping[str, list[str]]) -> int:
    state = load(path)
    states = {s for v in opts.get("--state", []) for s in v.split(",") if s}
    if "--failed" in opts:
        states.add("failed")
    types = {t for v in opts.get("-t", []) + opts.get("--type", []) for t in v.split(",") if t}
    show_all = "-a" in opts or "--all" in opts
    rows = []
    for name in sorted(state["units"]):
        unit = state["units"][name]
        row = (name, unit["LoadState"], unit["ActiveState"], unit["SubState"], unit["Description"])
        if states and not states & set(row[1:4]):
            continue
        if not states and not show_all and unit["ActiveState"] == "inactive":
            continue
        if types and name.rsplit(".", 1)[1] not in types:
            continue
        if patterns and not any(fnmatch.fnmatchcase(name, unit_name(p)) for p in patterns):
            continue
        rows.append(row)
    output = (opts.get("-o", []) + opts.get("--output", []) or ["short"])[-1]
    if output == "json":
        keys = ("unit", "load", "active", "sub", "description")
        _out(json.dumps([dict(zip(keys, row, strict=True)) for row in rows]) + "\n")
        return 0
    plain = "--plain" in opts
    legend = "--no-legend" not in opts
    header = ("UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION")
    table = [header, *rows] if legend else rows
    widths = [max((len(r[i]) for r in table), default=0) for i in range(4)]
    lines = []
    for row in table:
        mark = "" if plain else ("● " if row[2] == "failed" else "  ")
        cells = " ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4]))
        lines.append(f"{mark}{cells} {row[4]}".rstrip())
    if legend:
        lines += [
            "",
            "LOAD   = Reflects whether the unit definition was properly loaded.",
            "ACTIVE = The high-level unit activation state, i.e. generalization of SUB.",
            "SUB    = The low-level unit activation state, values depend on unit type.",
            f"{len(rows)} loaded units listed."
            + ("" if show_all else " Pass --all to see loaded but inactive units, too."),
            "To show all installed unit files use 'systemctl list-unit-files'.",
        ]
    _out("".join(line + "\n" for line in lines))
    return 0


# --- the rebuild (nixos-rebuild itself, and the steward oneshot units) ----------------------


def run_data_job(path: Path, name: str) -> None:
    """Run the worker of a data unit to its end (``systemctl start`` waits for a oneshot)."""
    match = DATA_TEMPLATE.fullmatch(name)
    assert match is not None
    worker = load(path).get("data_worker")
    if worker is None:
        code, output = 1, "steward: no worker configured in the fake system\n"
    else:
        kind, instance = match.group(1), match.group(2)
        argv = ["restore", instance, "--foreign"] if kind == "restore-foreign" else [kind, instance]
        done = subprocess.run(
            [*worker["argv"], *argv], env=worker["env"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False,
        )  # fmt: skip
        code, output = done.returncode, done.stdout
    with locked(path) as state:
        for line in output.splitlines():
            append_journal(state, name, line)
        unit = state["units"][name]
        unit["ExecMainStatus"] = code
        if code == 0:
            set_active(state, name, "inactive", result="success")
            _systemd(state, name, f"Finished {unit['Description']}.")
        else:
            set_active(state, name, "failed", result="exit-code")
            _systemd(state, name, f"{name}: Main process exited, code=exited, status={code}", 5)
            _systemd(state, name, f"Failed to start {unit['Description']}.", 3)


def spawn_worker(path: Path, unit: str) -> None:
    """Run the unit's rebuild in a detached process, as systemd would run the oneshot."""
    env = dict(os.environ, **{STATE_ENV: str(path)})
    subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "rebuild-worker", unit],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        env=env,
    )


def rebuild_unit(path: Path, name: str) -> bool:
    """The body of a steward oneshot unit: rebuild, writing its journal, then finish the unit."""

    def emit(line: str) -> None:
        with locked(path) as state:
            append_journal(state, name, line)

    action, target = steward_action(name) or ("switch", None)
    try:
        ok = run_rebuild(
            path,
            "switch",
            upgrade=action == "upgrade",
            rollback=action == "rollback",
            flake="/etc/nixos#" if action != "rollback" else None,
            emit=emit,
            target=target,
        )
    except ToolError as exc:
        emit(exc.message)
        ok = False
    with locked(path) as state:
        unit = state["units"][name]
        description = unit["Description"]
        if ok:
            unit["ExecMainStatus"] = 0
            set_active(state, name, "inactive", result="success")
            _systemd(state, name, f"{name}: Deactivated successfully.")
            _systemd(state, name, f"Finished {description}.")
        else:
            unit["ExecMainStatus"] = 1
            set_active(state, name, "failed", result="exit-code")
            _systemd(state, name, f"{name}: Main process exited, code=exited, status=1/FAILURE", 5)
            _systemd(state, name, f"{name}: Failed with result 'exit-code'.", 4)
            _systemd(state, name, f"Failed to start {description}.", 3)
    return ok


def _wait_while_held(path: Path, limit: float = 60.0) -> None:
    """A test holds the build phase (FakeSystem.hold_rebuild) to see it from the bot's side
    however slow the machine; a forgotten hold ends after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with locked(path) as state:
            if not state["failures"].get("rebuild_held"):
                return
        time.sleep(0.02)


def run_rebuild(
    path: Path,
    action: str,
    *,
    upgrade: bool,
    rollback: bool,
    flake: str | None,
    emit: Callable[[str], None],
    target: int | None = None,
) -> bool:
    """What ``nixos-rebuild ACTION`` prints and does; False on a (injected) build failure."""
    with locked(path) as state:
        delay = float(state["failures"]["rebuild_delay"])
        failure = _take(state["failures"], "rebuild")
        user = state["admin_user"]
        staged: State = state["staged"]
    if rollback:
        return _rollback(path, action, delay, user, emit, target)
    if upgrade and not flake:
        emit("unpacking channels...")
    emit("building the system configuration...")
    time.sleep(delay)
    _wait_while_held(path)
    with locked(path) as state:
        previous = current_generation(state)
        number = max(g["generation"] for g in state["generations"]) + 1
        version = staged.get("nixos_version") or previous["nixosVersion"]
        if upgrade and not staged.get("nixos_version"):
            stamp = _dt(now_us()).strftime("%Y%m%d")
            version = (
                f"{previous['nixosVersion'].split('.')[0]}.{stamp}.{nix_hash(str(number))[:7]}"
            )
        host = state["hostname"]
    drv_hash, etc_hash = nix_hash(f"drv-{number}"), nix_hash(f"etc-{number}")
    drv = f"/nix/store/{drv_hash}-nixos-system-{host}-{version}.drv"
    emit("these 2 derivations will be built:")
    emit(f"  /nix/store/{etc_hash}-etc.drv")
    emit(f"  {drv}")
    emit(f"building '/nix/store/{etc_hash}-etc.drv'...")
    time.sleep(delay)
    emit(f"building '{drv}'...")
    if failure is not None:
        log = failure.splitlines() or [""]
        emit(f"error: builder for '{drv}' failed with exit code 1;")
        emit(f"       last {len(log)} log lines:")
        for line in log:
            emit(f"       > {line}")
        emit(f"       For full logs, run 'nix log {drv}'.")
        return False
    if action == "build":
        _build_result(path, version, flake)
    if action in {"build", "dry-build", "dry-activate"}:
        return True
    with locked(path) as state:
        staged = state["staged"]
        state["staged"] = {}
        add_generation(
            state,
            nixos_version=version,
            kernel=staged.get("kernel"),
            packages=staged.get("packages"),
            current=False,
        )
        if action in {"switch", "boot"}:
            make_current(state, number, activate=False)
    if action in {"switch", "test"}:
        time.sleep(delay)
        _activate(path, number, user, staged.get("new_units") or [], emit)
    return True


def _build_result(path: Path, version: str, flake: str | None) -> None:
    """``nixos-rebuild build`` leaves ``./result``, a link to the built system. With a flake
    whose lock is recreated, the staged packages are what it would bring."""
    with locked(path) as state:
        previous = current_generation(state)
        staged = state["staged"]
        packages = {k: list(v) for k, v in previous["packages"].items()}
        if flake is not None:
            packages.update({k: list(v) for k, v in staged.get("packages", {}).items()})
        candidate: State = dict(previous, nixosVersion=version, packages=packages, current=False)
        candidate["storePath"] = f"/nix/store/{nix_hash('build-' + version)}-nixos-system-{version}"
        state.setdefault("builds", {})[candidate["storePath"]] = candidate
    result = Path.cwd() / "result"
    with contextlib.suppress(FileNotFoundError):
        result.unlink()
    os.symlink(candidate["storePath"], result)


def _activate(
    path: Path, number: int, user: str, new_units: list[str], emit: Callable[[str], None]
) -> None:
    emit("activating the configuration...")
    emit("setting up /etc...")
    emit(f"reloading user units for {user}...")
    emit("restarting sysinit-reactivation.target")
    with locked(path) as state:
        generation = generation_by_number(state, number)
        if generation is not None:
            state["current_system"] = {"generation": number, "kernel": generation["kernelVersion"]}
        for name in new_units:
            if name not in state["units"]:
                add_unit(state, name)
        sync_links(state)
    if new_units:
        emit(f"the following new units were started: {', '.join(new_units)}")


def _rollback(  # noqa: PLR0917
    path: Path,
    action: str,
    delay: float,
    user: str,
    emit: Callable[[str], None],
    target: int | None = None,
) -> bool:
    with locked(path) as state:
        current = current_generation(state)["generation"]
        if target is not None:
            if generation_by_number(state, target) is None:
                raise ToolError(1, f"error: generation {target} does not exist")
        else:
            older = [g["generation"] for g in state["generations"] if g["generation"] < current]
            if not older:
                raise ToolError(
                    1, f"error: no generation older than the current ({current}) exists"
                )
            target = max(older)
        make_current(state, target, activate=False)
    emit(f"switching profile from version {current} to {target}")
    if action in {"switch", "test"}:
        time.sleep(delay)
        _activate(path, target, user, [], emit)
    return True


def worker_main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return 0 if rebuild_unit(state_path(), argv[0]) else 1


# --- nixos-rebuild ---------------------------------------------------------------------------


def nixos_rebuild(argv: Sequence[str]) -> int:
    path = state_path()
    record_call(path, "nixos-rebuild", argv)
    action = None
    flake = None
    upgrade = rollback = as_json = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in {
            "switch",
            "boot",
            "test",
            "build",
            "dry-build",
            "dry-activate",
            "list-generations",
        }:
            action = arg
        elif arg == "--flake":
            flake = args.pop(0) if args else ""
        elif arg.startswith("--flake="):
            flake = arg.split("=", 1)[1]
        elif arg in {"--upgrade", "--upgrade-all"}:
            upgrade = True
        elif arg == "--rollback":
            rollback = True
        elif arg == "--json":
            as_json = True
        elif arg in {"--show-trace", "-L", "--print-build-logs", "--fast", "--no-build-nix", "-v",
                     "--recreate-lock-file", "--no-write-lock-file", "--refresh"}:  # fmt: skip
            pass
        elif arg == "--option":
            del args[:2]
        else:
            raise ToolError(1, f"{sys.argv[0]}: unknown option `{arg}'")
    if action is None:
        raise ToolError(
            1,
            "Usage: nixos-rebuild [--verbose] [--show-trace] [--flake REF] "
            "{switch|boot|test|build|dry-build|dry-activate|list-generations} [--json]",
        )
    if action == "list-generations":
        _list_generations(load(path), as_json)
        return 0
    ok = run_rebuild(path, action, upgrade=upgrade, rollback=rollback, flake=flake, emit=_err)
    return 0 if ok else 1


GENERATION_KEYS = (
    "generation",
    "date",
    "nixosVersion",
    "kernelVersion",
    "configurationRevision",
    "specialisations",
    "current",
)


def _list_generations(state: State, as_json: bool) -> None:
    gens = sorted(state["generations"], key=lambda g: -g["generation"])
    if as_json:
        _out(json.dumps([{k: g[k] for k in GENERATION_KEYS} for g in gens], indent=2) + "\n")
        return
    rows = [
        (
            "Generation",
            "Build-date",
            "NixOS version",
            "Kernel",
            "Configuration Revision",
            "Specialisation",
        )
    ]
    for g in gens:
        label = f"{g['generation']} current" if g["current"] else str(g["generation"])
        rows.append(
            (
                label,
                g["date"],
                g["nixosVersion"],
                g["kernelVersion"],
                g["configurationRevision"],
                " ".join(g["specialisations"]) or "*",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    _out(
        "".join(
            "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n" for r in rows
        )
    )


# --- nix -------------------------------------------------------------------------------------


def nix(argv: Sequence[str]) -> int:
    path = state_path()
    record_call(path, "nix", argv)
    args: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in {"--extra-experimental-features", "--experimental-features", "--flake"}:
            rest.pop(0)
        elif arg == "--option":
            del rest[:2]
        elif arg == "--version":
            _out("nix (Nix) 2.24.10\n")
            return 0
        elif arg.startswith("-") and arg not in {"--no-write-lock-file"}:
            continue
        else:
            args.append(arg)
    if args[:2] == ["store", "diff-closures"] and len(args) == 4:
        return _diff_closures(load(path), args[2], args[3])
    if args[:2] == ["flake", "update"]:
        return _flake_update(path, args[2:])
    raise ToolError(1, f"error: '{' '.join(args[:2])}' is not a recognised command")


def _resolve(state: State, ref: str) -> State:
    number: int | None = None
    root = state.get("root")
    if root and ref.startswith(root.rstrip("/") + "/"):
        ref = ref[len(root.rstrip("/")) :]  # the fake tree's /run/current-system
    if os.path.islink(ref) and not ref.startswith(("/run/", "/nix/")):
        ref = os.readlink(ref)  # ./result
    built = state.get("builds", {}).get(ref.rstrip("/"))
    if built is not None:
        return dict(built)
    link = re.fullmatch(r"/nix/var/nix/profiles/system-(\d+)-link/?", ref)
    if link:
        number = int(link.group(1))
    elif ref.rstrip("/") == "/run/current-system" and state["current_system"]:
        number = state["current_system"]["generation"]
    elif ref.rstrip("/") == "/run/booted-system" and state["booted_system"]:
        number = state["booted_system"]["generation"]
    elif ref.rstrip("/") == "/nix/var/nix/profiles/system":
        number = current_generation(state)["generation"]
    else:
        matches: list[State] = [
            g for g in state["generations"] if g["storePath"] == ref.rstrip("/")
        ]
        if matches:
            return matches[0]
    generation = generation_by_number(state, number) if number is not None else None
    if generation is None:
        if ref.startswith("/nix/store/"):
            raise ToolError(1, f"error: path '{ref}' is not a valid store path")
        raise ToolError(1, f"error: getting status of '{ref}': No such file or directory")
    return generation


def _diff_closures(state: State, before_ref: str, after_ref: str) -> int:
    before = _resolve(state, before_ref)["packages"]
    after = _resolve(state, after_ref)["packages"]
    lines = []
    for name in sorted(set(before) | set(after)):
        old_version, old_size = before.get(name, [None, 0])
        new_version, new_size = after.get(name, [None, 0])
        removed = [] if old_version is None or old_version == new_version else [old_version]
        added = [] if new_version is None or old_version == new_version else [new_version]
        delta = int(new_size) - int(old_size)
        items = []
        if removed or added:
            items.append(f"{_versions(removed)} → {_versions(added)}")
        if abs(delta) >= 8 * 1024:
            colour = ANSI_RED if delta > 0 else ANSI_GREEN
            items.append(f"{colour}{delta / 1024:+.1f} KiB{ANSI_NORMAL}")
        if items:
            lines.append(f"{name}: {', '.join(items)}\n")
    _out("".join(lines))
    return 0


def _versions(versions: list[str]) -> str:
    if not versions:
        return "∅"
    return ", ".join(v or "ε" for v in versions)


def _flake_update(path: Path, inputs: list[str]) -> int:
    lines = []
    with locked(path) as state:
        unknown = [i for i in inputs if i not in state["flake_inputs"]]
        if unknown:
            raise ToolError(1, f"error: input '{unknown[0]}' does not exist in the flake")
        for name in sorted(inputs or state["flake_inputs"]):
            info = state["flake_inputs"][name]
            staged = state["staged"].get("flake_inputs", {}).get(name)
            if not staged:
                continue
            old = f"'github:{info['owner']}/{info['repo']}/{info['rev']}' ({info['date']})"
            info.update(staged)
            new = f"'github:{info['owner']}/{info['repo']}/{info['rev']}' ({info['date']})"
            lines += [f"• Updated input '{name}':", f"    {old}", f"  → {new}"]
        state["staged"].pop("flake_inputs", None)
    if lines:
        _err("warning: updating lock file '/etc/nixos/flake.lock':")
        for line in lines:
            _err(line)
    return 0


# --- journalctl ------------------------------------------------------------------------------

JOURNAL_SHORT = "u:n:o:fqbxeap:S:U:"
JOURNAL_LONG = [
    "unit=",
    "lines=",
    "output=",
    "follow",
    "no-pager",
    "since=",
    "until=",
    "boot",
    "quiet",
    "all",
    "pager-end",
    "catalog",
    "priority=",
    "utc",
    "no-tail",
    "no-hostname",
    "system",
    "reverse",
    "after-cursor=",
]
JOURNAL_FORMATS = {"short", "short-iso", "short-precise", "short-unix", "cat", "json", "with-unit"}


def parse_since(value: str, now: datetime) -> datetime:
    """The forms of systemd.time(7) that matter here, in UTC."""
    value = value.strip()
    words = {"now": now, "today": now.replace(hour=0, minute=0, second=0, microsecond=0)}
    words["yesterday"] = words["today"] - timedelta(days=1)
    if value in words:
        return words[value]
    if value.startswith("@"):
        return datetime.fromtimestamp(float(value[1:]), UTC)
    rel = re.fullmatch(r"([+-])\s*(\d+)\s*(s|sec|m|min|h|hour|hours|d|day|days)?( ago)?", value)
    if rel:
        seconds = int(rel.group(2)) * {
            "m": 60,
            "min": 60,
            "h": 3600,
            "hour": 3600,
            "hours": 3600,
            "d": 86400,
            "day": 86400,
            "days": 86400,
        }.get(rel.group(3) or "s", 1)
        return now + timedelta(seconds=seconds if rel.group(1) == "+" else -seconds)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(value.removesuffix(" UTC"), fmt).replace(tzinfo=UTC)
    raise ToolError(1, f"Failed to parse timestamp: {value}")


def format_entry(state: State, unit: str, entry: Mapping[str, Any], output: str) -> str:
    stamp = _dt(entry["ts"])
    prefix = f"{state['hostname']} {entry['ident']}[{entry['pid']}]: "
    if output == "cat":
        return f"{entry['message']}\n"
    if output == "json":
        fields = {
            "__CURSOR": f"s=fake;i={entry['cursor']:x}",
            "__REALTIME_TIMESTAMP": str(entry["ts"]),
            "_HOSTNAME": state["hostname"],
            "PRIORITY": str(entry["priority"]),
            "SYSLOG_IDENTIFIER": entry["ident"],
            "_PID": str(entry["pid"]),
            "MESSAGE": entry["message"],
        }
        if entry["ident"] == "systemd":
            fields.update({"_SYSTEMD_UNIT": "init.scope", "UNIT": unit})
        else:
            fields["_SYSTEMD_UNIT"] = unit
        return json.dumps(fields, ensure_ascii=False) + "\n"
    if output == "short-iso":
        when = stamp.strftime("%Y-%m-%dT%H:%M:%S%z")
    elif output == "short-precise":
        when = stamp.strftime("%b %d %H:%M:%S.%f")
    elif output == "short-unix":
        when = f"{entry['ts'] / 1_000_000:.6f}"
    else:
        when = stamp.strftime("%b %d %H:%M:%S")
    return f"{when} {prefix}{entry['message']}\n"


def cursor_number(value: str) -> int:
    match = re.fullmatch(r"s=fake;i=([0-9a-f]+)", value)
    if match is None:
        raise ToolError(1, "Failed to seek to cursor: Invalid argument")
    return int(match.group(1), 16)


def select_entries(state: State, units: list[str]) -> list[tuple[str, Mapping[str, Any]]]:
    names = units or list(state["journal"])
    found = [(u, e) for u in names for e in state["journal"].get(u, [])]
    return sorted(found, key=lambda pair: pair[1]["cursor"])


def journalctl(argv: Sequence[str]) -> int:  # noqa: PLR0912
    path = state_path()
    record_call(path, "journalctl", argv)
    opts, _ = _getopt("journalctl", argv, JOURNAL_SHORT, JOURNAL_LONG)
    units = [unit_name(u) for u in opts.get("-u", []) + opts.get("--unit", [])]
    output = (opts.get("-o", []) + opts.get("--output", []) or ["short"])[-1]
    if output not in JOURNAL_FORMATS:
        raise ToolError(1, f"Unknown output format '{output}'.")
    follow = "-f" in opts or "--follow" in opts
    lines_opt = opts.get("-n", []) + opts.get("--lines", [])
    limit: int | None = None
    if lines_opt:
        limit = None if lines_opt[-1] == "all" else int(lines_opt[-1].lstrip("+"))
    elif follow:
        limit = 10
    elif "-e" in opts or "--pager-end" in opts:
        limit = 1000
    state = load(path)
    now = datetime.now(UTC)
    entries = select_entries(state, units)
    for value in opts.get("--after-cursor", []):
        after = cursor_number(value)
        entries = [(u, e) for u, e in entries if e["cursor"] > after]
    for key, keep in (("--since", True), ("-S", True), ("--until", False), ("-U", False)):
        for value in opts.get(key, []):
            bound = int(parse_since(value, now).timestamp() * 1_000_000)
            entries = [(u, e) for u, e in entries if (e["ts"] >= bound) == keep]
    if "--reverse" in opts:
        entries.reverse()
    if limit is not None:
        entries = entries[-limit:] if limit else []
    quiet = "-q" in opts or "--quiet" in opts
    if not entries and not quiet and output not in {"json", "cat"} and not follow:
        _out("-- No entries --\n")
    _out("".join(format_entry(state, u, e, output) for u, e in entries))
    if not follow:
        return 0
    last = state["cursor"]
    signal.signal(signal.SIGTERM, _on_term)
    while True:
        time.sleep(0.05)
        try:
            state = load(path)
        except (OSError, ValueError):
            continue
        fresh = [(u, e) for u, e in select_entries(state, units) if e["cursor"] > last]
        if fresh:
            _out("".join(format_entry(state, u, e, output) for u, e in fresh))
        last = state["cursor"]


# --- entry point -----------------------------------------------------------------------------

TOOLS: dict[str, Callable[[Sequence[str]], int]] = {
    "systemctl": systemctl,
    "journalctl": journalctl,
    "nixos-rebuild": nixos_rebuild,
    "nix": nix,
}


def main(tool: str, argv: Sequence[str]) -> int:
    """Run ``tool``; used by the executables in this folder."""
    try:
        return TOOLS[tool](argv)
    except ToolError as exc:
        if exc.message:
            _err(exc.message)
        return exc.code
    except (BrokenPipeError, KeyboardInterrupt):
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


def _on_term(_sig: int, _frame: FrameType | None) -> None:
    sys.exit(0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["rebuild-worker"]:
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit(main(Path(sys.argv[1]).name, sys.argv[2:]))
