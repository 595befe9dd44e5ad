"""Training apps: the LoFi encoder (``ricl train-encoder``) and its ablation grid, and the
project's own grounding VLM (``ricl train-vlm``); resumable optimizer state."""
