"""botlite: a chatbot builder and its background-task runner in one process."""

__version__ = "0.1.0"
