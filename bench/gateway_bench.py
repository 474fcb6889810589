#!/usr/bin/env python
"""Gateway benchmark: yarn-gateway vs Enterprise Gateway 3.3.0 vs direct jupyter_client.

One process, one run: the same local ipykernel (6.29) for the NULL targets, and an
ipykernel 7 kernel with CurveZMQ (transport_encryption="required") for the encrypted pair
direct-curve / yarn-gateway-curve. See bench/README.md for what each metric means. Usage::

    .venv/bin/python bench/gateway_bench.py [--quick]
        [--targets direct,eg,yarn-gateway,direct-curve,yarn-gateway-curve]
        [--curve-kernel-python PATH] [--pin-kernels CPU]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import SkippedTarget, Target, ipykernel_version, write_kernelspec
from bench_direct import DirectTarget
from bench_gateways import EnterpriseGatewayTarget, YarnGatewayTarget
from bench_measure import Plan, log, measure_all
from bench_report import markdown_table, text_table, verdicts

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CURVE_KERNEL_PYTHON = REPO_DIR / "build" / "curve-kernel-venv" / "bin" / "python"
ALL_TARGETS = ("direct", "direct-api", "eg", "yarn-gateway", "direct-curve", "yarn-gateway-curve")
DEFAULT_TARGETS = "direct,eg,yarn-gateway,direct-curve,yarn-gateway-curve"
CURVE_TARGETS = {"direct-curve": "direct jupyter_client, CurveZMQ", "yarn-gateway-curve": "yarn-gateway, CurveZMQ"}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: few kernels, small outputs")
    p.add_argument("--targets", default=DEFAULT_TARGETS,
                   help=f"comma-separated subset of {DEFAULT_TARGETS} (direct is the floor of the NULL "
                   "targets, direct-curve the floor of yarn-gateway-curve); direct-api adds the floor "
                   "measured through jupyter_client's message API")
    p.add_argument("--kernel-python", default=sys.executable,
                   help="interpreter of the kernel (needs ipykernel); default: the bench's own")
    p.add_argument("--curve-kernel-python", type=Path, default=CURVE_KERNEL_PYTHON,
                   help="interpreter of the CurveZMQ kernel of direct-curve and yarn-gateway-curve (needs "
                   "ipykernel 7); default: build/curve-kernel-venv/bin/python (make curve-kernel-env)")
    p.add_argument("--eg-venv", type=Path, default=BENCH_DIR / ".venvs" / "eg",
                   help="virtualenv with Enterprise Gateway 3.3.0 (make bench-venvs)")
    p.add_argument("--yarn-gateway", type=Path, default=Path(sys.executable).parent / "yarn-gateway",
                   help="the yarn-gateway command; default: next to the bench's interpreter")
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--idle-kernels", type=int, help="override the number of idle kernels (RSS, starts)")
    p.add_argument("--rtt-n", type=int, help="override the number of timed round trips")
    p.add_argument("--pin-kernels", type=int, metavar="CPU",
                   help="start every target's kernel under taskset -c CPU (see bench/README.md: "
                   "on VMs where waking an idle vCPU is slow this takes that cost out of the kernel)")
    return p.parse_args(argv)


def wanted_targets(args: argparse.Namespace) -> list[str]:
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(wanted) - set(ALL_TARGETS)
    if unknown:
        raise SystemExit(f"unknown targets: {', '.join(sorted(unknown))}")
    return wanted


def curve_kernel(python: Path) -> tuple[Optional[str], str]:
    """(ipykernel version, "") of the CurveZMQ kernel's interpreter, or (None, why it cannot run)."""
    if not os.access(python, os.X_OK):
        return None, f"{python} missing: run `make curve-kernel-env` (or pass --curve-kernel-python)"
    try:
        version = ipykernel_version(str(python))
    except (RuntimeError, OSError) as exc:
        return None, str(exc)
    if int(version.split(".")[0]) < 7:
        return None, f"{python} has ipykernel {version}; CurveZMQ needs ipykernel 7"
    return version, ""


