"""The perf report of a ``bench/compare.sh`` run: every row, medians per server, Hongyan's
ratios to Prosody and ejabberd, the machine and the commit, and a chart of the rows side by
side.

    python -m bench.report RESULTS.jsonl [MORE.jsonl ...] --names 15222=prosody,... \
        [--out report.md] [--png chart.png] [--commit REV]

A line of a results file is one generator run (``../shared/bench/xmppload.py``,
``bench/wsload.py``, ``bench/boshload.py``, ``bench/idle.py``...): a ``test``, a ``label``
``"<row> r<repetition>"`` and a ``target`` ``host:port``, which ``--names`` maps to a server.
A row is a label without its repetition; its cells are medians over the repetitions. Lines
without a ``test`` or ``target`` (other tools' output in the same file) are counted and left
out, never guessed at.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: per test: its headline metric and whether more is better; the other metrics shown
HEADLINE: dict[str, tuple[str, bool]] = {
    "login": ("rate_per_s", True),
    "warm-scram": ("rate_per_s", True),
    "throughput": ("msgs_per_s", True),
    "ws_throughput": ("msgs_per_s", True),
    "bosh_throughput": ("msgs_per_s", True),
    "latency": ("lat_ms_p50", False),
    "muc": ("deliveries_per_s", True),
    "idle": ("rss_per_conn_kb", False),
    "ws_idle": ("rss_per_conn_kb", False),
    "bosh_idle": ("rss_per_conn_kb", False),
}
MORE: dict[str, list[str]] = {
    "login": ["lat_ms_p50", "lat_ms_p99", "rss_per_conn_kb", "server_cpu_pct", "failed"],
    "warm-scram": ["lat_ms_p50", "lat_ms_p99", "failed"],
    "throughput": ["server_cpu_pct", "machine_cpu_pct"],
    "ws_throughput": ["server_cpu_pct"],
    "bosh_throughput": ["server_cpu_pct"],
    "latency": ["lat_ms_p99", "lat_ms_max", "lost", "server_cpu_pct"],
    "muc": ["room_msgs_per_s", "joined", "server_cpu_pct"],
    "idle": ["probe_login_ms_p50", "probe_login_ms_max", "failed"],
    "ws_idle": ["probe_login_ms_p50", "failed"],
    "bosh_idle": ["failed"],
}
#: how the anchors are ordered in tables and charts; Hongyan's ratios are to each of them
ANCHORS = ("prosody", "ejabberd")
US = "hongyan"


@dataclass
class Row:
    """One row: a test's label, the runs of each server."""

    label: str
    test: str
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def median(self, server: str, metric: str) -> float | None:
        values = [float(r[metric]) for r in self.runs.get(server, [])
                  if isinstance(r.get(metric), (int, float)) and not isinstance(r[metric], bool)]
        return statistics.median(values) if values else None

    def values(self, server: str, metric: str) -> list[float]:
        return [float(r[metric]) for r in self.runs.get(server, [])
                if isinstance(r.get(metric), (int, float)) and not isinstance(r[metric], bool)]


@dataclass
class Results:
    rows: list[Row]
    servers: list[str]
    skipped: int


def parse_names(text: str) -> dict[str, str]:
    """``"15222=prosody,25222=ejabberd"`` -> {port: server}."""
    names: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        port, sep, name = part.partition("=")
        if not sep or not port.strip() or not name.strip():
            raise ValueError(f"--names: {part!r} is not PORT=SERVER")
        names[port.strip()] = name.strip()
    return names


def load(lines: Iterable[str], names: dict[str, str]) -> Results:
    """Group the runs of ``lines`` into rows, in the order their labels first appear."""
    rows: dict[str, Row] = {}
    seen: list[str] = []
    skipped = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(run, dict) or not isinstance(run.get("test"), str) \
                or not isinstance(run.get("target"), str):
            skipped += 1
            continue
        port = run["target"].rsplit(":", 1)[-1]
        server = str(names.get(port) or run["target"])
        label = str(run.get("label") or run["test"])
        head, sep, rep = label.rpartition(" r")
        if sep and rep.isdigit():
            label = head
        row = rows.setdefault(label, Row(label, run["test"]))
        row.runs.setdefault(server, []).append(run)
        if server not in seen:
            seen.append(server)
    order = [s for s in ANCHORS if s in seen] + [s for s in seen
                                                 if s not in ANCHORS and s != US]
    if US in seen:
        order.append(US)
    return Results(list(rows.values()), order, skipped)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _cell(row: Row, server: str, metric: str) -> str:
    values = row.values(server, metric)
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return _fmt(med)
    return f"{_fmt(med)} ({_fmt(min(values))}..{_fmt(max(values))}, n={len(values)})"


def ratio(row: Row, metric: str, anchor: str) -> float | None:
    """Hongyan's median over the anchor's; None when either is missing or the anchor's is 0."""
    ours, theirs = row.median(US, metric), row.median(anchor, metric)
    if ours is None or not theirs:
        return None
    return ours / theirs


