"""Per-customer drift of live inputs and scores against what each adapter version learned from.

- :mod:`.reference`: each adapter version's reference distributions, recorded at training time.
- :mod:`.values`: the per-row values the scoring pass computes against a reference.
- :mod:`.metrics`: one customer's day against its reference (scipy statistics, thresholds).
- :mod:`.job`: all customers of a scored partition in one Spark pass, into the Hive ``drift`` table.
"""
