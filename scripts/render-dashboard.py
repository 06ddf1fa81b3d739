#!/usr/bin/env python3
"""Renders docs/grafana-dashboard.json over real quickstart traffic into
docs/grafana-dashboard.png, without Grafana: runs the quickstart, sends a scripted minute
of requests (keys, a session, refusals of every kind the quickstart can produce), scrapes
its /metrics every two seconds, evaluates each panel's PromQL (the few shapes the
dashboard uses) over the scrapes, draws the panels as SVG at their grid positions and
screenshots the page with headless Chromium.

    cargo build --example quickstart && python3 scripts/render-dashboard.py

Standard library only; needs chromium (Debian: apt-get install chromium).
"""

import http.cookiejar
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDR = "127.0.0.1:18081"
BASE = f"http://{ADDR}"
DURATION = 60.0
SCRAPE_EVERY = 2.0


def start_quickstart():
    binary = ROOT / "target/debug/examples/quickstart"
    process = subprocess.Popen([str(binary), "--addr", ADDR], stdout=subprocess.PIPE, text=True)
    banner = ""
    while "Demo login" not in banner:
        banner += process.stdout.readline()
    keys = dict(re.findall(r"^\s+(live|test|fos)\s+(\S+)$", banner, re.M))
    return process, keys


def call(opener, method, path, headers=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers or {})
    if body is not None:
        request.add_header("content-type", "application/json")
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def traffic(keys, stop):
    plain = urllib.request.build_opener()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login = {"email": "demo@forgeos.dev", "password": "correct horse battery staple"}
    call(browser, "POST", "/auth/login", body=login)
    live = {"authorization": f"Bearer {keys['live']}"}
    test = {"authorization": f"Bearer {keys['test']}"}
    fos = {"x-forgeos-api-key": keys["fos"]}
    second = 0
    while not stop.is_set():
        for _ in range(3):
            call(plain, "GET", "/v1/sessions", live)  # 100 a minute: 429 after ~33 s
        call(plain, "GET", "/v1/rules", test)
        call(plain, "GET", "/v1/rules", test)
        call(browser, "GET", "/v1/me")  # the session
        call(plain, "POST", "/v1/reviews", fos)  # 10 a minute: then 429
        if second % 5 == 0:
            call(plain, "POST", "/v1/reviews", live)  # a spend cap of 30: then 402
        if second % 2 == 0:
            call(plain, "GET", "/v1/sessions")  # 401, no key
        if second % 3 == 0:
            call(plain, "POST", "/v1/rules", live)  # 403 insufficient_scope
        if second % 4 == 0:
            call(plain, "GET", "/v1/sessions", {"authorization": "Bearer forg_live_" + "0" * 32})
        second += 1
        stop.wait(1.0)


def parse(page):
    samples = {}
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))
        samples[(name, labels)] = float(value)
    return samples


def scrape(stop, scrapes):
    while not stop.is_set():
        with urllib.request.urlopen(BASE + "/metrics", timeout=5) as response:
            scrapes.append((time.time(), parse(response.read().decode())))
        stop.wait(SCRAPE_EVERY)


# The evaluator: a step-wise series is {labels: [value per scrape interval]}.

def select(scrapes, name, matchers):
    out = {}
    for i, (_, samples) in enumerate(scrapes):
        for (n, labels), value in samples.items():
            if n != name:
                continue
            d = dict(labels)
            if all((d.get(k) == v) == (op == "=") for k, op, v in matchers):
                out.setdefault(labels, [0.0] * len(scrapes))[i] = value
    return out


def evaluate(expr, scrapes, whole):
    expr = expr.strip()
    m = re.fullmatch(r"histogram_quantile\(([\d.]+), (.*)\)", expr)
    if m:
        buckets = evaluate(m.group(2), scrapes, whole)
        q = float(m.group(1))
        groups = {}
        for labels, values in buckets.items():
            d = dict(labels)
            le = d.pop("le")
            groups.setdefault(tuple(sorted(d.items())), []).append((float("inf") if le == "+Inf" else float(le), values))
        out = {}
        for labels, rows in groups.items():
            rows.sort()
            series = []
            for i in range(len(rows[0][1])):
                total = rows[-1][1][i]
                if total <= 0:
                    series.append(None)
                    continue
                value = next((le for le, v in rows if v >= q * total), rows[-2][0] if len(rows) > 1 else 0)
                series.append(value if value != float("inf") else rows[-2][0])
            out[labels] = series
        return out
    depth, split = 0, None
    for i, c in enumerate(expr):
        depth += c == "("
        depth -= c == ")"
        if c == "/" and depth == 0:
            split = i
    if split is not None:
        left = evaluate(expr[:split], scrapes, whole)
        right = evaluate(expr[split + 1:], scrapes, whole)
        lv, rv = next(iter(left.values()), []), next(iter(right.values()), [])
        return {(): [a / b if b else None for a, b in zip(lv, rv)]}
    if expr.startswith("(") and expr.endswith(")"):
        inner = expr[1:-1]
        if "+" in inner:
            parts = [evaluate(p, scrapes, whole) for p in inner.split(" + ")]
            values = [next(iter(p.values()), None) for p in parts]
            values = [v for v in values if v]
            return {(): [sum(col) for col in zip(*values)]} if values else {}
        return evaluate(inner, scrapes, whole)
    m = re.fullmatch(r"sum(?: by \(([^)]*)\))? ?\((rate|increase)\((\w+)(\{[^}]*\})?\[([^\]]+)\]\)\)", expr)
    if not m:
        raise ValueError(f"unsupported expression: {expr}")
    by = [b.strip() for b in (m.group(1) or "").split(",") if b.strip()]
    function, name, matchers, window = m.group(2), m.group(3), m.group(4) or "", m.group(5)
    matchers = re.findall(r'(\w+)(!=|=)"([^"]*)"', matchers)
    times = [t for t, _ in scrapes]
    out = {}
    for labels, values in select(scrapes, name, matchers).items():
        d = dict(labels)
        key = tuple((b, d.get(b, "")) for b in by)
        if window != "$__rate_interval":  # a 5 m / 1 h window: the whole run
            delta = values[-1] - values[0]
            span = times[-1] - times[0]
            steps = [delta / span if function == "rate" else delta] * (len(values) - 1)
        else:
            steps = [
                (b - a) / (t1 - t0) if function == "rate" else (b - a)
                for a, b, t0, t1 in zip(values, values[1:], times, times[1:])
            ]
        acc = out.setdefault(key, [0.0] * len(steps))
        out[key] = [x + y for x, y in zip(acc, steps)]
    return out


