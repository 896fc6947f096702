"""Quantizers other than INC whose int8 models a report compares the pipeline's with: NNCF (``nncf_int8``).

Each is an optional extra; nothing here imports it until a model is asked for.

May import: ``errors``, ``files``, ``config``, ``data``, ``graph``, ``measure``. Never INC, a search or the report.
"""
