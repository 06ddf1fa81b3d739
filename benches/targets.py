#!/usr/bin/env python3
"""Issue 16's targets as one table, from criterion runs of `benches/layer.rs` and
`benches/axum_router.rs`: runs them (unless --no-run), reads the medians from criterion's
JSON (target/criterion/<id with "/" as "_">/new/estimates.json) and prints a Markdown table
with each target's ratio in every run, the median of those ratios, and met / missed (judged
on the median). Every ratio compares figures of one run. Timings are never test assertions.

    python3 benches/targets.py              # three runs, then the tables
    python3 benches/targets.py --runs 1     # one run
    python3 benches/targets.py --no-run     # the tables from the last run only
"""

import json
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
GROUPS = ("layer", "peer", "peer_same_input", "floor", "axum", "sha256")


def medians() -> dict:
    """Every median of the last run, in nanoseconds, by bench id (e.g. `layer/auth`)."""
    found = {}
    for path in CRITERION.glob("*/new/estimates.json"):
        benchmark = json.loads((path.parent / "benchmark.json").read_text())
        if benchmark["group_id"].split("/")[0] in GROUPS:
            found[benchmark["full_id"]] = json.loads(path.read_text())["median"]["point_estimate"]
    return found


def targets(m: dict) -> list:
    """(target, formula, ratio, goal) for one run's medians `m`."""
    sha, bare = m["sha256/forg_live"], m["layer/bare"]

    def over_sha(bench: str, base: float) -> float:
        return (m[bench] - base) / sha

    return [
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
         m["layer/rate_limit"] / m["peer/tower_governor_header_key_with_headers"], 0.7),
        ("rate limit alone / tower_governor, headers off",
         "layer/rate_limit_no_headers / peer/tower_governor_header_key",
         m["layer/rate_limit_no_headers"] / m["peer/tower_governor_header_key"], 1.0),
        ("the same two on the same input, headers on",
         "layer/rate_limit / peer_same_input/tower_governor_header_key_with_headers",
         m["layer/rate_limit"] / m["peer_same_input/tower_governor_header_key_with_headers"], 0.7),
        ("the same two on the same input, headers off",
         "layer/rate_limit_no_headers / peer_same_input/tower_governor_header_key",
         m["layer/rate_limit_no_headers"] / m["peer_same_input/tower_governor_header_key"], 1.0),
        ("session authentication over key authentication", "(layer/auth_session − layer/auth) / SHA-256",
         over_sha("layer/auth_session", m["layer/auth"]), 1.0),
        ("usage layer (spend cap, in process)", "(layer/spend_cap − layer/bare_with_identity) / SHA-256",
         over_sha("layer/spend_cap", m["layer/bare_with_identity"]), 1.0),
        ("usage layer without its `Spend-Cap` header (no goal)",
         "(layer/spend_cap_no_headers − layer/bare_with_identity) / SHA-256",
         over_sha("layer/spend_cap_no_headers", m["layer/bare_with_identity"]), None),
        ("axum router, stack in one call / tower-only stack",
         "(axum/stack_one_call − axum/bare) / (layer/auth_scope_rate_limit − layer/bare)",
         (m["axum/stack_one_call"] - m["axum/bare"]) / (m["layer/auth_scope_rate_limit"] - bare), 1.5),
        ("floor under auth (http types only; no goal)", "(floor/auth − layer/bare) / SHA-256",
         over_sha("floor/auth", bare), None),
        ("floor under a rejection (http types only; no goal)", "(floor/reject − layer/bare) / SHA-256",
         over_sha("floor/reject", bare), None),
    ]


def main() -> int:
    args = sys.argv[1:]
    runs = 0 if "--no-run" in args else int(args[args.index("--runs") + 1]) if "--runs" in args else 3
    results = []
    for _ in range(runs):
        subprocess.run(
            ["cargo", "bench", "--bench", "layer", "--bench", "axum_router", "--",
             "--warm-up-time", "1", "--measurement-time", "3"],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results.append(medians())
    if not results:
        results.append(medians())

    rows = [targets(m) for m in results]
    numbers = " | ".join(f"run {i + 1}" for i in range(len(results)))
    print("| target | measured as | " + numbers + " | median | goal | |")
    print("|---|---|" + "---|" * len(results) + "---|---|---|")
    for i, (name, formula, _, goal) in enumerate(rows[0]):
        ratios = [run[i][2] for run in rows]
        middle = statistics.median(ratios)
        verdict = "" if goal is None else ("met" if middle <= goal else "missed")
        goal_text = "" if goal is None else f"≤ {goal}"
        cells = " | ".join(f"{r:.2f}" for r in ratios)
        print(f"| {name} | {formula} | {cells} | **{middle:.2f}** | {goal_text} | {verdict} |")

    print("\n| bench | " + numbers + " |")
    print("|---|" + "---|" * len(results))
    for bench in sorted(results[0]):
        cells = " | ".join(f"{m[bench]:.1f}" for m in results)
        print(f"| `{bench}` | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
