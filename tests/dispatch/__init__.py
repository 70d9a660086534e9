"""Tests of the dispatcher's pure selection logic (actors.dispatch)."""
