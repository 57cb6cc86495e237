"""Helpers for the SDK benchmark: a counting server for every protocol the compared handlers speak."""
