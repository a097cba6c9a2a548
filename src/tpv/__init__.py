"""task-prompt-vectors: modular soft prompts by arithmetic on task prompt vectors."""

__version__ = "0.1.0"
