"""Lists the registered models: `python -m models` (add `--all` for the tiny test variants).

name               kind       learning rate  what it is
cellnet            positions  0.003          ...
"""

from __future__ import annotations

import argparse


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="also the `_tiny` variants that the tests use")
    args = parser.parse_args(argv)
    from core.quiet import load_keras

    load_keras()
    import models
    from models.registry import _check_name

    names = models.list_models(include_tiny=args.all)
    print(f"{'name':<24} {'kind':<10} {'learning rate':<14} what it is")
    for name in names:
        builder = _check_name(name)
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        print(f"{name:<24} {builder.kind:<10} {builder.learning_rate:<14g} {summary}")
    return names


if __name__ == "__main__":
    main()
