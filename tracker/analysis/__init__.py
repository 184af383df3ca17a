"""Questions asked of recorded runs: fields, filters, queries, scores, voxels, ceilings, export."""
