"""Tests of pipeline.fit."""
