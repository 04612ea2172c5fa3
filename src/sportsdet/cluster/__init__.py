"""Beyond one machine: bulk prediction on Ray Data (`sportsdet predict --engine ray`).

Needs the `cluster` extra (`pip install 'sportsdet[cluster]'`); nothing here is imported by
`import sportsdet` or by a plain `sportsdet predict`.
"""
