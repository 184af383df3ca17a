"""Tests of pipeline.features."""
