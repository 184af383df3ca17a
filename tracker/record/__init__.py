"""Recording work: run lifecycle, spool, provenance, workflows, chunked fits, sweeps, retention."""
