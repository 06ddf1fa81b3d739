#!/usr/bin/env python3
"""Issue 26's time targets as one table, from criterion runs of `benches/layer.rs` and
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
    """(target, formula, ratio, goal, goal text) for one run's medians `m`: issue 26's time
    targets. A goal may depend on the same run (a floor, another row), so it is computed
    per run too; the verdict compares the medians of both."""
    sha, bare = m["sha256/forg_live"], m["layer/bare"]

    def over_sha(bench: str, base: float) -> float:
        return (m[bench] - base) / sha

    auth = over_sha("layer/auth", bare)
    full = over_sha("layer/auth_scope_rate_limit", bare)
    rows = [
        ("auth, valid key", "(layer/auth − bare) / SHA-256",
         auth, over_sha("floor/auth", bare) + 0.5, "floor/auth + 0.5"),
        ("malformed key refused", "(layer/auth_malformed − bare) / SHA-256",
         over_sha("layer/auth_malformed", bare), over_sha("floor/reject", bare) + 0.5,
         "floor/reject + 0.5"),
        ("auth + scope", "(layer/auth_scope − bare) / SHA-256",
         over_sha("layer/auth_scope", bare), auth + 0.3, "auth + 0.3"),
        ("auth + scope + rate limit (100/min), headers on",
         "(layer/auth_scope_rate_limit − bare) / SHA-256", full, 6.0, "6.0"),
        ("the same with a `u32::MAX` quota a second (no goal)",
         "(layer/auth_scope_rate_limit_large_quota − bare) / SHA-256",
         over_sha("layer/auth_scope_rate_limit_large_quota", bare), None, ""),
        ("spend-cap layer", "(layer/spend_cap − layer/bare_with_identity) / SHA-256",
         over_sha("layer/spend_cap", m["layer/bare_with_identity"]), 2.0, "2.0"),
        ("spend-cap layer without its `Spend-Cap` header (no goal)",
         "(layer/spend_cap_no_headers − layer/bare_with_identity) / SHA-256",
         over_sha("layer/spend_cap_no_headers", m["layer/bare_with_identity"]), None, ""),
        ("session over key", "(layer/auth_session − layer/auth) / SHA-256",
         over_sha("layer/auth_session", m["layer/auth"]), 1.5, "1.5"),
        ("rate limit / tower_governor, headers off",
         "layer/rate_limit_no_headers / peer/tower_governor_header_key",
         m["layer/rate_limit_no_headers"] / m["peer/tower_governor_header_key"], 1.0, "1.0"),
        ("the same two on the same input (no goal)",
         "layer/rate_limit_no_headers / peer_same_input/tower_governor_header_key",
         m["layer/rate_limit_no_headers"] / m["peer_same_input/tower_governor_header_key"], None, ""),
        ("axum router, stack in one call / tower-only stack (no goal)",
         "(axum/stack_one_call − axum/bare) / (layer/auth_scope_rate_limit − bare)",
         (m["axum/stack_one_call"] - m["axum/bare"]) / (m["layer/auth_scope_rate_limit"] - bare),
         None, ""),
        ("floor/auth (http types only)", "(floor/auth − bare) / SHA-256",
         over_sha("floor/auth", bare), None, ""),
        ("floor/reject (http types only)", "(floor/reject − bare) / SHA-256",
         over_sha("floor/reject", bare), None, ""),
    ]
    if "layer/auth_scope_rate_limit_recorded" in m:  # the `metrics` feature (a default)
        rows.insert(8, ("`metrics` on, with a recorder",
                        "(layer/auth_scope_rate_limit_recorded − layer/auth_scope_rate_limit) / SHA-256",
                        over_sha("layer/auth_scope_rate_limit_recorded", m["layer/auth_scope_rate_limit"]),
                        0.5, "+0.5"))
    return rows


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
    for i, (name, formula, _, goal, goal_text) in enumerate(rows[0]):
        ratios = [run[i][2] for run in rows]
        middle = statistics.median(ratios)
        verdict = ""
        if goal is not None:
            bound = statistics.median(run[i][3] for run in rows)
            verdict = "met" if middle <= bound else "missed"
            if any(c.isalpha() for c in goal_text):  # relative to another figure of the run
                goal_text = f"{goal_text} ({bound:.2f})"
            goal_text = f"≤ {goal_text}"
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
