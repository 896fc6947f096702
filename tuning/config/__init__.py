"""Config: the one YAML schema and reading a file into it.

Owns: every key, its type, bounds and default (``schema``); reading a YAML file safely, resolving its paths
and applying ``--set`` overrides (``loading``).

May import: ``tuning.errors`` and ``tuning.files``.
"""