def legend(template, labels):
    d = dict(labels)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: d.get(m.group(1), ""), template).strip() or "value"


COLOURS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#ca95e5", "#fade2a", "#37872d"]


def panel_html(panel, scrapes):
    g = panel["gridPos"]
    style = f"grid-column: {g['x'] + 1} / span {g['w']}; grid-row: {g['y'] + 1} / span {g['h']};"
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    if panel["type"] == "stat":
        series = evaluate(panel["targets"][0]["expr"], scrapes, True)
        values = [v for s in series.values() for v in s if v is not None]
        value = values[-1] if values else None
        if value is None:
            text = "–"
        elif unit == "percentunit":
            text = f"{value * 100:.1f} %"
        elif unit == "s":
            text = f"{value * 1000:.1f} ms"
        else:
            text = f"{value:.0f}"
        return f'<div class="panel" style="{style}"><h3>{panel["title"]}</h3><div class="stat">{text}</div></div>'
    lines = []
    for target in panel["targets"]:
        for labels, values in sorted(evaluate(target["expr"], scrapes, False).items()):
            lines.append((legend(target["legendFormat"], labels), values))
    width, height = 560, 150
    top = max([v for _, vs in lines for v in vs if v is not None] + [1e-9])
    svg = [f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none">']
    for y in (0.25, 0.5, 0.75):
        svg.append(f'<line x1="0" x2="{width}" y1="{height * y}" y2="{height * y}" class="grid"/>')
    items = []
    for i, (name, values) in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        n = max(len(values) - 1, 1)
        points = " ".join(
            f"{width * j / n:.1f},{height - (v or 0) / top * (height - 8) - 4:.1f}" for j, v in enumerate(values)
        )
        svg.append(f'<polyline points="{points}" stroke="{colour}" />')
        last = next((v for v in reversed(values) if v is not None), 0)
        items.append(f'<li><span style="background:{colour}"></span>{name} <b>{last:.3g}</b></li>')
    svg.append("</svg>")
    scale = f"max {top:.3g} {unit}"
    return (
        f'<div class="panel" style="{style}"><h3>{panel["title"]} <small>{scale}</small></h3>'
        f'<div class="body">{"".join(svg)}<ul>{"".join(items)}</ul></div></div>'
    )


def main():
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    saved = ROOT / "target/grafana-dashboard-scrapes.json"
    if "--reuse" in sys.argv:  # redraw the last run's scrapes
        scrapes = [(t, {(n, tuple(map(tuple, l))): v for n, l, v in s}) for t, s in json.loads(saved.read_text())]
    else:
        process, keys = start_quickstart()
        try:
            stop, scrapes = threading.Event(), []
            threads = [threading.Thread(target=traffic, args=(keys, stop)), threading.Thread(target=scrape, args=(stop, scrapes))]
            for thread in threads:
                thread.start()
            time.sleep(DURATION)
            stop.set()
            for thread in threads:
                thread.join()
        finally:
            process.terminate()
        saved.write_text(json.dumps([(t, [(n, l, v) for (n, l), v in s.items()]) for t, s in scrapes]))
    panels = "".join(panel_html(panel, scrapes) for panel in dashboard["panels"])
    html = f"""<!doctype html><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:12px sans-serif; margin:8px; }}
h1 {{ font-size:16px; margin:4px 4px 8px; }}
.grid {{ display:grid; grid-template-columns:repeat(24, 1fr); grid-auto-rows:30px; gap:6px; }}
.panel {{ background:#181b1f; border:1px solid #2c3235; border-radius:3px; padding:6px; overflow:hidden; }}
h3 {{ margin:0 0 4px; font-size:12px; }} small {{ color:#8e8e8e; font-weight:normal; }}
.stat {{ font-size:34px; color:#73bf69; text-align:center; margin-top:14px; }}
.body {{ display:flex; height:calc(100% - 18px); }} svg {{ flex:3; height:100%; }}
polyline {{ fill:none; stroke-width:2; vector-effect:non-scaling-stroke; }} line.grid {{ stroke:#2c3235; }}
ul {{ flex:2; list-style:none; margin:0 0 0 8px; padding:0; font-size:11px; overflow:hidden; }}
li span {{ display:inline-block; width:10px; height:3px; margin-right:4px; vertical-align:middle; }}
</style><h1>{dashboard["title"]} — {len(scrapes)} scrapes of the quickstart, {DURATION:.0f} s of scripted traffic</h1>
<div class="grid">{panels}</div>"""
    page = ROOT / "target/grafana-dashboard.html"
    page.write_text(html)
    out = ROOT / "docs/grafana-dashboard.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--hide-scrollbars", f"--screenshot={out}", "--window-size=1400,1660", page.as_uri()],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    print(f"wrote {out} ({len(scrapes)} scrapes)")


if __name__ == "__main__":
    sys.exit(main())
