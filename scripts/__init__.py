"""The repository's scripts, run as files (`python scripts/stack.py up`) and imported by the tests as a package
(`from scripts import sample_site`), so scripts and tests share one sample site, server helper and service command."""
