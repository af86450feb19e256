"""Walkthroughs run by `make demo`."""
