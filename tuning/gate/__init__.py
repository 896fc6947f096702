"""Gate: the CI verdict on a report: checks, baselines, JUnit and GitHub annotations.

Owns: reading a report.json, checking it against the config's gates and a baseline, and the gate's outputs
(``checks``).

May import: ``tuning.errors``, ``tuning.files`` and ``tuning.config``. The gate reads only what a report
wrote, so it never measures.
"""
