"""Beyond one process: a batch of exports (``batch``), verification sharded over workers (``shards``), on local
processes or a Ray cluster (``executor``). Workers share the conversion cache (``toolkit.convert.cache``)."""
