"""Everything that touches MongoDB, by stage.

- :mod:`tracker.db`: the database: :class:`~tracker.db.store.Store` (the only class that
  talks to MongoDB), the embedded server, settings, redaction, document builders,
  migrations and the schema definitions (package data ``schema.json``);
- :mod:`tracker.record`: recording work: run lifecycle, offline spool, provenance, the
  workflows that extract features and fit models, chunked fits, sweeps, retention;
- :mod:`tracker.analysis`: questions asked of recorded runs: field vocabulary, ``--where``
  filters, queries, per-voxel scores, voxels, noise ceilings, export, run diffs;
- :mod:`tracker.figures`: figure data, drawing, the standard figure set, the HTML report;
- :mod:`tracker.cli`: the ``tracker`` command, one module per noun.

Each stage imports only the stages listed before it (the CLI imports all of them).
"""
