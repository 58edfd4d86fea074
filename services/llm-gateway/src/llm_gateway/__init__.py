"""llm-gateway: the one door every LLM call of the product goes through."""
