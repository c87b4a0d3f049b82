"""What the end-to-end tests share: the testbed import (netns-testbed/ on the
path), check() that prints and records each assertion, weir() that runs the
real CLI, finish() that prints the closing 'N passed, N failed' line and
gives the exit code, and BACKEND (the packet filter this run's `auto` picks,
testbed.backend_in_use()) with only_in_backend() for the tests that look at
weir's rules."""
import os
import subprocess
import sys

SOURCE_DIR = os.environ.get("WEIR_SOURCE_DIR", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
TB_DIR = os.path.join(SOURCE_DIR, "netns-testbed")
sys.path.insert(0, TB_DIR)
import testbed  # noqa: E402,F401
from testbed import Testbed, backend_in_use, other_backend  # noqa: E402,F401  (re-exported)

BACKEND = backend_in_use()

FAILURES = []
_passed = [0]


def check(desc, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {desc}" + ("" if cond else f"\n       {detail}"), flush=True)
    if cond:
        _passed[0] += 1
    else:
        FAILURES.append(desc)


def weir_argv(*args):
    return [os.path.join(testbed.bin_dir(), "weir")] + [str(a) for a in args]


def weir(*args, timeout=30):
    return subprocess.run(weir_argv(*args), capture_output=True, text=True, timeout=timeout)


def only_in_backend(tb, pod, what, backend=None):
    """Checks that weir's rules are in `backend` (default: the one in use) and
    nothing of weir's is in the other."""
    backend = backend or BACKEND
    check(f"{what}: weir's rules are in the {backend} backend", tb.weir_installed(pod, backend),
          tb.weir_rules(pod, backend))
    left = tb.weir_leftovers(pod, other_backend(backend))
    check(f"{what}: nothing of weir's in the {other_backend(backend)} backend", left == "", left)


def finish():
    """Prints the summary line and returns the process exit code."""
    print(f"{_passed[0]} passed, {len(FAILURES)} failed")
    if FAILURES:
        print(f"failed: {FAILURES}")
        return 1
    return 0
