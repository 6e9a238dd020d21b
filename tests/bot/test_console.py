"""The console transport: `steward console --demo` on a pipe or a file, and plain rendering."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from datetime import UTC
from pathlib import Path

from bot.storage.database import Database
from bot.storage.stores import SqlAuditLog, SqlConfirmationStore, SqlJobStore, SqlKeyValue
from bot.transports.console import ConsoleTransport
from bot.transports.render import to_plain
from handlers.catalog import build_registry
from handlers.core.access import AccessPolicy
from handlers.core.context import Context, Deps
from handlers.core.engine import Engine
from handlers.core.job_host import EngineSettings
from handlers.core.messages import Reply
from handlers.core.registry import Registry
from handlers.core.spec import Role
from providers.demo import DemoServer

DONE_WHEN = "/help\n/status\n/restart nextcloud\npress 1\n/audit\n"
BUTTONS = "[1] Confirm  [2] Cancel"


def _env(tmp_path: Path, demo_delay: str | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEWARD_")}
    env["STEWARD_STATE_DIR"] = str(tmp_path / "state")
    if demo_delay is not None:
        env["STEWARD_DEMO_DELAY"] = demo_delay
    return env


def _console(
    tmp_path: Path, script: str, demo_delay: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", "--demo"],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path, demo_delay),
        timeout=30,
        check=False,
    )


def _at(pattern: str, text: str) -> int:
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return found.start()


# -- the "Done when" script -------------------------------------------------------------------


def test_the_done_when_script_shows_help_status_confirmation_outcome_and_audit_in_order(
    tmp_path: Path,
) -> None:
    done = _console(tmp_path, DONE_WHEN)
    out = done.stdout
    assert done.returncode == 0, done.stderr

    help_at = _at(r"^/restart <service> — ", out)
    load_at = _at(r"^\S+ load \d+\.\d+ ", out)
    failed_at = _at(r"^\S+ failed units", out)
    prompt_at = _at(r"^Confirm /restart nextcloud$", out)
    buttons_at = _at(rf"^{re.escape(BUTTONS)}$", out)
    outcome_at = _at(r"Nextcloud restarted and active\.$", out)
    toast_at = _at(r"^» Confirmed\.$", out)
    audit_at = _at(r"^Audit log", out)
    assert help_at < load_at < failed_at < prompt_at < buttons_at < outcome_at < audit_at
    assert toast_at < audit_at

    audit = out[audit_at:]
    assert re.search(r"^.* confirmed console:\S+ /restart nextcloud by ", audit, re.MULTILINE)
    assert re.search(r"^.* outcome console:\S+ /restart nextcloud → succeeded", audit, re.M)
    assert "<b>" not in out
    assert "Traceback" not in done.stderr


def test_the_console_works_when_stdin_is_a_file(tmp_path: Path) -> None:
    script = tmp_path / "script.txt"
    script.write_text(DONE_WHEN, encoding="utf-8")
    with script.open(encoding="utf-8") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "bot", "console", "--demo"],
            stdin=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(tmp_path, demo_delay="0.05"),
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert BUTTONS in done.stdout.splitlines()
    assert "Nextcloud restarted and active." in done.stdout
    assert "Audit log" in done.stdout


# -- the console's own answers ----------------------------------------------------------------


def test_the_console_explains_presses_hints_and_unknown_commands(tmp_path: Path) -> None:
    script = "press 1\nhello there\n/nosuch\n/restart nosuch\n/restart nextcloud\npress 9\n"
    done = _console(tmp_path, script, demo_delay="0.05")
    out = done.stdout
    assert done.returncode == 0, done.stderr
    blocks = [block for block in out.split("\n\n") if block.strip()]
    assert blocks[0] == "There is no button to press."
    assert blocks[1] == (
        "Commands start with / (see /help); press N presses a button; wait waits for jobs."
    )
    assert blocks[2] == "Unknown command /nosuch, see /help."
    assert blocks[3].startswith("❌ Unknown service nosuch. Known services: ")
    known = blocks[3].split("Known services: ", 1)[1].rstrip(".").split(", ")
    assert {"nextcloud", "vaultwarden", "forgejo"} <= set(known)
    assert blocks[-1] == "There is no button 9; choose 1 to 2."
    assert "restarted" not in out, "an invalid press must not confirm anything"


def test_a_press_that_is_not_a_number_names_the_valid_range(tmp_path: Path) -> None:
    done = _console(tmp_path, "/restart nextcloud\npress two\npress 2\n", demo_delay="0.05")
    assert done.returncode == 0, done.stderr
    assert "There is no button two; choose 1 to 2." in done.stdout
    assert "Cancelled by" in done.stdout
    assert "» Cancelled." in done.stdout


def test_end_of_input_after_a_confirmation_reports_the_outcome_and_exits_0(
    tmp_path: Path,
) -> None:
    done = _console(tmp_path, "/restart vaultwarden\npress 1\n", demo_delay="0.05")
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert _at(r"^» Confirmed\.$", out) < _at("^Restarting Vaultwarden: ", out)
    assert out.rstrip().endswith("(edited) 🟢 Vaultwarden restarted and active.")


def test_empty_input_exits_0_without_output(tmp_path: Path) -> None:
    done = _console(tmp_path, "")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


# -- waiting for jobs at end of input (in process, with a background command) -----------------


def _engine_with_slow_job(db: Database, out: io.StringIO, release: asyncio.Event) -> Engine:
    extra = Registry()

    @extra.command("slow", "A long job", role=Role.OPERATOR, changes=True, background=True)
    async def slow(ctx: Context) -> Reply:
        await ctx.progress.update("working on it")
        await release.wait()
        return Reply("<b>slow job done</b>")

    @slow.preview
    async def _preview(ctx: Context) -> str:
        return "Takes a while."

    registry = build_registry()
    registry.include(extra)
    server = DemoServer.create(step_seconds=0.0)
    deps = Deps(
        host=server.host,
        services=server.services,
        catalogue=server.catalogue,
        audit=SqlAuditLog(db),
        registry=registry,
        timezone=UTC,
        nixos=server.nixos,
        desired=server.desired,
        rebuilds=server.rebuilds,
        notes=SqlKeyValue(db),
    )
    console = ConsoleTransport(out=out, user="tester")
    return Engine(
        deps=deps,
        access=AccessPolicy.from_lists([], [], [], console_role=Role.ADMIN),
        confirmations=SqlConfirmationStore(db),
        jobs=SqlJobStore(db),
        outbox=console,
        settings=EngineSettings(progress_interval=0.0),
    )


async def test_end_of_input_waits_for_a_running_job_before_exiting(sqlite_db: Database) -> None:
    out = io.StringIO()
    release = asyncio.Event()
    engine = _engine_with_slow_job(sqlite_db, out, release)
    console = engine.outbox
    assert isinstance(console, ConsoleTransport)
    asyncio.get_running_loop().call_later(0.3, release.set)
    status = await console.run(engine, stdin=io.StringIO("/slow\npress 1\n"), wait=10)
    assert status == 0
    text = out.getvalue()
    assert text.index("» Confirmed.") < text.index("slow job done")
    assert "still running" not in text


async def test_end_of_input_gives_up_waiting_after_the_limit_and_still_exits_0(
    sqlite_db: Database,
) -> None:
    out = io.StringIO()
    release = asyncio.Event()
    engine = _engine_with_slow_job(sqlite_db, out, release)
    console = engine.outbox
    assert isinstance(console, ConsoleTransport)
    try:
        status = await console.run(engine, stdin=io.StringIO("/slow\npress 1\n"), wait=0.2)
        assert status == 0
        assert "Some jobs are still running after" in out.getvalue()
        assert "slow job done" not in out.getvalue()
    finally:
        release.set()
        assert await engine.wait_for_jobs(5)
    assert "slow job done" in out.getvalue()


# -- render.to_plain --------------------------------------------------------------------------


def test_to_plain_strips_the_reply_tags() -> None:
    text = "<b>Status</b> <i>ok</i> <code>nginx.service</code>\n<pre>line 1\nline 2</pre>"
    assert to_plain(text) == "Status ok nginx.service\nline 1\nline 2"


def test_to_plain_unescapes_entities_after_stripping_tags() -> None:
    assert to_plain("a &lt;b&gt; c &amp; &quot;d&quot; &#39;e&#39;") == "a <b> c & \"d\" 'e'"


def test_to_plain_shows_a_link_with_its_url() -> None:
    text = 'See <a href="https://example.org/x?a=1&amp;b=2">the <b>docs</b></a>.'
    assert to_plain(text) == "See the docs (https://example.org/x?a=1&b=2)."


def test_to_plain_keeps_angle_brackets_that_are_not_reply_tags() -> None:
    assert to_plain("usage: /restart <service> [N]") == "usage: /restart <service> [N]"


def test_run_with_no_transport_starts_the_console_on_the_demo_server(tmp_path: Path) -> None:
    # What `make run` does on a fresh clone.
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        input="/services\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path, "0.05"),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "starting the console on the demo server" in done.stderr
    assert "nextcloud" in done.stdout
    assert "jitsi failed" in done.stdout


def test_the_demo_enables_a_service_follows_the_rebuild_and_keeps_it(tmp_path: Path) -> None:
    done = _console(
        tmp_path, "/enable pleroma\npress 1\nwait\npress 1\n/services\n", demo_delay="0.2"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    preview = _at(r"services\.pleroma\.enable: false → true", out)
    progress = _at(r"^🔄 Enabling Pleroma$", out)
    building = _at(r"^🔨 Building the system configuration", out)
    offer = _at(r"^\(edited\) ✅ Enabling Pleroma: done in \d+ s\.$", out)
    generations = _at(r"^Generation 44 → 45\.$", out)
    keep_buttons = _at(r"^\[1\] Keep  \[2\] Roll back now$", out)
    kept = _at(r"^✅ Generation 45 is kept\.", out)
    listed = _at(r"^🟢 pleroma active$", out)
    assert preview < progress < building < offer < generations < keep_buttons < kept < listed


def test_the_demo_answers_the_provider_commands(tmp_path: Path) -> None:
    done = _console(tmp_path, "/server\n/volumes\n/dns\n/storage\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    server = _at(r"^🟢 steward-demo \(4711\) running$", out)
    volumes = _at(r"^💽 steward-data 50 GB, /data 71% full", out)
    dns = _at(r"^DNS of example\.org at the demo DNS provider$", out)
    missing = _at(r"^❌ example\.org MX 10 example\.org missing$", out)
    storage = _at(r"^🪣 steward-backups: ", out)
    assert server < volumes < dns < missing < storage


def test_the_demo_raises_an_alert_when_told_to_fill_a_disk(tmp_path: Path) -> None:
    done = _console(tmp_path, "/demo disk 92\n/alerts\n/demo disk 10\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    warned = _at(r"^⚠️ Warning: disk / is 92% full\.$", out)
    listed = _at(r"^⚠️ disk / is 92% full since ", out)
    recovered = _at(r"^✅ Recovered: disk / is 10% full \(it lasted \d+ s\)\.$", out)
    assert warned < listed < recovered


def test_the_demo_backs_up_and_restores_through_staging(tmp_path: Path) -> None:
    script = (
        "/backup vaultwarden\nwait\n/backups\n"
        "/restore vaultwarden latest\npress 1\nwait\n/schedule\n/report\n"
    )
    done = _console(tmp_path, script, demo_delay="0.01")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    backed_up = _at(r"^✅ Vaultwarden: snapshot [0-9a-f]{8}, 3 new", out)
    listed = _at(r"^• [0-9a-f]{8} \S+ \S+ vaultwarden \(manual", out)
    preview = _at(r"^Puts Vaultwarden's data back as it was at ", out)
    restored = _at(r"^\(edited\) ✅ Vaultwarden is restored from snapshot [0-9a-f]{8} ", out)
    safety = _at(r"^The data as it was just before is in snapshot [0-9a-f]{8}; /restore it", out)
    assert backed_up < listed < preview < restored < safety
    assert "♻️ Restoring Vaultwarden: " in out
    data = tmp_path / "state" / "demo-root" / "var" / "lib" / "bitwarden_rs"
    assert sorted(p.name for p in data.iterdir()) == ["config.json", "data.db", "uploads"]


def test_the_demo_alert_has_buttons_that_snooze_and_explain(tmp_path: Path) -> None:
    done = _console(tmp_path, "/demo disk 92\npress 3\npress 1\n/alerts\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    buttons = _at(r"^\[1\] Snooze 1h  \[2\] Mute 24h  \[3\] Details$", out)
    details = _at(r"^Level: ⚠️ warning$", out)
    snoozed = _at(r"^🔕 disk / is 92% full: no messages about it until ", out)
    listed = _at(r"^⚠️ disk / is 92% full since .*, quiet until ", out)
    assert buttons < details < snoozed < listed


def test_the_home_demo_shows_the_failing_disk_the_degraded_mirror_and_the_changed_address(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path) | {"STEWARD_DEMO": "home"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--demo"],
        input="/status\n/report\n", capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=30, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, done.stderr

    status_at = _at(r"^\S+ load \d+\.\d+ ", out)
    disk_at = _at(r"^⚠️ disk /dev/sdb \(ST4000VN008-2DR166\): SMART passed, 8 pending sectors", out)
    array_at = _at(r"^❌ RAID md0 is degraded: raid1 \[U_\]$", out)
    report_at = _at(r"^Daily report for ", out)
    assert status_at < disk_at < array_at < report_at
    assert out.count("RAID md0 is degraded") == 2
    assert out.count("8 pending sectors") == 2
    _at(r"^✅ UPS ups@localhost is on mains, battery 100%, ~42 min left$", out)
    _at(r"^⚠️ public address 203\.0\.113\.77, but the DNS says 203\.0\.113\.10: /dns fix$", out)
    assert "☁️ server" not in out  # one's own hardware: no cloud


def test_a_script_that_leaves_keep_unpressed_sees_the_change_rolled_back(tmp_path: Path) -> None:
    env = {**_env(tmp_path, "0.05"), "STEWARD_KEEP_MINUTES": "0.02"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--demo"],
        input="/enable pleroma\npress 1\nwait\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    offered = _at(r"^Generation 44 → 45\.$", out)
    back = _at(r"^Generation 45 → 44\.$", out)
    put_back = _at(r"^The desired state was put back as it was", out)
    assert offered < back < put_back


def test_the_issue_19_check_a_change_nobody_kept_stays_rejected_after_a_rebuild(
    tmp_path: Path,
) -> None:
    """Issue #19's "Done when": `/enable pleroma`, Confirm, no Keep; then `/rebuild` (as the
    script that left it unconfirmed, then confirmed and kept) leaves pleroma disabled."""
    env = {**_env(tmp_path, "0.05"), "STEWARD_KEEP_MINUTES": "0.05"}

    def console(script: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bot", "console", "--demo"], input=script,
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = console("/enable pleroma\npress 1\nwait\n/rebuild\n")
    _at(r"^The desired state was put back as it was", first)
    assert "pleroma off" in console("/services\n")
    second = console("/rebuild\npress 1\nwait\npress 1\n/services\n")
    _at(r"^Generation 44 → 45\.$", second)  # the rebuild ran, and was kept
    _at(r"^⚪ pleroma off \(pleroma\.service\)$", second)
    assert "🟢 pleroma active" not in second
