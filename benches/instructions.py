#!/usr/bin/env python3
"""Both deterministic tables of benches/README.md, regenerated in one go (issue 26).

1. Instructions per request: `benches/per_request.rs` (release) under
   `valgrind --tool=callgrind` at 10,000 and 30,000 requests of each variant; the
   difference divided by 20,000 cancels start-up. Shown over `bare`, less one SHA-256 of the
   key (valgrind runs SHA-256 in software, so a ratio to it would flatter every row).
   Then the rate-limit layer alone against tower_governor, headers off, each over
   `bare_with_identity` (the same request, principal in place).
   Only `drive` (the request loop) is counted: set-up outside it, such as quanta's clock
   calibration, takes a different number of instructions in every process.
2. Heap allocations per request: `cargo test --release --test allocations`, its table.

Usage: python3 benches/instructions.py   (needs valgrind; about 3 minutes on 2 cores)
"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL, LARGE = 10_000, 30_000

# (variant, label, subtract one SHA-256, target over bare less SHA-256: a number, or
# "auth + N"). Targets: issue 41 §3, restated from the floors (1.5 x `floor/auth` and
# `floor/reject`).
ROWS = [
    ("floor_auth", "`floor/auth` (by hand, `http` types only)", True, None),
    ("floor_reject", "`floor/reject` (by hand, `http` types only)", False, None),
    ("auth", "auth, valid key", True, 2200),
    ("auth_malformed", "malformed key refused", False, 2370),
    ("auth_scope", "auth + scope", True, "auth + 200"),
    ("auth_scope_rate_limit", "auth + scope + rate limit (100/min), headers on", True, 4000),
    ("auth_scope_rate_limit_large_quota", "the same with 1,000,000/hour", True, None),
    ("auth_scope_inline", "auth, the scope checked in the handler (no scope layer)", True, None),
    ("auth_scope_rate_limit_inline",
     "auth, scope + governor + both headers in the handler (a fused path's floor)", True, None),
    ("auth_session", "session (cookie) instead of a key", True, "auth + 300"),
    ("auth_spend_cap", "auth + spend cap, no header", True, "auth + 1000"),
    ("auth_spend_cap_headers", "auth + spend cap, `Spend-Cap` header", True, None),
]


def binary():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "per_request", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") \
                and message["target"]["name"] == "per_request":
            return message["executable"]
    sys.exit("per_request was not built")


def instructions(exe, variant, n):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=per_request::drive*",
             f"--callgrind-out-file={out}", exe, variant, str(n)],
            check=True, capture_output=True,
        )
        with open(out) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    sys.exit(f"no total for {variant}")


def per_request(exe, variant):
    return (instructions(exe, variant, LARGE) - instructions(exe, variant, SMALL)) / (LARGE - SMALL)


def main():
    exe = binary()
    measured = {v: per_request(exe, v) for v in ["bare", "sha256"] + [r[0] for r in ROWS]}
    bare, sha = measured["bare"], measured["sha256"]
    auth = None
    print(f"Instructions per request (callgrind; `bare` {bare:,.0f}, one SHA-256 of the key {sha:,.0f}):\n")
    print("| path | instructions over `bare` | less one SHA-256 | target | |")
    print("|---|---|---|---|---|")
    for variant, label, hashes, target in ROWS:
        over = measured[variant] - bare
        less = over - sha if hashes else over
        if variant == "auth":
            auth = less
        relative = isinstance(target, str)
        goal = auth + int(target.split("+")[1]) if relative else target
        verdict = "" if goal is None else ("met" if less <= goal else "missed")
        shown = "" if goal is None else (f"≤ {target} ({goal:,.0f})" if relative else f"≤ {goal:,.0f}")
        print(f"| {label} | {over:,.0f} | **{less:,.0f}** | {shown} | {verdict} |")
    print()
    base = per_request(exe, "bare_with_identity")
    ours = per_request(exe, "rate_limit_no_headers") - base
    peer = per_request(exe, "peer_tower_governor") - base
    verdict = "met" if ours <= peer else "missed"
    print(f"Rate limit alone, headers off, over `bare_with_identity` ({base:,.0f}):\n")
    print("| path | instructions | ratio | target | |")
    print("|---|---|---|---|---|")
    print(f"| `RateLimits` layer | {ours:,.0f} | **{ours / peer:.2f}** | ≤ 1.00 | {verdict} |")
    print(f"| tower_governor (keyed by `Authorization`) | {peer:,.0f} | 1.00 | | |")
    print()
    real = per_request(exe, "bare_realistic")
    one = per_request(exe, "auth_realistic") - real - sha
    two = per_request(exe, "auth_realistic_forg_sources") - real - sha
    print(f"A request with 13 headers (`bare_realistic` {real:,.0f}), over it less SHA-256:\n")
    print("| path | instructions |")
    print("|---|---|")
    print(f"| auth, `Authorization: Bearer` only | {one:,.0f} |")
    print(f"| auth, FORG's two sources (`X-ForgeOS-API-Key` too) | {two:,.0f} (+{two - one:,.0f}) |")
    print()
    tests = subprocess.run(
        ["cargo", "test", "--release", "--test", "allocations", "--", "--nocapture"],
        cwd=ROOT, capture_output=True, text=True,
    )
    table = [l for l in tests.stdout.splitlines() if l.startswith("|")]
    print("Heap allocations per request (`tests/allocations.rs`, counting allocator):\n")
    print("\n".join(table))
    if tests.returncode != 0:
        print("\n(the allocation test failed:)\n" + tests.stdout[-2000:] + tests.stderr[-2000:])


if __name__ == "__main__":
    main()
