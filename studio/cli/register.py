"""``studio register SCANS… --model NAME -o OUT/``: raw scans → meshes in the model's topology."""

from __future__ import annotations

import contextlib
import json
import sys


def add_command(sub) -> None:
    p = sub.add_parser(
        "register", help="bring scans into a model's topology (fit + non-rigid refinement, on Dask)",
        description="For every scan: the scan fit with its verdict (as 'studio fit scan'), then a non-rigid "
                    "refinement beyond the model's span (optimal-step non-rigid ICP), so a bump, a scar or an "
                    "unusual nose is captured while the mesh stays in correspondence. Writes OUT/registered/NAME.obj "
                    "(model topology, frame and unit), OUT/params/NAME.json and a row per scan in OUT/summary.csv. "
                    "Scans already done in OUT are skipped. Runs one task per scan on Dask: a local cluster of the "
                    "machine's free cores, or --scheduler. Exit status 3 when any scan failed (listed, with why).")
    p.add_argument("scans", nargs="+", help="scan files or folders of them")
    p.add_argument("--model", required=True, help="linear model name in the store (or a .npz path)")
    p.add_argument("-o", "--out", required=True, help="output folder (created; a second run resumes it)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler (its workers must "
                   "see the scans and the model file at the same paths)")
    p.add_argument("--workers", type=int, help="local cluster: worker processes (default: the free cores)")
    p.add_argument("--region", default="face", choices=["face", "head"], help="the part registered (default: face)")
    p.add_argument("--unit", choices=["m", "cm", "mm"], help="the scans' unit (default: detected per scan)")
    p.add_argument("--free-scale", action="store_true", help="the scans' scale is arbitrary: estimate it")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.set_defaults(func=cmd_register)


@contextlib.contextmanager
def scan_bar():
    """A tqdm bar counting scans, with the rate and the time left (silent when stderr is no terminal)."""
    from tqdm import tqdm

    bar = tqdm(total=1, unit="scan", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False,
               bar_format="registering {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}, {rate_fmt} {postfix}")

    def callback(fraction: float, message: str = "") -> None:
        head = message.split(" ", 1)[0]  # the job says "k/n scans, f failed"
        if "/" in head and head.replace("/", "").isdigit():
            k, total = (int(x) for x in head.split("/"))
            bar.total = total
            bar.update(k - bar.n)
        bar.set_postfix_str(message.split(", ", 1)[-1] if "failed" in message else "", refresh=True)

    try:
        yield callback
    finally:
        bar.close()


def cmd_register(a) -> int:
    from studio.jobs.register import RegisterOptions, register_job

    opt = RegisterOptions(region=a.region, unit=a.unit, free_scale=a.free_scale)
    with scan_bar() as cb:
        r = register_job(a.scans, a.model, a.out, a.scheduler, a.workers, opt, progress=cb)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"registered {r['registered_now']} scans in {r['seconds']:.1f} s on {r['workers']} Dask workers "
              f"({r['scheduler']}); {r['skipped']} already done; {r['ok']} of {r['scans']} ok; summary in "
              f"{a.out}/summary.csv")
    for name, reason in r["failed"]:
        print(f"studio: {name}: {reason}", file=sys.stderr)
    for name in r["unfinished"]:
        print(f"studio: {name}: not finished (its workers kept dying); run again to retry", file=sys.stderr)
    return 3 if r["failed"] or r["unfinished"] else 0
