"""Personio: the recruiting API client, its error tree, the jobs feed and domain rules."""
