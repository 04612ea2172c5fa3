"""The command line: `python -m sportsdet ...` and the `sportsdet` console script."""

import sys


def main() -> None:
    # Ctrl-C while the command line's libraries load (typer, rich, numpy: a few tenths of a
    # second) ended in a KeyboardInterrupt traceback. Nothing has started: nothing is left.
    try:
        from sportsdet.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
