"""OpenAI Responses API upstreams (`format: responses`): OpenAI's /v1/responses, and the gateways
and local servers that answer it (vLLM, Ollama, LM Studio, LiteLLM)."""
