"""Anthropic Messages API inbound (`POST /v1/messages`) for non-Anthropic upstreams.

The Messages request is translated to the chat pivot (request.to_chat), the chat
answer back to a Message (answer.from_chat) or a Messages event stream
(stream.ChatToMessagesStream, stream.completion_to_events); errors use Anthropic's
envelope (errors.envelope, errors.error_event); count.estimate_input_tokens
answers count_tokens offline.
"""
from proxy.inbound.messages.answer import from_chat
from proxy.inbound.messages.count import estimate_input_tokens
from proxy.inbound.messages.errors import envelope, error_event
from proxy.inbound.messages.request import MessagesContext, to_chat
from proxy.inbound.messages.stream import ChatToMessagesStream, completion_to_events

__all__ = ["ChatToMessagesStream", "MessagesContext", "completion_to_events", "envelope", "error_event",
           "estimate_input_tokens", "from_chat", "to_chat"]
