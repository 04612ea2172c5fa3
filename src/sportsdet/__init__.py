"""sportsdet: recognise the sport in a photograph."""

__version__ = "0.1.0"
