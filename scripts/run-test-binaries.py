#!/usr/bin/env python3
"""Runs a workspace's built test binaries, several at a time.

    scripts/run-test-binaries.py [--jobs J] ARTIFACTS.json [-- TEST-ARGS...]

ARTIFACTS.json is what `cargo test --no-run --message-format=json` printed.
Each test binary runs as `cargo test` would run it (in its package's
directory, with CARGO_MANIFEST_DIR set), J at a time (default 2), the
slowest first. Most of our test binaries wait on daemons and the bucket
rather than compute, so on two cores two of them at a time finish in about
half the wall time of cargo's one at a time.

Each binary's output is printed whole when it ends, so outputs never
interleave. Exits non-zero if any binary failed, after all have run (like
`cargo test --no-fail-fast`), and names the failures again at the end.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Test binaries that take longest (measured on two cores), started first so
# that the tail of the run is short ones. A binary not listed here runs after
# these, in name order; the list only orders, it never selects.
SLOWEST_FIRST = [
    "crash_resume",
    "in_process",
    "attacks",
    "gpt_training",
    "hostile",
    "leases",
    "cross_backend_smoke",
    "faults",
    "smoke",
    "s3",
    "discovery_ui",
    "ui",
]


# Test binaries whose tests mostly wait (on leases, polls and replies of
# daemons running in the same process) rather than compute, with how many
# of their tests run at once; the rest run as many at a time as there are
# cores, libtest's default. in_process: 36 tests, about 25 s of CPU in all;
# two at a time they took 115 s, six at a time 40-56 s on two cores.
TEST_THREADS = {
    "in_process": 6,
}


def test_binaries(artifacts_path):
    """(name, package dir, executable) of every test binary in cargo's JSON."""
    binaries = []
    seen = set()
    with open(artifacts_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if message.get("reason") != "compiler-artifact":
                continue
            executable = message.get("executable")
            if not executable or not message.get("profile", {}).get("test"):
                continue
            if executable in seen:
                continue
            seen.add(executable)
            target = message["target"]
            kind = target["kind"][0]
            name = target["name"]
            label = name if kind == "test" else f"{name} ({kind})"
            package_dir = os.path.dirname(message["manifest_path"])
            binaries.append((label, name, package_dir, executable))

    def order(binary):
        _, name, _, _ = binary
        rank = SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)
        return (rank, binary[0])

    return sorted(binaries, key=order)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("artifacts")
    parser.add_argument("test_args", nargs="*")
    args = parser.parse_args()

    binaries = test_binaries(args.artifacts)
    if not binaries:
        print(f"no test binaries in {args.artifacts}", file=sys.stderr)
        return 1
    print_lock = threading.Lock()
    failures = []
    started = time.monotonic()

    def run(binary):
        label, name, package_dir, executable = binary
        env = dict(os.environ, CARGO_MANIFEST_DIR=package_dir)
        if name in TEST_THREADS and "RUST_TEST_THREADS" not in os.environ:
            env["RUST_TEST_THREADS"] = str(TEST_THREADS[name])
        begun = time.monotonic()
        with tempfile.TemporaryFile() as output:
            child = subprocess.Popen(
                [executable, *args.test_args],
                cwd=package_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            # wait4 rather than wait: the CPU time of the binary and of the
            # daemons it started and waited for, which says what a test costs
            # the machine beside its wall time.
            _, wait_status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(wait_status)
            status = child.returncode
            output.seek(0)
            text = output.read().decode("utf-8", "replace")
        seconds = time.monotonic() - begun
        cpu = usage.ru_utime + usage.ru_stime
        verdict = "ok" if status == 0 else f"FAILED (exit status {status})"
        with print_lock:
            print(f"\n──── {label}: {verdict} in {seconds:.1f}s, {cpu:.1f}s of CPU ({executable})")
            sys.stdout.write(text)
            sys.stdout.flush()
            if status != 0:
                failures.append(label)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(run, binaries))

    total = time.monotonic() - started
    print(f"\n{len(binaries)} test binaries in {total:.1f}s, {len(failures)} failed")
    for label in failures:
        print(f"  failed: {label}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
