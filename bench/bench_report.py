"""Tables and acceptance verdicts for gateway_bench results.

Two floors, two sets of verdicts: the NULL targets (``eg``, ``yarn-gateway``, ipykernel 6)
against ``direct`` (issue 2, acceptance 5), and ``yarn-gateway-curve`` (ipykernel 7,
CurveZMQ) against ``direct-curve`` (issue 17, acceptance 5). A ratio is always to the floor
of the same kind of kernel, never across the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

FLOOR = "direct"
CURVE_FLOOR = "direct-curve"
FLOORS = (FLOOR, CURVE_FLOOR)


def floor_of(key: str) -> Optional[str]:
    """The floor a target is compared with (None for a floor itself)."""
    if key in FLOORS:
        return None
    return CURVE_FLOOR if key.endswith("-curve") else FLOOR


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    #: Show the ratio to the direct floor for this metric.
    ratio: bool = False


ROWS = [
    Row("start_created_ms", "start: request answered (ms)"),
    Row("start_reply_ms", "start: request -> first execute reply (ms)", ratio=True),
    Row("rtt_p50_ms", "execute round trip p50 (ms)", ratio=True),
    Row("rtt_p99_ms", "execute round trip p99 (ms)", ratio=True),
    Row("stream_mb_s", "stream throughput (MB/s)", ratio=True),
    Row("stream_complete", "stream: every byte arrived"),
    Row("kernel_transport", "kernel connection (checked from outside)"),
    Row("burst_msgs_s", "small-message rate (msg/s)", ratio=True),
    Row("burst_missing", "small messages lost"),
    Row("burst_out_of_order", "small messages out of order"),
    Row("floor_burst_msgs_s", "small-message rate, same kernel read directly (msg/s)"),
    Row("same_kernel_ratio", "small-message rate / same kernel read directly"),
    Row("rss0_mb", "gateway RSS, 0 kernels (MB)"),
    Row("rss_n_mb", "gateway RSS, N idle kernels (MB)"),
    Row("rss_per_kernel_mb", "gateway RSS per idle kernel (MB)"),
    Row("cpu_us_per_rtt", "gateway CPU per round trip (us)"),
    Row("cpu_ms_per_mb", "gateway CPU per MB streamed (ms)"),
    Row("cpu_us_per_msg", "gateway CPU per small message (us)"),
]


@dataclass(frozen=True)
class Check:
    label: str
    #: (metrics of the gateway, metrics of the floor) -> (passed, shown value)
    judge: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str]]


def _ratio(t: dict[str, Any], floor: dict[str, Any], key: str) -> Optional[float]:
    a, b = t.get(key), floor.get(key)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return None
    return float(a) / float(b)


def _ratio_check(key: str, limit: float, at_most: bool, extra: Optional[Callable[[dict[str, Any]], bool]] = None,
                 ) -> Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str]]:
    def judge(t: dict[str, Any], floor: dict[str, Any]) -> tuple[bool, str]:
        r = _ratio(t, floor, key)
        if r is None:
            return False, "n/a"
        ok = r <= limit if at_most else r >= limit
        if extra is not None:
            ok = ok and extra(t)
        return ok, f"{r:.2f}x"
    return judge


def _rss_judge(t: dict[str, Any], _floor: dict[str, Any]) -> tuple[bool, str]:
    v = t.get("rss_per_kernel_mb")
    if v is None:
        return False, "n/a"
    return v <= 0.3, f"{v:.2f} MB"


def _same_kernel_judge(t: dict[str, Any], _floor: dict[str, Any]) -> tuple[bool, str]:
    r = t.get("same_kernel_ratio")
    if r is None:
        return False, "n/a"
    ok = r >= 0.95 and t.get("burst_missing") == 0 and t.get("burst_out_of_order") == 0
    return ok, f"{r:.2f}x"


def _encrypted_judge(t: dict[str, Any], _floor: dict[str, Any]) -> tuple[bool, str]:
    probe = t.get("encryption")
    if not isinstance(probe, dict):
        return False, "not checked"
    if probe.get("encrypted"):
        return True, "NULL client unanswered"
    return False, "NULL client answered" if probe.get("null_answered") else "NOT encrypted"


def _floor_encrypted_judge(_t: dict[str, Any], floor: dict[str, Any]) -> tuple[bool, str]:
    return _encrypted_judge(floor, {})


CHECKS = [
    Check("round trip p50 <= 1.1x direct", _ratio_check("rtt_p50_ms", 1.1, at_most=True)),
    Check("throughput >= 0.9x direct, complete",
          _ratio_check("stream_mb_s", 0.9, at_most=False, extra=lambda t: bool(t.get("stream_complete")))),
    Check("msg rate >= 0.95x direct, none lost",
          _ratio_check("burst_msgs_s", 0.95, at_most=False,
                       extra=lambda t: t.get("burst_missing") == 0 and t.get("burst_out_of_order") == 0)),
    Check("msg rate >= 0.95x direct on the same kernel, none lost", _same_kernel_judge),
    Check("RSS per idle kernel <= 0.3 MB", _rss_judge),
]


#: Issue 17, acceptance 5: the encrypted path against a direct CurveZMQ client of the same kind of kernel.
CURVE_CHECKS = [
    Check("round trip p50 <= 1.15x direct-curve", _ratio_check("rtt_p50_ms", 1.15, at_most=True)),
    Check("throughput >= 0.9x direct-curve, complete",
          _ratio_check("stream_mb_s", 0.9, at_most=False, extra=lambda t: bool(t.get("stream_complete")))),
    Check("gateway's kernel connection is CurveZMQ only", _encrypted_judge),
    Check("direct-curve's kernel connection is CurveZMQ only", _floor_encrypted_judge),
]


@dataclass(frozen=True)
class Suite:
    title: str
    floor: str
    checks: list[Check]


SUITES = [
    Suite("acceptance (issue 2, #5)", FLOOR, CHECKS),
    Suite("acceptance (issue 17, #5)", CURVE_FLOOR, CURVE_CHECKS),
]


def verdicts(targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """PASS/FAIL per acceptance check for every gateway that ran, against its floor."""
    out: dict[str, dict[str, Any]] = {}
    for suite in SUITES:
        floor = targets.get(suite.floor, {})
        for key, t in targets.items():
            if floor_of(key) != suite.floor or t.get("status") != "ok" or floor.get("status") != "ok":
                continue
            out[key] = {}
            for check in suite.checks:
                ok, shown = check.judge(t, floor)
                out[key][check.label] = {"pass": ok, "value": shown}
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if abs(value) >= 999.95:  # what would print as "1000.0"
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def _cells(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    targets: dict[str, dict[str, Any]] = results["targets"]
    keys = list(targets)
    header = ["metric"] + [targets[k].get("label", k) for k in keys]
    rows: list[list[str]] = []
    for row in ROWS:
        line = [row.label.replace("N idle", f"{_n_idle(results)} idle")]
        for k in keys:
            t = targets[k]
            if t.get("status") != "ok":
                line.append(t.get("status", "-"))
                continue
            cell = _fmt(t.get(row.key))
            floor_key = floor_of(k)
            floor = targets.get(floor_key, {}) if floor_key is not None else {}
            r = _ratio(t, floor, row.key) if row.ratio and floor_key is not None else None
            if r is not None:
                cell += f" ({r:.2f}x)"
            line.append(cell)
        rows.append(line)
    return header, rows


def _n_idle(results: dict[str, Any]) -> int:
    return int(results.get("plan", {}).get("idle_kernels", 0))


def _verdict_rows(results: dict[str, Any], suite: Suite) -> tuple[list[str], list[list[str]]]:
    v = results.get("verdicts", {})
    keys = [k for k in v if floor_of(k) == suite.floor]
    header = [suite.title] + [results["targets"][k].get("label", k) for k in keys]
    rows = []
    for check in suite.checks:
        line = [check.label]
        for k in keys:
            c = v[k].get(check.label)
            line.append("-" if c is None else f"{'PASS' if c['pass'] else 'FAIL'} ({c['value']})")
        rows.append(line)
    return header, rows


def _tables(results: dict[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    return [_cells(results)] + [_verdict_rows(results, suite) for suite in SUITES]


def _notes(results: dict[str, Any]) -> list[str]:
    notes = []
    m = results["machine"]
    load = max(float(m.get("load_start") or 0), float(m.get("load_end") or 0))
    if load > 1.0:
        notes.append(f"the machine was busy (load average up to {load:.1f} on {m['cpus']} cores): "
                     "rates and ratios of this run are unreliable; rerun on a quiet machine")
    for key in FLOORS:
        if results["targets"].get(key, {}).get("burst_missing"):
            notes.append(f"the {key} floor lost small messages too: the kernel's iopub PUB socket dropped "
                         "them (send high-water mark 1000) because no reader kept up, i.e. the machine was "
                         "overloaded; losses in this run do not point at a gateway")
    for k, t in results["targets"].items():
        if t.get("status") != "ok":
            reason = str(t.get("reason", "")).splitlines()[0] if t.get("reason") else ""
            notes.append(f"{t.get('label', k)}: {t.get('status')}: {reason}")
    return notes


def _title(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = f"load {m.get('load_start', '?')} -> {m.get('load_end', '?')}"
    return (f"{results['date']}, {m['cpus']} cores, {m['memory_gb']} GB, {load}, {m['platform']}, "
            f"ipykernel {results['kernel']['ipykernel']}"
            + (f" (CurveZMQ targets: ipykernel {results['kernel']['curve_ipykernel']})"
               if results["kernel"].get("curve_ipykernel") else "")
            + (f", kernels pinned to CPU {results['kernel']['pinned_cpu']}"
               if results["kernel"].get("pinned_cpu") is not None else "")
            + (" (QUICK run)" if results.get("quick") else ""))


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def text_table(results: dict[str, Any]) -> str:
    parts = [_title(results)]
    for header, rows in _tables(results):
        if len(header) < 2:
            continue
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        parts += ["", _line(header, widths), _line(["-" * w for w in widths], widths)]
        parts += [_line(r, widths) for r in rows]
    parts += [f"note: {n}" for n in _notes(results)]
    return "\n".join(parts)


def markdown_table(results: dict[str, Any]) -> str:
    parts = [f"Run: {_title(results)}", ""]
    for header, rows in _tables(results):
        if len(header) < 2:
            continue
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" for _ in header) + "|")
        parts += ["| " + " | ".join(r) + " |" for r in rows]
        parts.append("")
    parts += [f"- {n}" for n in _notes(results)]
    return "\n".join(parts) + "\n"
