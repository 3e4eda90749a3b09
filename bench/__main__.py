"""`python -m bench`: the command line of the benchmark (see bench/README.md)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from bench._args import positive_int
from bench._errors import BenchError
from bench._projects import SMOKE_CACHE_SETTINGS
from bench._run import READS_CACHE_OF, RESULTS, VARIANT_NAMES, Options, run

DEFAULTS = {"rounds": 3, "duration": 10, "warmup": 3, "orders": 1000, "items_per_order": 200}
# Small enough for a test suite: every step runs, none of the numbers mean much. One second of
# load per app and round (wrk's least) is plenty to prove a round works, and with eighteen apps
# each second more is eighteen more of the suite's time.
SMOKE = {"rounds": 1, "duration": 1, "warmup": 1, "orders": 50, "items_per_order": 20}


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in VARIANT_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none)'}; choose from"
            f" {', '.join(VARIANT_NAMES)}"
        )
    for name, project in READS_CACHE_OF.items():
        if name in names and project not in names:
            raise argparse.ArgumentTypeError(
                f"{name} reads the documents the {project} row's warm-up stores: add {project}"
            )
    return names


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark GET /orders/{id} of projects rendered from this checkout against a"
        " naive FastAPI service and a bare-ASGI limit; write bench/results/RESULTS.md.",
    )
    parse.add_argument("--rounds", type=positive_int, help=f"default {DEFAULTS['rounds']}")
    parse.add_argument(
        "--duration",
        type=positive_int,
        metavar="SECONDS",
        # wrk takes whole seconds only.
        help=f"load per app per round, default {DEFAULTS['duration']}",
    )
    parse.add_argument(
        "--warmup",
        type=positive_int,
        metavar="SECONDS",
        help=f"load per app before its first round, default {DEFAULTS['warmup']}",
    )
    parse.add_argument("--connections", type=positive_int, default=32, help="default 32")
    parse.add_argument("--orders", type=positive_int, help=f"default {DEFAULTS['orders']}")
    parse.add_argument(
        "--items-per-order", type=positive_int, help=f"default {DEFAULTS['items_per_order']}"
    )
    parse.add_argument(
        "--only",
        type=_variants,
        default=VARIANT_NAMES,
        metavar="NAMES",
        help=f"comma-separated subset of {','.join(VARIANT_NAMES)}",
    )
    parse.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parse.add_argument(
        "--smoke",
        action="store_true",
        help="a quick run of every step (1 round x 1 s, 50 orders x 20 items); writes"
        " bench/results/SMOKE.md, never RESULTS.md",
    )
    parse.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="where the markdown goes (default bench/results/RESULTS.md; SMOKE.md with --smoke)",
    )
    return parse


def options_from(argv: Sequence[str]) -> Options:
    args = parser().parse_args(argv)
    base = SMOKE if args.smoke else DEFAULTS

    def pick(name: str) -> int:
        given: int | None = getattr(args, name)
        return base[name] if given is None else given

    default_output = RESULTS / ("SMOKE.md" if args.smoke else "RESULTS.md")
    return Options(
        rounds=pick("rounds"),
        duration=pick("duration"),
        warmup=pick("warmup"),
        connections=args.connections,
        orders=pick("orders"),
        items_per_order=pick("items_per_order"),
        keep=args.keep,
        only=args.only,
        output=args.output or default_output,
        command=shlex.join(["uv", "run", "python", "-m", "bench", *argv]),
        cache_settings=dict(SMOKE_CACHE_SETTINGS) if args.smoke else {},
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(sys.argv[1:] if argv is None else argv)
    try:
        print(run(options))
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
