"""retrieval: URL to evidence, behind a fetcher that is safe against SSRF."""
