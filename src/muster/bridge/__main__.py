"""``python -m muster.bridge --port 0 --adapter package.module.Class``: one bridge worker."""

from __future__ import annotations

import argparse

from muster.bridge.cli import configure_parser, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m muster.bridge", description="Serve a muster bridge worker.")
    configure_parser(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
