"""Recorded fakes of servers that cannot run in the test environment."""
