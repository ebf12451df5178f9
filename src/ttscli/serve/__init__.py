"""`ttscli serve`: an HTTP (OpenAI-compatible) and Wyoming speech server batching across requests."""
