"""The CPU allocator setting (art_smoothing.runtime): counted in page faults, not timed.

Each check runs in a fresh interpreter, since the setting is process-wide and cannot be undone.
A loop allocates, fills and frees a 40 MB tensor (above glibc's largest dynamic mmap threshold, 32 MiB):
under glibc's defaults every iteration maps fresh pages and faults on each of its ~9800 pages; with the
setting in force the buffer is reused from the heap and, once the heap has grown to hold it (warm-up), later
iterations fault (almost) never."""

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource, sys, torch
from art_smoothing.runtime import allocator_tuned, tune_cpu_allocator

def faults(iterations=10):
    for _ in range(3):  # warm-up: the heap grows to hold the buffer (faults in any setting)
        torch.empty(10_000_000).fill_(1.0)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(iterations):
        torch.empty(10_000_000).fill_(1.0)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / iterations

before = faults()
if sys.argv[1] == "estimator":
    from art_smoothing import SmoothedClassifier
    from art_smoothing.models import DigitsCNN, make_classifier
    from art_smoothing.noise import GaussianNoise
    SmoothedClassifier(make_classifier(DigitsCNN(width=4), (1, 8, 8), 10), noise=GaussianNoise(0.25))
    applied = allocator_tuned()
else:
    applied = tune_cpu_allocator()
print(json.dumps({"before": before, "after": faults(), "applied": applied, "again": tune_cpu_allocator()}))
"""

def probe(mode, **env):
    # THP_MEM_ALLOC_ENABLE makes PyTorch ask for 2 MiB pages, which changes what a fault counts
    environment = {k: v for k, v in os.environ.items() if k not in ("ART_SMOOTHING_MALLOC", "THP_MEM_ALLOC_ENABLE")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=environment, capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize("mode", ["function", "estimator"])
def test_allocator_setting_reuses_large_buffers(mode):
    r = probe(mode)
    if not GLIBC:  # elsewhere the function must decline, and change nothing
        assert r["applied"] is False and r["again"] is False
        return
    assert r["applied"] is True and r["again"] is True
    # glibc's defaults: every iteration maps the buffer afresh. With 4 KiB pages that is ~9 800 faults; with
    # transparent huge pages set to "always" on the host each fault covers 2 MiB, so only count on >= 1 per MiB.
    assert r["before"] >= 40_000_000 / (2 << 20)
    # in force: reused heap memory, under 1% of the faults remain
    assert r["after"] < 0.01 * r["before"]


@pytest.mark.parametrize("value", ["default", "off", "0"])
def test_environment_variable_keeps_glibc_defaults(value):
    r = probe("estimator", ART_SMOOTHING_MALLOC=value)
    assert r["applied"] is False and r["again"] is False
    if GLIBC:
        assert r["after"] > 0.5 * r["before"] > 0  # still a fresh mapping on every iteration
