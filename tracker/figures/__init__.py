"""Figures from the database alone: figure data, drawing, the standard set, the HTML report."""
