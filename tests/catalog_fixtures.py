"""Model-list answers in each provider's documented shape (ids and numbers are illustrative).

Sources: OpenAI `GET /v1/models`; OpenRouter's Models API schema (context_length,
architecture.input_modalities, pricing, top_provider, supported_parameters); vLLM's
ModelCard (max_model_len); Anthropic's paginated `GET /v1/models` (has_more,
first_id, last_id; ModelInfo with max_input_tokens, max_tokens, capabilities);
Ollama's `GET /api/tags` and `POST /api/show`; LM Studio's `GET /api/v0/models`.
"""

OPENAI = {"object": "list", "data": [
    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
    {"id": "text-embedding-3-small", "object": "model", "created": 1705948997, "owned_by": "system"},
]}

OPENROUTER = {"data": [
    {"id": "anthropic/claude-sonnet-4.6", "canonical_slug": "anthropic/claude-sonnet-4.6",
     "name": "Anthropic: Claude Sonnet 4.6", "created": 1771200000, "description": "...",
     "context_length": 1000000,
     "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image", "file"],
                      "output_modalities": ["text"], "tokenizer": "Claude", "instruct_type": None},
     "pricing": {"prompt": "0.000003", "completion": "0.000015", "request": "0", "image": "0.0048",
                 "web_search": "0", "internal_reasoning": "0", "input_cache_read": "0.0000003",
                 "input_cache_write": "0.00000375"},
     "top_provider": {"context_length": 1000000, "max_completion_tokens": 64000, "is_moderated": True},
     "per_request_limits": None,
     "supported_parameters": ["include_reasoning", "max_tokens", "reasoning", "stop", "temperature",
                              "tool_choice", "tools", "top_k", "top_p"]},
    {"id": "mistralai/mistral-nemo", "canonical_slug": "mistralai/mistral-nemo", "name": "Mistral: Mistral Nemo",
     "created": 1721347200, "description": "...", "context_length": 131072,
     "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"],
                      "tokenizer": "Mistral", "instruct_type": "mistral"},
     "pricing": {"prompt": "0.00000002", "completion": "0.00000004", "request": "0", "image": "0"},
     "top_provider": {"context_length": 131072, "max_completion_tokens": 16384, "is_moderated": False},
     "per_request_limits": None,
     "supported_parameters": ["frequency_penalty", "max_tokens", "response_format", "seed", "stop",
                              "temperature", "top_p"]},
]}

VLLM = {"object": "list", "data": [
    {"id": "Qwen/Qwen3-8B", "object": "model", "created": 1750000000, "owned_by": "vllm",
     "root": "/models/Qwen3-8B", "parent": None, "max_model_len": 32768,
     "permission": [{"id": "modelperm-1", "object": "model_permission", "created": 1750000000,
                     "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                     "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                     "organization": "*", "group": None, "is_blocking": False}]},
]}


def _supported(flag: bool) -> dict:
    return {"supported": flag}


ANTHROPIC_PAGE_1 = {"data": [
    {"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6",
     "created_at": "2026-02-17T00:00:00Z", "max_input_tokens": 1000000, "max_tokens": 64000,
     "capabilities": {"batch": _supported(True), "citations": _supported(True), "code_execution": _supported(True),
                      "effort": {"supported": True, "low": _supported(True), "medium": _supported(True),
                                 "high": _supported(True), "max": _supported(True)},
                      "image_input": _supported(True), "pdf_input": _supported(True),
                      "structured_outputs": _supported(True),
                      "thinking": {"supported": True, "types": {"adaptive": _supported(True),
                                                                "enabled": _supported(True)}}}},
], "has_more": True, "first_id": "claude-sonnet-4-6", "last_id": "claude-sonnet-4-6"}

ANTHROPIC_PAGE_2 = {"data": [
    {"type": "model", "id": "claude-3-haiku-20240307", "display_name": "Claude Haiku 3",
     "created_at": "2024-03-07T00:00:00Z", "max_input_tokens": 200000, "max_tokens": 4096,
     "capabilities": {"batch": _supported(True), "citations": _supported(False), "code_execution": _supported(False),
                      "effort": {"supported": False, "low": _supported(False), "medium": _supported(False),
                                 "high": _supported(False), "max": _supported(False)},
                      "image_input": _supported(True), "pdf_input": _supported(False),
                      "structured_outputs": _supported(False),
                      "thinking": {"supported": False, "types": {"adaptive": _supported(False),
                                                                 "enabled": _supported(False)}}}},
], "has_more": False, "first_id": "claude-3-haiku-20240307", "last_id": "claude-3-haiku-20240307"}

OLLAMA_TAGS = {"models": [
    {"name": "gemma3", "model": "gemma3", "modified_at": "2025-10-03T23:34:03.409490317-07:00",
     "size": 3338801804, "digest": "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a",
     "details": {"format": "gguf", "family": "gemma", "families": ["gemma"], "parameter_size": "4.3B",
                 "quantization_level": "Q4_K_M"}},
    {"name": "qwen3:8b", "model": "qwen3:8b", "modified_at": "2025-09-01T10:00:00Z", "size": 5225388164,
     "digest": "500a1f067a9f782620b40bee6f7b0c89e17ae61f686b92c24933e4ca4b2b8b41",
     "details": {"format": "gguf", "family": "qwen3", "families": ["qwen3"], "parameter_size": "8.2B",
                 "quantization_level": "Q4_K_M"}},
]}

OLLAMA_SHOW = {
    "gemma3": {"capabilities": ["completion", "vision"],
               "model_info": {"general.architecture": "gemma3", "gemma3.context_length": 131072},
               "details": {"format": "gguf", "family": "gemma"}},
    "qwen3:8b": {"capabilities": ["completion", "tools", "thinking"],
                 "model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960},
                 "details": {"format": "gguf", "family": "qwen3"}},
}

LMSTUDIO_V0 = {"object": "list", "data": [
    {"id": "qwen2-vl-7b-instruct", "object": "model", "type": "vlm", "publisher": "mlx-community",
     "arch": "qwen2_vl", "compatibility_type": "mlx", "quantization": "4bit", "state": "not-loaded",
     "max_context_length": 32768},
    {"id": "meta-llama-3.1-8b-instruct", "object": "model", "type": "llm", "publisher": "lmstudio-community",
     "arch": "llama", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
     "max_context_length": 131072, "capabilities": ["tool_use"]},
    {"id": "text-embedding-nomic-embed-text-v1.5", "object": "model", "type": "embeddings",
     "publisher": "nomic-ai", "arch": "nomic-bert", "compatibility_type": "gguf", "quantization": "Q4_0",
     "state": "not-loaded", "max_context_length": 2048},
]}
