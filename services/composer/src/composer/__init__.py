"""composer: runs one job end to end, from evidence to a reply posted in the thread."""
