"""Entry point for launchers: ``torchrun --nproc_per_node 2 -m moeaudio.train RECIPE [overrides]`` or
``deepspeed --num_gpus 2 --module moeaudio.train RECIPE [overrides]`` (the ``--local_rank`` that the
deepspeed launcher appends is accepted and ignored: LOCAL_RANK from the environment is used)."""

from __future__ import annotations

import argparse
import sys

from moeaudio.config import RecipeError, load_recipe
from moeaudio.train.trainer import run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moeaudio.train")
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_train(recipe, output_dir=args.output_dir, resume=args.resume, evaluate=not args.no_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
