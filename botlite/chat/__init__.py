"""The chat pipeline's pure parts: small-talk intents and extractive answers.

Nothing here touches the database or the web; ``intents`` decides whether a
message is small talk, ``answer`` turns retrieved passages into a reply.
"""
