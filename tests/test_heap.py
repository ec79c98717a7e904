"""The allocator settings for big bodies (proxy/server/heap.py): freed megabytes are reused, not
faulted in again from the kernel on every request. Counted in page faults, never in time."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from proxy.server import heap

# What the proxy does with a 4 MiB body, in miniature: the read buffer joined in two parts, the body
# joined from them, a block decoded as text, all freed; twenty times over. Prints the minor page
# faults those twenty cost.
_FAULTS_PER_BODY = """
import resource, sys
if sys.argv[1] == "tuned":
    from proxy.server.heap import keep_freed_memory
    assert keep_freed_memory()
reads = [bytes(65536) for _ in range(64)]
def one_body():
    halves = [b"".join(reads[:32]), b"".join(reads[32:])]
    body = b"".join(halves)
    text = str(body[:1 << 20], "latin-1")
    del halves, body, text
for _ in range(3):
    one_body()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    one_body()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

PAGES_PER_BODY = 4 * 1024 * 1024 // 4096


def _faults(mode: str, **env: str) -> int:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", _FAULTS_PER_BODY, mode], capture_output=True, text=True,
                            env={**environment, **env}, check=True, timeout=60)
    return int(result.stdout)


glibc_only = pytest.mark.skipif(heap._glibc_mallopt() is None, reason="glibc's mallopt is not available")


@glibc_only
def test_tuned_allocator_reuses_freed_bodies_instead_of_faulting_them_in():
    untuned, tuned = _faults("default"), _faults("tuned")
    assert untuned >= 20 * PAGES_PER_BODY, untuned  # the default: fresh pages for every body
    assert tuned < PAGES_PER_BODY, tuned  # tuned: the first body's pages serve all twenty


@glibc_only
def test_a_users_own_malloc_settings_are_kept(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert heap.keep_freed_memory() is False


def test_no_glibc_changes_nothing(monkeypatch):
    monkeypatch.setattr(heap, "_glibc_mallopt", lambda: None)
    assert heap.keep_freed_memory() is False