def machine() -> list[str]:
    """What the figures were measured on."""
    lines = [f"- host: {platform.node()}, {platform.system()} {platform.release()}, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}"]
    model = ""
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
        mem = next(t for t in Path("/proc/meminfo").read_text().splitlines()
                   if t.startswith("MemTotal"))
        lines.append(f"- CPU: {model or 'unknown'}; memory: "
                     f"{int(mem.split()[1]) / 1024 / 1024:.1f} GiB")
        load1, load5, _ = os.getloadavg()
        lines.append(f"- load average when the report was written: {load1:.2f} (1 min), "
                     f"{load5:.2f} (5 min)")
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return lines


def commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def markdown(res: Results, sources: Sequence[str], rev: str, png: str | None) -> str:
    out = ["# Benchmark report", "", f"- commit: {rev}",
           f"- results: {', '.join(sources)}", *machine()]
    if res.skipped:
        out.append(f"- {res.skipped} line(s) without a test and target left out")
    out.append("")
    anchors = [a for a in ANCHORS if a in res.servers]
    if res.rows and US in res.servers and anchors:
        out += ["## Headlines", "",
                "| row | metric | " + " | ".join(res.servers) + " | "
                + " | ".join(f"{US} / {a}" for a in anchors) + " |",
                "|---" * (2 + len(res.servers) + len(anchors)) + "|"]
        for row in res.rows:
            metric, more = HEADLINE.get(row.test, ("", True))
            if not metric:
                continue
            cells = [_fmt(row.median(s, metric)) for s in res.servers]
            ratios = []
            for a in anchors:
                r = ratio(row, metric, a)
                ratios.append("-" if r is None else f"{r:.2f}x")
            better = "more is better" if more else "less is better"
            out.append(f"| {row.label} | {metric} ({better}) | " + " | ".join(cells) + " | "
                       + " | ".join(ratios) + " |")
        out.append("")
    if png:
        out += [f"![rows side by side]({png})", ""]
    out += ["## Every row", ""]
    for row in res.rows:
        out += [f"### {row.label} ({row.test})", "",
                "| metric | " + " | ".join(s for s in res.servers if s in row.runs) + " |",
                "|---" * (1 + sum(s in row.runs for s in res.servers)) + "|"]
        head = HEADLINE.get(row.test, ("", True))[0]
        metrics = ([head] if head else []) + MORE.get(row.test, [])
        if not metrics:  # a test this report does not know: every number its runs carry
            metrics = sorted({k for runs in row.runs.values() for r in runs
                              for k, v in r.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for m in metrics:
            out.append(f"| {m} | " + " | ".join(_cell(row, s, m) for s in res.servers
                                                 if s in row.runs) + " |")
        out.append("")
    return "\n".join(out)


def chart(res: Results, path: Path) -> bool:
    """A PNG of every row with a headline metric: one panel per row, a bar per server
    (its median, whiskers min..max). False when no row has one."""
    rows = [r for r in res.rows if r.test in HEADLINE]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    colors = {"prosody": "#4e79a7", "ejabberd": "#f28e2b", US: "#59a14f"}
    for i, row in enumerate(rows):
        ax = axes[i // cols][i % cols]
        metric, more = HEADLINE[row.test]
        servers = [s for s in res.servers if row.values(s, metric)]
        meds = [statistics.median(row.values(s, metric)) for s in servers]
        lo = [m - min(row.values(s, metric)) for s, m in zip(servers, meds, strict=True)]
        hi = [max(row.values(s, metric)) - m for s, m in zip(servers, meds, strict=True)]
        ax.bar(servers, meds, yerr=[lo, hi], capsize=3,
               color=[colors.get(s, "#999999") for s in servers])
        ax.set_title(f"{row.label}\n{metric} ({'higher' if more else 'lower'} is better)",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(len(rows), nrows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--names", default="15222=prosody,25222=ejabberd,29222=hongyan",
                    help="PORT=SERVER,... : which server each target port is")
    ap.add_argument("--out", type=Path, help="the markdown report (default: stdout)")
    ap.add_argument("--png", type=Path, help="the chart (default: none)")
    ap.add_argument("--commit", help="the commit measured (default: git describe of this tree)")
    args = ap.parse_args(argv)
    try:
        names = parse_names(args.names)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    lines: list[str] = []
    for f in args.files:
        try:
            lines += f.read_text().splitlines()
        except OSError as exc:
            print(f"{f}: {exc.strerror}", file=sys.stderr)
            return 2
    res = load(lines, names)
    rev = args.commit or commit(Path(__file__).resolve().parent.parent)
    png = None
    if args.png is not None and chart(res, args.png):
        png = os.path.relpath(args.png, args.out.parent) if args.out else str(args.png)
    text = markdown(res, [str(f) for f in args.files], rev, png)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
