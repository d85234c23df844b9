"""The one error type the plug-in raises itself: its text is shown to the user as is."""


class PluginError(Exception):
    """Something the user can act on; ``str()`` is one or two readable sentences."""


class Cancelled(Exception):
    """The user pressed Cancel: the document is untouched and nothing needs saying."""
