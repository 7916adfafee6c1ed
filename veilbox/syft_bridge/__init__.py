"""The optional ``veilbox[syft]`` bridge: PySyft v2 (``syft`` 0.10, ``syft-rds`` 0.6) data scientists reach Veilbox.

Nothing here is imported by the core install; importing this package requires the extra. Layout:
``transport`` (syft's file transport over a spool folder), ``login`` (a syft-rds client on that transport),
``datasite`` (the Veilbox side: identity table, dataset publishing, job mapping). See docs/pysyft.md.
"""
