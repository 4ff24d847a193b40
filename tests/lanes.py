"""Run the test lanes side by side and print one screen of results.

`make test` calls this after lint, the type check and the docs:

    python -m tests.lanes --python py311=.venv/bin/python --python py312=... [--jobs 4]

A lane is one pytest run: an interpreter (hence a Django version), a database,
and the tests it runs. Lanes share no state, so they may run at once: each has
its own CQ_TEST_SUFFIX, which gives it its own PostgreSQL database, SQLite file
and Redis key prefix (tests/settings.py). The suite mostly waits on worker
processes, so four lanes on two cores take little longer than the slowest one.

Each lane writes its output to .lanes/<name>.log and its results to
.lanes/<name>.xml; a failed lane's log is printed at the end. A lane running
longer than --lane-timeout is stopped with its whole process group (pytest's
per-test timeout normally fails a hung test long before that).
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / ".lanes"
# The unit lane must not need Redis: it runs with Redis unreachable.
NO_REDIS = "redis://127.0.0.1:1"
CONTRACT = "tests/integration/test_channels_redis_contract.py"
# How many of the slowest tests the summary lists.
SLOWEST = 15


@dataclass
class Lane:
    name: str
    python: str  # a key of --python
    db: str  # "postgres" or "sqlite"
    paths: list = field(default_factory=list)  # none: the whole suite
    env: dict = field(default_factory=dict)
    markers: str = ""  # a pytest -m expression: which of its tests it runs
    process: subprocess.Popen | None = None
    started: float = 0.0
    elapsed: float = 0.0
    returncode: int | None = None

    @property
    def log(self):
        return OUTPUT / f"{self.name}.log"

    @property
    def xml(self):
        return OUTPUT / f"{self.name}.xml"


# Why these lanes, and where the rest of the matrix runs: README.md, "Running
# the tests". The heavy tests (many processes, thousands of tasks, a browser,
# the benches) load the same code harder rather than other code: they run once
# per database, in the Python 3.11 lanes. Slowest first, so that they start at once.
LANES = [
    Lane("py3.11-django5.2-postgres", "py311", "postgres"),
    Lane("py3.12-django6-postgres", "py312", "postgres", markers="not heavy"),
    Lane("py3.11-django5.2-sqlite", "py311", "sqlite"),
    Lane("py3.13-django6-sqlite", "py313", "sqlite", markers="not heavy"),
    Lane("unit-without-redis", "py311", "sqlite", ["tests/unit"], {"CQ_TEST_REDIS": NO_REDIS}),
    Lane("channels-redis-oldest", "contract-oldest", "sqlite", [CONTRACT]),
    Lane("channels-redis-newest", "contract-newest", "sqlite", [CONTRACT]),
]

# The lanes that run the suite (all of it or all but the heavy tests), not one part.
SUITES = [lane for lane in LANES if not lane.paths]


def start(lane, python, pytest_args):
    OUTPUT.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "CQ_TEST_DB": lane.db,
        # Unique per lane: its own databases and Redis keys, and the ports of
        # the servers its tests start (tests/faults.py, free_port).
        "CQ_TEST_SUFFIX": os.environ.get("CQ_TEST_SUFFIX", "") + lane.name.replace(".", ""),
        "CQ_TEST_PORT_BASE": str(20000 + 1000 * LANES.index(lane)),
        # Tests marked heavy take turns across lanes (tests/fixtures.py,
        # heavy_turn); each suite lane starts at another point of the suite
        # (tests/conftest.py), so that they reach the heavy ones at other times.
        "CQ_TEST_HEAVY_LOCK": str(OUTPUT / "heavy.lock"),
        "CQ_TEST_ROTATE": f"{SUITES.index(lane) if lane in SUITES else 0}/{len(SUITES)}",
        **lane.env,
    }
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += [f"--junitxml={lane.xml}", *pytest_args, *lane.paths]
    if lane.markers:
        command += ["-m", lane.markers]
    lane.xml.unlink(missing_ok=True)
    with open(lane.log, "w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        # A session of its own: a lane that overruns is stopped with its workers.
        lane.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    lane.started = time.monotonic()


def stop(lane):
    try:
        os.killpg(lane.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    lane.process.wait()


def results(lane):
    """The lane's JUnit XML test suite, or None."""
    try:
        suite = ElementTree.parse(lane.xml).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    return suite[0] if suite.tag == "testsuites" else suite


