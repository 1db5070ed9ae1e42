"""Turning a run's results into tables (terminal and Markdown), the target checks, and the chart."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]

WORKLOAD_ORDER = ("read", "write", "new", "no-touch")
SERVER_SIDE_OURS = (
    "ours-redis-sync",
    "ours-redis-async",
    "ours-memcache",
    "ours-memcache-pooled",
    "ours-aiomemcache",
)
EXPECTED_ROUND_TRIPS = {"read": 1.0, "write": 2.0, "new": 1.0, "no-touch": 0.0}
EXPECTED_WRITES = {"read": 0.0, "write": 1.0, "new": 1.0, "no-touch": 0.0}
_WRITE_COMMANDS = frozenset({"SET", "SETEX", "DEL", "EXPIRE", "set", "delete", "touch"})


@dataclass(frozen=True)
class Target:
    """One goal of the performance issue, checked against this run."""

    name: str
    value: float | None
    limit: str
    met: bool | None  # None: not measured in this run

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "met": self.met}


def _get(results: Results, *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _median(results: Results, section: str, workload: str, contender: str) -> float | None:
    value = _get(results, section, workload, contender, "median_us")
    return float(value) if value is not None else None


def _total(commands: dict[str, float] | None) -> float | None:
    return None if commands is None else round(sum(commands.values()), 3)


def _writes(commands: dict[str, float] | None) -> float | None:
    if commands is None:
        return None
    return round(sum(v for k, v in commands.items() if k in _WRITE_COMMANDS), 3)


def _always(result: bool) -> Callable[[float], bool]:
    def check(_value: float) -> bool:
        return result

    return check


def evaluate_targets(results: Results) -> list[Target]:
    """Check this run's numbers against the issue's targets (reported, never asserted)."""
    targets: list[Target] = []

    def add(name: str, value: float | None, limit: str, ok: Callable[[float], bool]) -> None:
        targets.append(Target(name, value, limit, None if value is None else ok(value)))

    cookie_052 = _ratio(
        _median(results, "starlette_052", "read", "ours-cookie"),
        _median(results, "starlette_052", "read", "starlette"),
    )
    add("cookie read / Starlette 0.52 (both on Starlette 0.52)", cookie_052, "<= 0.6", lambda v: v <= 0.6)
    add(
        "cookie read with all prototypes / Starlette 0.52 (both on Starlette 0.52)",
        _ratio(
            _median(results, "starlette_052", "prototypes_read", "ours-cookie + all prototypes"),
            _median(results, "starlette_052", "prototypes_read", "starlette"),
        ),
        "<= 0.6",
        lambda v: v <= 0.6,
    )
    add(
        "cookie read with all prototypes / Starlette 1.x",
        _ratio(
            _get(results, "prototypes", "cookie_app", "read", "both + decode cache", "median_us"),
            _get(results, "prototypes", "cookie_app", "read", "starlette (reference)", "median_us"),
        ),
        "<= 1.0",
        lambda v: v <= 1.0,
    )
    starlette_read = _median(results, "inprocess", "read", "starlette")
    add(
        "cookie read / Starlette 1.x",
        _ratio(_median(results, "inprocess", "read", "ours-cookie"), starlette_read),
        "<= 1.0",
        lambda v: v <= 1.0,
    )
    for name in ("ours-redis-async", "ours-redis-sync"):
        add(
            f"{name} read / Starlette cookie read",
            _ratio(_median(results, "inprocess", "read", name), starlette_read),
            "<= 2.0",
            lambda v: v <= 2.0,
        )
    bare = _median(results, "inprocess", "no-touch", "bare")
    for name in ("ours-cookie", "ours-redis-async"):
        add(
            f"{name} no-touch / bare app",
            _ratio(_median(results, "inprocess", "no-touch", name), bare),
            "<= 1.10",
            lambda v: v <= 1.10,
        )
    sync_rps = _get(results, "latency", "read-c64", "ours-redis-sync", "requests_per_s")
    add(
        "1.3 ms store: ours-redis-sync 64 concurrent reads (req/s)",
        sync_rps,
        ">= 4000",
        lambda v: v >= 4000,
    )
    slow_bridges = _get(results, "prototypes", "redis_sync_app", "read-c64 at 1.3 ms, req/s") or {}
    for label, value in slow_bridges.items():
        if label.startswith("run_in_executor"):
            add(
                f"1.3 ms store: ours-redis-sync with {label} (prototype), 64 concurrent reads (req/s)",
                value.get("requests_per_s"),
                ">= 4000",
                lambda v: v >= 4000,
            )
    rtt = _get(results, "latency", "rtt_ms", "memcached")
    memcache_rps = _get(results, "latency", "read-c64", "ours-memcache", "requests_per_s")
    if rtt:
        floor = round(0.5 * 1000 / rtt, 1)
        add(
            "1.3 ms store: default pymemcache Client, 64 concurrent reads (req/s)",
            memcache_rps,
            f">= {floor} (half of one round trip at a time: no collapse)",
            lambda v: v >= floor,
        )
    for name in SERVER_SIDE_OURS:
        counts = _get(results, "roundtrips", name)
        if counts is None:
            continue
        for workload, expected in EXPECTED_ROUND_TRIPS.items():
            commands = counts.get(workload)
            total, writes = _total(commands), _writes(commands)
            exact = (
                total is not None
                and writes is not None
                and abs(total - expected) < 0.01
                and abs(writes - EXPECTED_WRITES[workload]) < 0.01
            )
            add(
                f"{name} {workload}: store commands per request",
                total,
                f"== {expected:g} ({EXPECTED_WRITES[workload]:g} write)",
                _always(exact),
            )
    starsessions = _get(results, "http", "starsessions-redis", "requests_per_s")
    for name in ("ours-redis-async", "ours-redis-sync", "ours-redis-sync + executor bridge"):
        add(
            f"HTTP {name} / starsessions-redis (req/s)",
            _ratio(_get(results, "http", name, "requests_per_s"), starsessions),
            ">= 1.5",
            lambda v: v >= 1.5,
        )
    return targets


# -- tables ------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _commands(commands: dict[str, float] | None) -> str:
    if commands is None:
        return "-"
    if not commands:
        return "0"
    return " + ".join(f"{v:g} {k}" for k, v in commands.items())


def tables(results: Results) -> list[tuple[str, list[str], list[list[str]]]]:
    """Return ``(title, header, rows)`` for each table of the run."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    inprocess = results.get("inprocess", {})
    if all(workload in inprocess for workload in WORKLOAD_ORDER):
        out.append(summary_table(results))
    for workload in WORKLOAD_ORDER:
        data = inprocess.get(workload)
        if not data:
            continue
        starlette = _median(results, "inprocess", workload, "starlette")
        bare = _median(results, "inprocess", workload, "bare")
        rows = []
        for name, timing in data.items():
            rows.append(
                [
                    name,
                    _fmt(timing["median_us"]),
                    _fmt(timing["p90_us"]),
                    _fmt(_ratio(timing["median_us"], starlette), 2),
                    _fmt(_ratio(timing["median_us"], bare), 2),
                    _commands(_get(results, "roundtrips", name, workload)),
                ]
            )
        out.append(
            (
                f"In-process, {workload}: median µs per request",
                ["contender", "median µs", "p90 µs", "x Starlette", "x bare", "store commands / request"],
                rows,
            )
        )
    concurrent = inprocess.get("read-c64")
    if concurrent:
        starlette = _get(results, "inprocess", "read-c64", "starlette", "us_per_request")
        rows = [
            [
                name,
                _fmt(value["requests_per_s"], 0),
                _fmt(value["us_per_request"]),
                _fmt(_ratio(value["us_per_request"], starlette), 2),
            ]
            for name, value in concurrent.items()
        ]
        out.append(
            (
                "In-process, 64 concurrent reads",
                ["contender", "req/s", "µs per request", "x Starlette"],
                rows,
            )
        )
    compat = results.get("starlette_052", {})
    if compat.get("read"):
        rows = []
        for workload in WORKLOAD_ORDER:
            starlette = _median(results, "starlette_052", workload, "starlette")
            for name, timing in compat.get(workload, {}).items():
                rows.append(
                    [
                        workload,
                        name,
                        _fmt(timing["median_us"]),
                        _fmt(_ratio(timing["median_us"], starlette), 2),
                    ]
                )
        for name, timing in compat.get("prototypes_read", {}).items():
            rows.append(
                [
                    "read (prototypes run)",
                    name,
                    _fmt(timing["median_us"]),
                    _fmt(
                        _ratio(
                            timing["median_us"],
                            _median(results, "starlette_052", "prototypes_read", "starlette"),
                        ),
                        2,
                    ),
                ]
            )
        out.append(
            (
                f"Starlette {compat.get('starlette_version', '0.52')} venv, in-process",
                ["workload", "contender", "median µs", "x Starlette 0.52"],
                rows,
            )
        )
    latency = results.get("latency", {})
    if latency.get("read-c64"):
        rows = []
        for name, value in latency["read-c64"].items():
            sequential = _get(latency, "read", name, "median_us")
            rows.append(
                [
                    name,
                    _fmt(sequential),
                    _fmt(value["requests_per_s"], 0),
                ]
            )
        rtt = latency.get("rtt_ms", {})
        out.append(
            (
                f"Store behind a {latency.get('delay_ms')} ms latency proxy (measured round trip: "
                f"redis {_fmt(rtt.get('redis'), 2)} ms, memcached {_fmt(rtt.get('memcached'), 2)} ms)",
                ["contender", "read, median µs", "64 concurrent reads, req/s"],
                rows,
            )
        )
    http = results.get("http", {})
    if http:
        starlette_rps = _get(http, "starlette", "requests_per_s")
        rows = [
            [
                name,
                _fmt(value["requests_per_s"], 0),
                _fmt(_ratio(value["requests_per_s"], starlette_rps), 2),
                _fmt(value.get("latency_p50_ms"), 2),
                _fmt(value.get("latency_p99_ms"), 2),
                _fmt(value.get("non_2xx", 0.0) + value.get("socket_errors", 0.0), 0),
            ]
            for name, value in http.items()
        ]
        settings = results.get("http_settings", {})
        out.append(
            (
                f"HTTP: uvicorn (1 worker) + wrk -t{settings.get('threads')} -c{settings.get('connections')} "
                f"-d{settings.get('seconds')}s (mean of {settings.get('rounds', 1)} runs), "
                "GET /read with the session cookie",
                ["contender", "req/s", "x Starlette", "p50 ms", "p99 ms", "errors"],
                rows,
            )
        )
    prototypes = results.get("prototypes", {})
    for section, title in (
        ("codec", "Prototype: cookie codec, µs per call"),
        ("bridge", "Prototype: thread bridge, one trivial call"),
    ):
        data = prototypes.get(section)
        if data:
            keys = list(next(iter(data.values())).keys())
            rows = [[name, *(_fmt(value[k], 2) for k in keys)] for name, value in data.items()]
            out.append((title, ["variant", *keys], rows))
    clients = prototypes.get("clients")
    if clients:
        out.append(
            (
                "Floor: one GET through the store client alone, median µs",
                ["client call", "median µs"],
                [[name, _fmt(value)] for name, value in clients.items()],
            )
        )
    for section, title in (
        ("cookie_app", "Prototype: ours-cookie with FastSignedCodec / LazyCompareSession, median µs"),
        ("redis_async_app", "Prototype: ours-redis-async with LazyCompareSession, median µs"),
        ("redis_sync_app", "Prototype: ours-redis-sync with the executor bridge"),
    ):
        data = prototypes.get(section)
        if data:
            rows = [
                [workload, name, _fmt(value.get("median_us", value.get("requests_per_s")))]
                for workload, per_variant in data.items()
                for name, value in per_variant.items()
            ]
            out.append((title, ["workload", "variant", "median µs or req/s"], rows))
    targets = results.get("targets", [])
    if targets:
        rows = [
            [
                t["name"],
                _fmt(t["value"], 2),
                t["limit"],
                "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED"),
            ]
            for t in targets
        ]
        out.append(("Targets", ["target", "value", "goal", "result"], rows))
    return out


