"""``s2f``: one command for every job (``s2f train --help``), installed by ``make setup``.

Each job is also ``python -m <module>``, the form ``ray job submit --working-dir .`` runs on a
cluster, where the working directory is not installed.
"""
