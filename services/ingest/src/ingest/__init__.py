"""ingest: the Slack Events API endpoint, the durable job store and the hand-off to composer."""
