"""The OpenAI Responses API inbound (`POST /v1/responses`): pure translation to and from the chat pivot.

request.to_chat           Responses request -> chat body + ResponsesContext
answer.from_chat          chat.completion   -> Response object
stream.ChatToResponsesStream  chat chunk events -> Responses events
"""
