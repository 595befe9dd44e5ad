"""Training the project's own grounding VLM (``ricl train-vlm``): configuration, episodes
rendered exactly as the agent renders queries, and the trainer."""