def build_targets(args: argparse.Namespace, work: Path, kernels_dir: Path,
                  curve_kernels_dir: Optional[Path], curve_skip: str) -> list[Target]:
    wanted = wanted_targets(args)
    targets: list[Target] = []
    if "direct" in wanted:
        targets.append(DirectTarget(kernels_dir))
    if "direct-api" in wanted:
        targets.append(DirectTarget(kernels_dir, lean=False))
    if "eg" in wanted:
        targets.append(EnterpriseGatewayTarget(work / "eg", kernels_dir, args.eg_venv))
    if "yarn-gateway" in wanted:
        targets.append(YarnGatewayTarget(work / "yarn-gateway", kernels_dir, args.yarn_gateway))
    for key, label in CURVE_TARGETS.items():
        if key not in wanted:
            continue
        if curve_kernels_dir is None:
            targets.append(SkippedTarget(key, label, curve_skip))
        elif key == "direct-curve":
            targets.append(DirectTarget(curve_kernels_dir, curve=True))
        else:
            targets.append(YarnGatewayTarget(work / key, curve_kernels_dir, args.yarn_gateway, curve=True))
    return targets


def kill_leftovers() -> None:
    """Last resort on the way out: anything still running below the bench process was
    started by this run (kernels, gateways)."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.quick() if args.quick else Plan()
    if args.idle_kernels:
        plan.idle_kernels = args.idle_kernels
    if args.rtt_n:
        plan.rtt_n = args.rtt_n
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    kver = ipykernel_version(args.kernel_python)
    log(f"kernel: {args.kernel_python} (ipykernel {kver})")
    curve_kver: Optional[str] = None
    curve_skip = ""
    args.curve_kernel_python = Path(os.path.abspath(args.curve_kernel_python))  # not resolved: a venv's symlink
    if set(wanted_targets(args)) & set(CURVE_TARGETS):
        curve_kver, curve_skip = curve_kernel(args.curve_kernel_python)
        log(f"CurveZMQ kernel: {args.curve_kernel_python} "
            + (f"(ipykernel {curve_kver})" if curve_kver else f"unusable: {curve_skip}"))
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f} before the run; numbers will be noisy")
    results: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "memory_gb": round(psutil.virtual_memory().total / 2**30),
                    "load_start": round(os.getloadavg()[0], 2)},
        "kernel": {"ipykernel": kver, "pinned_cpu": args.pin_kernels, "curve_ipykernel": curve_kver},
        "plan": plan.__dict__,
        "quick": bool(args.quick),
        "targets": {},
    }
    with tempfile.TemporaryDirectory(prefix="yg-bench-") as tmp:
        work = Path(tmp)
        # Kernels of every target inherit these: no writes to the user's ~/.ipython or runtime dir.
        os.environ["IPYTHONDIR"] = str(work / "ipython")
        os.environ["JUPYTER_RUNTIME_DIR"] = str(work / "runtime")
        kernels_dir = write_kernelspec(work, args.kernel_python, args.pin_kernels)
        curve_kernels_dir = None
        if curve_kver is not None:
            curve_kernels_dir = write_kernelspec(work / "curve", str(args.curve_kernel_python), args.pin_kernels,
                                                 curve=True)
        targets = build_targets(args, work, kernels_dir, curve_kernels_dir, curve_skip)
        try:
            results["targets"] = await measure_all(targets, plan)
        finally:
            for target in targets:
                await target.teardown()
            kill_leftovers()
    # Other work on the machine skews every ratio: the table shows the load around the run.
    results["machine"]["load_end"] = round(os.getloadavg()[0], 2)
    results["verdicts"] = verdicts(results["targets"])
    return results


def write_results(results: dict[str, Any], results_dir: Path) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if results["quick"] else "")
    json_path = results_dir / f"gateway_bench-{stamp}.json"
    md_path = results_dir / f"gateway_bench-{stamp}.md"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    md_path.write_text(markdown_table(results))
    return json_path, md_path


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        results = asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        kill_leftovers()
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(text_table(results))
    json_path, md_path = write_results(results, args.results_dir)
    print(f"\nresults: {json_path}\nmarkdown: {md_path}")
    failed = [k for k, t in results["targets"].items() if t.get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
