"""Run the real `prismrec` entry point inside a test, as a user would (exit code 2 on user errors)."""

import sys

from prismrec.cli import main


def run_cli(monkeypatch, capsys, *args):
    """Run ``prismrec ARGS`` through ``prismrec.cli.main``; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["prismrec", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