def counts(lane):
    """(passed, failed, errors, skipped) from the lane's JUnit XML, or None."""
    suite = results(lane)
    if suite is None:
        return None
    total, failed, errors, skipped = (
        int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")
    )
    return total - failed - errors - skipped, failed, errors, skipped


def versions(python):
    out = subprocess.run(
        [python, "-c", "import sys, django; print(sys.version.split()[0], django.get_version())"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def minutes(seconds):
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def run(lanes, pythons, jobs, lane_timeout, pytest_args):
    waiting = [lane for lane in lanes if lane.python in pythons]
    running, done = [], []
    began, reported = time.monotonic(), time.monotonic()
    while waiting or running:
        while waiting and len(running) < jobs:
            lane = waiting.pop(0)
            start(lane, pythons[lane.python], pytest_args)
            running.append(lane)
            print(f"lane {lane.name}: started", flush=True)
        time.sleep(0.5)
        now = time.monotonic()
        for lane in list(running):
            overran = now - lane.started > lane_timeout
            if overran:
                stop(lane)
                with open(lane.log, "a") as log:
                    log.write(f"\nlane stopped: still running after {lane_timeout:g}s\n")
            if lane.process.poll() is None:
                continue
            lane.elapsed, lane.returncode = now - lane.started, lane.process.returncode
            running.remove(lane)
            done.append(lane)
            verdict = "passed" if lane.returncode == 0 else f"FAILED (exit {lane.returncode})"
            print(f"lane {lane.name}: {verdict} in {minutes(lane.elapsed)}", flush=True)
        if running and now - reported > 60:
            reported = now
            names = ", ".join(f"{lane.name} {minutes(now - lane.started)}" for lane in running)
            print(f"  still running: {names}", flush=True)
    return done, time.monotonic() - began


def summary(lanes, pythons, skipped, wall):
    lines = ["", "=" * 100, f"{'lane':<28} {'python django':<15} {'result':<8}"]
    lines[-1] += f" {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8} {'time':>7}"
    for lane in lanes:
        result = "ok" if lane.returncode == 0 else "FAILED"
        numbers = counts(lane)
        cells = "".join(f" {n:>7}" for n in numbers[:3]) + f" {numbers[3]:>8}" if numbers else ""
        cells = cells or f" {'(no results: see its log)':>31}"
        row = f"{lane.name:<28} {versions(pythons[lane.python]):<15} {result:<8}{cells}"
        scope = f"  -m '{lane.markers}'" if lane.markers else ""
        lines.append(f"{row} {minutes(lane.elapsed):>7}{scope}")
    for lane in skipped:
        lines.append(f"{lane.name:<28} {'-':<15} skipped: no interpreter for {lane.python}")
    lines.append(f"wall time {minutes(wall)}; logs and JUnit XML in {OUTPUT.relative_to(ROOT)}/")
    lines += ["", f"the {SLOWEST} slowest tests (setup, call and teardown):"]
    lines += [f"{seconds:7.1f}s  {name}  [{lane}]" for seconds, name, lane in slowest(lanes)]
    lines.append("=" * 100)
    print("\n".join(lines), flush=True)


def slowest(lanes):
    found = []
    for lane in lanes:
        suite = results(lane)
        for case in suite.iter("testcase") if suite is not None else ():
            name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            found.append((float(case.get("time", 0)), name, lane.name))
    return sorted(found, reverse=True)[:SLOWEST]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", default=[], metavar="KEY=PATH")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("CQ_TEST_JOBS", "4")))
    parser.add_argument("--only", help="comma-separated lane names")
    parser.add_argument("--lane-timeout", type=float, default=40 * 60)
    parser.add_argument("pytest_args", nargs="*", help="passed to every lane's pytest")
    options = parser.parse_args(argv)
    pythons = dict(item.split("=", 1) for item in options.python)
    pythons = {key: path for key, path in pythons.items() if path and Path(path).exists()}
    lanes = LANES
    if options.only:
        lanes = [lane for lane in LANES if lane.name in options.only.split(",")]
    skipped = [lane for lane in lanes if lane.python not in pythons]
    done, wall = run(lanes, pythons, options.jobs, options.lane_timeout, options.pytest_args)
    failed = [lane for lane in done if lane.returncode != 0]
    for lane in failed:
        print(f"\n{'-' * 30} {lane.name}: the end of {lane.log.relative_to(ROOT)}", flush=True)
        print("".join(lane.log.read_text(errors="replace").splitlines(True)[-400:]), flush=True)
    summary(sorted(done, key=LANES.index), pythons, skipped, wall)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