def summary_table(results: Results) -> tuple[str, list[str], list[list[str]]]:
    """One row per contender: every workload's median, the main ratios and the store commands."""
    inprocess = results["inprocess"]
    starlette_read = _median(results, "inprocess", "read", "starlette")
    bare_none = _median(results, "inprocess", "no-touch", "bare")
    rows = []
    for name in inprocess["read"]:
        medians = [_median(results, "inprocess", workload, name) for workload in WORKLOAD_ORDER]
        commands = [_get(results, "roundtrips", name, workload) for workload in WORKLOAD_ORDER]
        rows.append(
            [
                name,
                *(_fmt(value) for value in medians),
                _fmt(_ratio(medians[0], starlette_read), 2),
                _fmt(_ratio(medians[3], bare_none), 2),
                _fmt(_get(results, "inprocess", "read-c64", name, "requests_per_s"), 0),
                "-" if all(c is None for c in commands) else " / ".join(_commands(c) for c in commands),
            ]
        )
    header = [
        "contender",
        "read µs",
        "write µs",
        "new µs",
        "no-touch µs",
        "read x Starlette",
        "no-touch x bare",
        "read-c64 req/s",
        "store commands per request: read / write / new / no-touch",
    ]
    return "In-process, median µs per request (summary)", header, rows


