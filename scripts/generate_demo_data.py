"""Write the demo landing folder (deterministic, with planted violations of every rule).

    python scripts/generate_demo_data.py --out data/landing --seed 20250101 --scale 1

The contract's files already in the folder (NAME.csv, NAME.xlsx, annual_reports/) are
removed first; other files are left alone. scale=25 approaches province size (~3,000
institutions, ~1,000,000 order lines a month).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "plugins"), str(Path(__file__).resolve().parents[1] / "demo")]

from vbp_demo.generator import DEMO_RUNS, PLANTED, generate  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/landing", help="landing folder (default: data/landing)")
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument("--scale", type=float, default=1.0, help="institutions and order lines multiplier")
    parser.add_argument("--order-scale", type=float, default=None,
                        help="order lines per institution multiplier (default: same as --scale)")
    args = parser.parse_args(argv)
    summary = generate(Path(args.out), seed=args.seed, scale=args.scale, order_scale=args.order_scale)
    print(f"demo data in {summary['landing_dir']} (seed {args.seed}, scale {args.scale:g}): "
          f"{summary['institutions']} institutions")
    for name, rows in summary["rows"].items():
        print(f"  {name:<16} {rows:>10,} rows")
    print(f"  order lines: {summary['order_lines']:,} at {summary['order_lines_per_second']:,} lines/s; "
          f"total {summary['seconds']} s")
    runs = sum(len(days) for days in DEMO_RUNS.values())
    print(f"  planted cases: {len(PLANTED)} covering {len({c['rule_code'] for c in PLANTED})} rule codes; "
          f"demo plan: {runs} DAG runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
