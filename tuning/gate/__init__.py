"""Gate: the CI verdict on a report: checks, baselines, JUnit and GitHub annotations.

Owns: reading a report.json bounded and validated (``report_file``), checking it against the config's gates
(``checks``), the accepted baseline (``baseline``) and the verdict's CI formats (``outputs``).

May import: ``tuning.errors``, ``tuning.files`` and ``tuning.config``. The gate reads only what a report
wrote, so it never measures.
"""
