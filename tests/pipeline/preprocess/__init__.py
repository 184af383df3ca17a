"""Tests of pipeline.preprocess."""
