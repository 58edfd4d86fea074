"""poster: renders the reply (or a notice, or a reaction) and posts it in the Slack thread, exactly once per job."""
