"""The one exception the library raises for problems a user can fix."""


class TopicliError(Exception):
    """A problem with the user's input, files or settings.

    The message is one line that says what is wrong and how to fix it; the CLI
    prints it and exits with code 2.
    """
