"""The package's version, in a module of its own: every module may read it without importing
the package root, whose public names (for type checkers) come from the modules above it."""

__version__ = "0.1.0"
