"""Search: finding the int8 model to write, by accuracy or by latency.

Owns: the accuracy-driven INC search (``accuracy``), the trial records (``trials``), and objective latency:
its run (``latency``), which candidates it makes (``plan``: greedy or grid), its budget and progress
(``budget``), making, screening and scoring them (``candidates``), their timing (``timing``) and the choice
rule (``choice``). A new search strategy goes here.

May import: every package below it: ``errors``, ``files``, ``config``, ``data``, ``graph``, ``measure``, ``inc``.
"""
