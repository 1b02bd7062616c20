"""Command line: split a stock Piper voice into encoder, (flow,) decoder graphs.

python -m wyoming_piper_stream.split VOICE.onnx [OUT_DIR] [--separate-flow]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import onnx

from wyoming_piper_stream.engine.graph_names import SplitError
from wyoming_piper_stream.engine.graph_split import split_file

_LOGGER = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_piper_stream.split",
        description="Split a stock Piper voice into <stem>.encoder.onnx and <stem>.decoder.onnx "
        "(and <stem>.flow.onnx), with its config <stem>.onnx.json beside them",
    )
    parser.add_argument("voice", type=Path, help="stock Piper voice (X.onnx)")
    parser.add_argument("out_dir", type=Path, nargs="?", help="output folder (default: beside it)")
    parser.add_argument(
        "--separate-flow",
        action="store_true",
        help="also write <stem>.flow.onnx, so the flow runs chunk by chunk too",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.voice.is_file():
        print(f"error: no such voice file: {args.voice}", file=sys.stderr)
        return 2
    try:
        written = split_file(args.voice, args.out_dir, args.separate_flow)
    except (SplitError, onnx.onnx_cpp2py_export.checker.ValidationError, OSError) as error:
        print(f"error: cannot split {args.voice}: {error}", file=sys.stderr)
        return 1
    _LOGGER.info("Wrote %s", ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