def render_text(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render one table for the terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def render_markdown(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render one table as GitHub Markdown, under a bold title line."""
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(results: Results, json_path: Path, markdown_path: Path) -> None:
    """Write the results as JSON and the tables as Markdown."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    markdown = "\n\n".join(render_markdown(*table) for table in tables(results))
    markdown_path.write_text(markdown + "\n")


# -- chart -----------------------------------------------------------------------------------------


def draw_chart(results: Results, path: Path) -> None:
    """Draw the run's main numbers into a PNG: in-process latencies, store latency, HTTP."""
    import matplotlib  # noqa: PLC0415 - only the bench venv has it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 2, figsize=(15, 11), gridspec_kw={"height_ratios": [1.5, 1]})
    meta = results.get("meta", {})
    fig.suptitle(
        f"starlette-session {meta.get('package_version', '')} benchmarks, {meta.get('date', '')[:10]}, "
        f"Python {meta.get('python', '')}, Starlette {meta.get('starlette', '')}, "
        f"{meta.get('cpu_count', '?')} x {meta.get('cpu_model', '')}",
        fontsize=11,
    )

    ax = axes[0][0]
    inprocess = results.get("inprocess", {})
    names = list(inprocess.get("read", {}))
    height = 0.2
    for i, workload in enumerate(WORKLOAD_ORDER):
        values = [_median(results, "inprocess", workload, n) or 0.0 for n in names]
        positions = [y + (i - 1.5) * height for y in range(len(names))]
        ax.barh(positions, values, height=height, label=workload)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median µs per request, in-process (log scale; lower is better)")
    ax.set_title("In-process ASGI calls")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    rows: list[tuple[str, float, str]] = []
    for name in names:
        ratio = _ratio(
            _median(results, "inprocess", "read", name), _median(results, "inprocess", "read", "starlette")
        )
        if ratio is not None:
            rows.append((name, ratio, "tab:blue"))
    compat = results.get("starlette_052", {})
    for name in ("starlette", "ours-cookie"):
        ratio = _ratio(
            _median(results, "starlette_052", "read", name),
            _median(results, "inprocess", "read", "starlette"),
        )
        if ratio is not None:
            label = f"{name} on Starlette {compat.get('starlette_version', '0.52')}"
            rows.append((label, ratio, "tab:orange"))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color=[r[2] for r in rows])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("read: median time ÷ Starlette 1.x SessionMiddleware (log scale; lower is better)")
    ax.set_title("Read of an existing 310-byte session, relative to Starlette")

    ax = axes[1][0]
    latency = results.get("latency", {}).get("read-c64", {})
    ax.barh(list(latency), [v["requests_per_s"] for v in latency.values()], color="tab:green")
    ax.axvline(4000, color="red", linestyle="--", linewidth=0.8, label="target for sync redis: 4,000")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    delay = results.get("latency", {}).get("delay_ms")
    ax.set_xlabel(f"req/s, 64 concurrent reads, store behind a {delay} ms latency proxy (higher is better)")
    ax.set_title("Slow store: does the middleware block the event loop?")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    http = results.get("http", {})
    ax.barh(list(http), [v["requests_per_s"] for v in http.values()], color="tab:purple")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    settings = results.get("http_settings", {})
    ax.set_xlabel(
        f"req/s, uvicorn 1 worker, wrk -c{settings.get('connections')} -t{settings.get('threads')}, "
        "GET /read (higher is better)"
    )
    ax.set_title("Over HTTP")

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
