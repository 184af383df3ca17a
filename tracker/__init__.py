"""Everything that touches MongoDB: the store, run lifecycle, provenance, queries,
plots and the ``tracker`` command line."""
