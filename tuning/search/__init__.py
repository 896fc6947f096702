"""Search: finding the int8 model to write, by accuracy or by latency.

Owns: the accuracy-driven INC search and its trial records (``accuracy``), the latency search and its choice
rule (``latency``), and trials spread over MPI ranks (``distributed``). A new search strategy goes here.

May import: every package below it: ``errors``, ``files``, ``config``, ``data``, ``graph``, ``measure``.
"""
