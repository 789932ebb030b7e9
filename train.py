"""Trains a CAPTCHA reader on new CAPTCHAs every epoch, validates on capts_val/, saves my_model.keras.

    python train.py                                  # the assignment: the default model, 20 minutes
    python train.py --epochs 3 --fresh-images 8000 --output runs/quick.keras   # a few minutes
    python train.py --model shawon                   # the Kaggle baseline
    python train.py --config configs/henan.json      # a recipe from a file; options given here override it
    python train.py --output runs/quick.keras --resume   # continue an interrupted run
    python train.py --train-dir capts_train          # a fixed folder (python -m data.generate) instead
    python train.py --data FOLDER --labels FILE --split 0.8,0.1,0.1   # one labelled folder of any size

Every option is a field of `training.recipe.Recipe`, where it is explained;
`training.run` does the work. Missing default folders (`capts_val/`, and
`capts_train/` when it is named) are generated first, saying so. Nothing is
lost when training stops: the best model so far is saved whenever it
improves, and the state of the last finished epoch goes to
`<name>.last.keras`, `<name>.last.weights.h5` and `<name>.last.json`;
Ctrl-C keeps them (exit status 130) and `--resume` continues from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from core.alphabet import add_alphabet_arguments
from training.recipe import Recipe

GROUPS = ("model", "data", "optimisation", "Mean Teacher")


def json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, e.g. '{{\"dropout\": 0}}'. Received: {text}")
    return value


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of `Recipe`, its help and default taken from the field; None means "not given"."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for field in dataclasses.fields(Recipe):
        if field.metadata["group"] in ("alphabet", "internal"):
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        shown = "" if default in (None, [], {}) or "(default" in field.metadata["help"] else f" (default: {default})"
        extra = dict(field.metadata["command_line"], help=field.metadata["help"] + shown, default=None)
        if isinstance(default, bool):
            extra["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            extra["action"] = "append"
        else:
            extra["type"] = json_object if isinstance(default, dict) else field_type(field)
        groups[field.metadata["group"]].add_argument(flag, **extra)
    add_alphabet_arguments(parser)


def field_type(field):
    """The Python type of a recipe field whose annotation reads like "int | None"."""
    name = str(field.type).split("|")[0].strip()
    return {"int": int, "float": float, "str": str}[name]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="a JSON recipe (see configs/); the options below override it")
    parser.add_argument("--force", action="store_true", help="replace an existing --output file")
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted run of --output with its own recipe"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only one line per epoch")
    add_recipe_arguments(parser)
    return parser


def recipe_from_arguments(args: argparse.Namespace) -> Recipe:
    """The recipe of `--config` (or the defaults), with every option given on the command line on top.

    Without a model named in either, the fields neither sets are left to the
    automatic recipe (`training.auto`), which fills them on a real folder.
    """
    from training.auto import automatic_fields

    in_config = Recipe.read_config(args.config) if args.config else {}
    recipe = Recipe.from_dict(in_config, source=f"--config {args.config}")
    given = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(Recipe)
        if field.metadata["group"] != "internal" and getattr(args, field.name) is not None
    }
    return recipe.replace(**given, automatic=automatic_fields(set(given) | set(in_config)))


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    from core.quiet import load_keras

    load_keras()
    from training.run import saved_recipe, train

    try:
        if args.resume:
            recipe = saved_recipe(args.output or Recipe().output)
        else:
            recipe = recipe_from_arguments(args)
        return train(recipe, force=args.force, resume=args.resume, quiet=args.quiet)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\nInterrupted before the first epoch ended: nothing was saved.", file=sys.stderr)
        sys.exit(130)


def exit_status(summary: dict) -> int:
    return 130 if summary.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(exit_status(main()))
