"""poster: renders the reply and posts it in the Slack thread, exactly once per job."""
