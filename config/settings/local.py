"""Developer machine: readable logs unless asked otherwise, debug on."""

from .base import *  # noqa: F403
from .base import env_bool, env_choice

# Debug pages stay off unless asked for: the platform answers errors as JSON.
DEBUG = env_bool("DJANGO_DEBUG", False)
LOG_FORMAT = env_choice("LOG_FORMAT", "json", ["json", "console"])
