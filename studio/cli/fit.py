"""``studio fit scan|photo``: fit a model to a 3-D scan or to a photo."""

from __future__ import annotations


def add_commands(sub) -> None:
    from studio.cli import fit_photo, fit_scan

    fit = sub.add_parser("fit", help="fit a model to a scan or a photo (MAP estimate with the model's prior)")
    fsub = fit.add_subparsers(dest="fit_command", metavar="WHAT", required=True)
    fit_scan.add_command(fsub)
    fit_photo.add_command(fsub)
