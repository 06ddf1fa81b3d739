#!/usr/bin/env python3
"""Issue 16's targets as one table, from one criterion run of `benches/layer.rs` and
`benches/axum_router.rs`: runs them (unless --no-run), reads the medians from criterion's
JSON (target/criterion/<id with "/" as "_">/new/estimates.json) and prints a Markdown table with
each figure, its ratio and met / missed. Timings are never test assertions.

    python3 benches/targets.py            # run the benches, then print the table
    python3 benches/targets.py --no-run   # the table from the last run
"""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"


def median(bench: str) -> float:
    """The median estimate of `bench` (e.g. `layer/auth`), in nanoseconds."""
    path = CRITERION / bench.replace("/", "_") / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def main() -> int:
    if "--no-run" not in sys.argv:
        subprocess.run(
            ["cargo", "bench", "--bench", "layer", "--bench", "axum_router", "--",
             "--warm-up-time", "1", "--measurement-time", "3"],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    sha = median("sha256/forg_live")
    bare = median("layer/bare")
    with_identity = median("layer/bare_with_identity")

    def over_sha(bench: str, base: float) -> float:
        return (median(bench) - base) / sha

    rows = [
        ("auth, valid key, hot store", "(layer/auth − layer/bare) / SHA-256",
         over_sha("layer/auth", bare), 2.5),
        ("malformed key, refused before hashing", "(layer/auth_malformed − bare) / SHA-256",
         over_sha("layer/auth_malformed", bare), 2.0),
        ("auth + scope", "(layer/auth_scope − bare) / SHA-256",
         over_sha("layer/auth_scope", bare), 3.0),
        ("auth + scope + rate limit (headers on)", "(layer/auth_scope_rate_limit − bare) / SHA-256",
         over_sha("layer/auth_scope_rate_limit", bare), 5.0),
        ("rate limit alone / tower_governor, headers on",
         "layer/rate_limit / peer/tower_governor_header_key_with_headers",
         median("layer/rate_limit") / median("peer/tower_governor_header_key_with_headers"), 0.7),
        ("rate limit alone / tower_governor, headers off",
         "layer/rate_limit_no_headers / peer/tower_governor_header_key",
         median("layer/rate_limit_no_headers") / median("peer/tower_governor_header_key"), 1.0),
        ("the same two, on the same input: headers on",
         "layer/rate_limit / peer_same_input/tower_governor_header_key_with_headers",
         median("layer/rate_limit")
         / median("peer_same_input/tower_governor_header_key_with_headers"), 0.7),
        ("the same two, on the same input: headers off",
         "layer/rate_limit_no_headers / peer_same_input/tower_governor_header_key",
         median("layer/rate_limit_no_headers") / median("peer_same_input/tower_governor_header_key"),
         1.0),
        ("session authentication over key authentication", "(layer/auth_session − layer/auth) / SHA-256",
         over_sha("layer/auth_session", median("layer/auth")), 1.0),
        ("usage layer (spend cap, in process)", "(layer/spend_cap − layer/bare_with_identity) / SHA-256",
         over_sha("layer/spend_cap", with_identity), 1.0),
        ("axum router, stack in one call / tower-only stack",
         "(axum/stack_one_call − axum/bare) / (layer/auth_scope_rate_limit − layer/bare)",
         (median("axum/stack_one_call") - median("axum/bare"))
         / (median("layer/auth_scope_rate_limit") - bare), 1.5),
    ]
    floors = [
        ("floor under auth (http types only)", "(floor/auth − layer/bare) / SHA-256",
         over_sha("floor/auth", bare)),
        ("floor under a rejection (http types only)", "(floor/reject − layer/bare) / SHA-256",
         over_sha("floor/reject", bare)),
    ]
    print(f"SHA-256 of a 42-byte key: {sha:.1f} ns; layer/bare {bare:.1f} ns\n")
    print("| target | measured as | ratio | goal | |")
    print("|---|---|---|---|---|")
    for name, formula, ratio, goal in rows:
        verdict = "met" if ratio <= goal else "missed"
        print(f"| {name} | {formula} | {ratio:.2f} | ≤ {goal} | {verdict} |")
    print("\n| floor | measured as | ratio |")
    print("|---|---|---|")
    for name, formula, ratio in floors:
        print(f"| {name} | {formula} | {ratio:.2f} |")
    print("\n| bench | median (ns) |")
    print("|---|---|")
    for path in sorted(CRITERION.glob("*/new/estimates.json")):
        bench = path.parent.parent.name
        if bench.split("_")[0] in ("layer", "peer", "floor", "axum", "sha256"):
            print(f"| `{bench}` | {json.loads(path.read_text())['median']['point_estimate']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
