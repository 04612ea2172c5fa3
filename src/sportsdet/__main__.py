"""`python -m sportsdet ...` runs the same command line as the `sportsdet` console script."""

from sportsdet.cli import main

if __name__ == "__main__":
    main()
